"""TensorRT engine cache and fallbacks, without a GPU: the key, the cache's rebuild rules, the one-time
'TensorRT absent' message, the PyTorch fallback of TensorRTModels, and warm-up at activate.

The ``build`` callables below return bytes in place of a serialized engine: the cache stores opaque bytes, so
what is tested (which key hits, which misses, what is rebuilt and what is never reused) is exactly the real
behaviour. Building real engines needs TensorRT and a GPU (benchmarks/gpu_check.sh reports whether it ran).
"""
from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from gmos_core.export import tensorrt_cache as tc
from gmos_core.export.runtime import TensorRTModels, accelerate_models, parse_image_size, warm_up
from gmos_core.export.tensorrt_cache import (EngineCache, EngineCacheError, EngineKey, TensorRTUnavailable,
                                             select_backend, trt_status)

KEY = EngineKey(graph="pi3_decoder", gpu="NVIDIA H200", compute_capability="9.0", tensorrt_version="10.13.0",
                input_shapes=(("tokens", (5, 27, 48, 1024)),), precision="bf16", weights_sha256="a" * 64,
                onnx_sha256="b" * 64)
TRT_ABSENT = trt_status()["tensorrt"] is None


class Builds:
    """Counts build calls; each build returns distinct bytes (as a new engine would be)."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return f"engine #{self.calls}".encode()


@pytest.mark.parametrize("change", [
    {"gpu": "NVIDIA H100 80GB HBM3"}, {"compute_capability": "8.7"}, {"tensorrt_version": "10.14.1"},
    {"input_shapes": (("tokens", (5, 31, 41, 1024)),)}, {"precision": "fp16"}, {"weights_sha256": "c" * 64},
    {"onnx_sha256": "d" * 64}, {"graph": "pi3_encoder"},
])
def test_any_change_of_gpu_trt_size_precision_or_weights_rebuilds(tmp_path, change):
    cache, builds = EngineCache(tmp_path), Builds()
    first, built = cache.get_or_build(KEY, builds)
    assert built and builds.calls == 1
    again, built = cache.get_or_build(KEY, builds)
    assert (again, built, builds.calls) == (first, False, 1)  # same key: reused, not rebuilt
    other = dataclasses.replace(KEY, **change)
    path, built = cache.get_or_build(other, builds)
    assert built and builds.calls == 2 and path != first
    assert path.read_bytes() == b"engine #2" and first.read_bytes() == b"engine #1"  # both kept, none reused
    assert set(cache.entries()) == {KEY, other}


def test_sidecar_that_disagrees_is_never_reused(tmp_path, caplog):
    cache, builds = EngineCache(tmp_path), Builds()
    path, _ = cache.get_or_build(KEY, builds)
    record = json.loads(cache.sidecar_path(KEY).read_text())
    record["key"]["gpu"] = "NVIDIA A6000"  # e.g. a cache folder copied from another machine, or a collision
    cache.sidecar_path(KEY).write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="gmos.export"):
        assert cache.lookup(KEY) is None
    assert "built for another gpu; rebuilding it" in caplog.text
    assert not path.exists()
    _, built = cache.get_or_build(KEY, builds)
    assert built and builds.calls == 2


def test_engine_without_sidecar_is_rebuilt(tmp_path):
    cache, builds = EngineCache(tmp_path), Builds()
    cache.get_or_build(KEY, builds)
    cache.sidecar_path(KEY).unlink()
    assert cache.lookup(KEY) is None
    _, built = cache.get_or_build(KEY, builds)
    assert built and builds.calls == 2


def test_store_refuses_empty_engine_and_leaves_no_partial_file(tmp_path):
    cache = EngineCache(tmp_path)
    with pytest.raises(EngineCacheError, match="empty engine"):
        cache.store(KEY, b"")

    def failing_build():
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="builder crashed"):
        cache.get_or_build(KEY, failing_build)
    assert list(tmp_path.iterdir()) == []


def test_key_round_trip_and_digest_is_order_free():
    shapes = (("token", (1, 27, 48, 1024)), ("sam_btn", (1, 256, 64, 64)))
    a = dataclasses.replace(KEY, graph="head", input_shapes=shapes, precision="fp32")
    b = dataclasses.replace(a, input_shapes=tuple(reversed(shapes)))
    assert a == b and a.digest() == b.digest()
    assert EngineKey.from_json(json.loads(json.dumps(a.to_json()))) == a
    assert a.stem.startswith("head-") and len(a.stem) == len("head-") + 20


@pytest.mark.parametrize("change, message", [
    ({"precision": "int8"}, "precision='int8'; expected one of"),
    ({"gpu": ""}, "EngineKey.gpu=''; expected a non-empty string"),
    ({"graph": "sam2"}, "graph='sam2'; expected one of"),
    ({"input_shapes": ()}, "input_shapes is empty"),
    ({"input_shapes": (("tokens", (5, 0, 48)),)}, "expected a name and positive dims"),
    ({"input_shapes": ("tokens",)}, "expected (input name, (dims...))"),
])
def test_key_validation_names_the_field(change, message):
    with pytest.raises(ValueError) as err:
        dataclasses.replace(KEY, **change)
    assert message in str(err.value)


def test_cache_dir_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "engines"
    target.write_text("not a folder")
    with pytest.raises(EngineCacheError, match="is a file; expected a folder"):
        EngineCache(target)


def test_trt_status_matches_what_is_importable():
    status = trt_status()
    assert status["cuda"] == torch.cuda.is_available()
    if TRT_ABSENT:
        assert not status["usable"] and "TensorRT is not installed" in status["reason"]
    else:
        assert status["usable"] == status["cuda"]


def test_select_backend_says_tensorrt_absent_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(tc, "_said_once", set())
    assert select_backend("cuda", "")[0] == "pytorch"  # no cache folder: TensorRT off, nothing to say
    assert select_backend("cpu", str(tmp_path))[0] == "pytorch"
    if not TRT_ABSENT and torch.cuda.is_available():
        assert select_backend("cuda", str(tmp_path))[0] == "tensorrt"
        return
    with caplog.at_level(logging.WARNING, logger="gmos.export"):
        first = select_backend("cuda", str(tmp_path))
        second = select_backend("cuda:0", str(tmp_path))
    assert first[0] == second[0] == "pytorch" and "running the PyTorch path" in first[1]
    assert caplog.text.count("running the PyTorch path") == 1


@pytest.mark.skipif(not TRT_ABSENT, reason="TensorRT is installed here: the absent-TensorRT errors cannot occur")
def test_building_without_tensorrt_is_a_clear_error(tmp_path):
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed"):
        tc.build_engine_bytes(tmp_path / "x.onnx", [("images", (1, 3, 14, 14))], "fp16")
    with pytest.raises(TensorRTUnavailable):
        tc.tensorrt_version()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the no-GPU error cannot occur")
def test_key_for_without_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(TensorRTUnavailable, match="no CUDA device"):
        tc.key_for("head", tmp_path / "head.onnx", "a" * 64, [("token", (1, 2, 2, 8))], "fp32")


def test_parse_image_size():
    assert parse_image_size("640x480") == (640, 480) and parse_image_size(" 1280 X 720 ") == (1280, 720)
    for bad in ("640", "640x", "0x10", "axb", "640x480x3"):
        with pytest.raises(ValueError, match="expected WIDTHxHEIGHT"):
            parse_image_size(bad)


# ---------------------------------------------------------------------------------------------- node side
@pytest.fixture(scope="module")
def tiny_models():
    from gmos_core.engine.config import EngineConfig
    from gmos_core.engine.models import build_engine_models

    config = EngineConfig(mode="gmos_s", device="cpu", precision="fp32", fps=8.0, pixel_limit=14 * 14 * 12)
    return config, build_engine_models(config, "tiny", allow_random=True)


def _params(**changes):
    from gmos_core.bridge.params import NodeParams

    base = dict(mode="gmos_s", device="cpu", precision="fp32", tiny_random_model=True, fps=8.0,
                pixel_limit=14 * 14 * 12)
    return NodeParams(**{**base, **changes})


def test_node_params_validate_the_new_parameters():
    from gmos_core.bridge.params import ParameterError

    params = _params(engine_cache_dir="/tmp/engines", warmup_frames=3, warmup_image_size="320x240")
    assert (params.engine_cache_dir, params.warmup_frames, params.warmup_image_size) == ("/tmp/engines", 3, "320x240")
    with pytest.raises(ParameterError, match="warmup_image_size.*expected WIDTHxHEIGHT"):
        _params(warmup_image_size="big")
    with pytest.raises(ParameterError, match="warmup_frames"):
        _params(warmup_frames=-1)


def test_accelerate_models_keeps_pytorch_without_cuda_or_cache(tiny_models, tmp_path):
    _, models = tiny_models
    assert accelerate_models(models, _params()) is models  # no engine_cache_dir
    assert accelerate_models(models, _params(engine_cache_dir=str(tmp_path))) is models  # cpu device


def test_tensorrt_models_fall_back_to_pytorch_with_one_error(tiny_models, tmp_path, caplog, monkeypatch):
    """Without TensorRT/CUDA every call runs the wrapped PyTorch models, with identical outputs, and the
    failure is logged once (not per frame); nothing is exported before TensorRT is known to be usable."""
    monkeypatch.setattr(tc, "_said_once", set())
    _, models = tiny_models
    wrapped = TensorRTModels(models, EngineCache(tmp_path), "fp16")
    images = torch.rand(2, 3, 28, 42)
    with caplog.at_level(logging.ERROR, logger="gmos.export"):
        tokens = wrapped.encode_tokens(images)
        again = wrapped.encode_tokens(images)
        hidden = tokens[:1].expand(5, -1, -1).contiguous()
        feature = wrapped.decode_anchor(hidden, 5, 28, 42, 2)
    assert torch.equal(tokens, models.encode_tokens(images)) and torch.equal(again, tokens)
    assert torch.equal(feature, models.decode_anchor(hidden, 5, 28, 42, 2))
    assert wrapped.backend == "pytorch" and wrapped.anchor == models.anchor  # other attributes pass through
    assert caplog.text.count("TensorRT engines unavailable") == 1
    assert not (tmp_path / "onnx").exists()  # no export was attempted


def test_warm_up_pushes_frames_then_starts_a_fresh_stream(tiny_models):
    from gmos_core.engine.streaming import StreamingEngine

    config, models = tiny_models
    engine = StreamingEngine(config, models)
    pushed = []
    original = engine.push
    engine.push = lambda rgb, stamp, *a, **k: pushed.append((rgb.shape, stamp)) or original(rgb, stamp, *a, **k)
    assert warm_up(engine, _params(warmup_frames=0)) == 0 and pushed == []
    assert warm_up(engine, _params(warmup_frames=4, warmup_image_size="64x48")) == 4
    assert [shape for shape, _ in pushed] == [(48, 64, 3)] * 4
    assert all(b > a for (_, a), (_, b) in zip(pushed, pushed[1:]))  # increasing stamps: one stream
    assert engine.retained["buffered_frames"] == 0 and engine.retained["waiting"] == 0
    # the real stream starts from scratch: its first frame is index 0, not 4
    results = []
    for i in range(8):
        results += original(np.zeros((48, 64, 3), np.uint8), 10**12 + i * 125_000_000)
    assert results and results[0].frame.index == 0


def test_node_factory_warms_up_at_activate(monkeypatch):
    """NodeCore.activate → build_engine → warm_up: the warm-up frames reach the engine before any real frame
    and leave no trace in the node's counters."""
    from gmos_core.bridge import engine_factory
    from gmos_core.bridge.core import NodeCore
    from gmos_core.engine.streaming import StreamingEngine

    seen = []
    original = StreamingEngine.push
    monkeypatch.setattr(StreamingEngine, "push", lambda self, rgb, stamp, *a, **k: seen.append(rgb.shape)
                        or original(self, rgb, stamp, *a, **k))
    core = NodeCore(_params(warmup_frames=3, warmup_image_size="56x42"), engine_factory.build_engine)
    core.activate()
    assert seen == [(42, 56, 3)] * 3
    assert core.counters.pushed == 0 and core.counters.segmented == 0
    core.deactivate()


def test_compiled_decoder_gives_the_same_features():
    """compile_pi3_decoder swaps in torch.compile(pi3.decode); the eager backend keeps the test fast and checks
    the wiring (same outputs, compiled once). The inductor speed-up was measured on a GPU (docs/gpu.md)."""
    from gmos_core import models as M
    from gmos_core.export.runtime import compile_pi3_decoder

    torch.manual_seed(4)
    pi3 = M.build_pi3_encoder("tiny").eval()
    holder = type("Models", (), {"pi3": pi3})()
    hidden = torch.randn(5, 2 * 3, 64)
    with torch.no_grad():
        expected = pi3.decode(hidden, 5, 28, 42)
        compile_pi3_decoder(holder, backend="eager")
        compiled = pi3.decode
        assert compile_pi3_decoder(holder, backend="eager") is holder and pi3.decode is compiled  # once only
        got = pi3.decode(hidden, 5, 28, 42)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


def test_torch_compile_on_cpu_is_refused_once(tiny_models, caplog, monkeypatch):
    monkeypatch.setattr(tc, "_said_once", set())
    _, models = tiny_models
    with caplog.at_level(logging.WARNING, logger="gmos.export"):
        assert accelerate_models(models, _params(torch_compile=True)) is models
        accelerate_models(models, _params(torch_compile=True))
    assert caplog.text.count("torch_compile applies on CUDA only") == 1
    assert not getattr(models.pi3, "_gmos_compiled_decode", False)
