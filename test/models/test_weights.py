"""Weight loading: every supported file form, strictness errors, CUDA-saved files on CPU, refusing
malicious pickles, and the `gmos convert-weights` command. Uses the tiny models (fast)."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from gmos_core.cli.main import main as gmos_main
from gmos_core.models import build_gmos_s, build_pi3_encoder, build_proposer
from gmos_core.weights import (
    PI3_IGNORED_PREFIXES,
    UnsafeCheckpointError,
    WeightLoadError,
    load_gmos_s,
    load_pi3_encoder,
    load_proposer,
    load_state_dict_file,
)


def _seeded_state(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}


def _assert_loaded(model, state):
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.fixture
def proposer_state():
    return _seeded_state(build_proposer("tiny"))


@pytest.mark.parametrize("form", ["safetensors", "model_state_dict", "model", "bare", "module_prefix",
                                  "legacy_pickle"])
def test_round_trip_forms(tmp_path, proposer_state, form):
    path = tmp_path / ("w.safetensors" if form == "safetensors" else "w.pt")
    if form == "safetensors":
        save_file(proposer_state, str(path))
    elif form == "model_state_dict":
        torch.save({"model_state_dict": proposer_state, "epoch": 7, "optimizer": {"lr": 1e-4}}, path)
    elif form == "model":
        torch.save({"model": proposer_state}, path)
    elif form == "bare":
        torch.save(proposer_state, path)
    elif form == "module_prefix":
        torch.save({"model_state_dict": {f"module.{k}": v for k, v in proposer_state.items()}}, path)
    else:
        torch.save({"model_state_dict": proposer_state}, path, _use_new_zipfile_serialization=False)
    model = load_proposer(build_proposer("tiny"), path)
    _assert_loaded(model, proposer_state)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_pi3_extra_head_keys_are_ignored(tmp_path):
    model = build_pi3_encoder("tiny")
    state = _seeded_state(model)
    extra = {f"{prefix}0.weight": torch.zeros(2) for prefix in PI3_IGNORED_PREFIXES}
    save_file({**state, **extra}, str(tmp_path / "model.safetensors"))
    _assert_loaded(load_pi3_encoder(build_pi3_encoder("tiny"), tmp_path / "model.safetensors"), state)
    # ...but an unknown extra key is an error (most likely the wrong file)
    save_file({**state, "surprise.weight": torch.zeros(1)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(WeightLoadError, match="unexpected keys: surprise.weight"):
        load_pi3_encoder(build_pi3_encoder("tiny"), tmp_path / "odd.safetensors")


def test_missing_extra_and_misshaped_keys_are_named(proposer_state):
    missing = dict(proposer_state)
    del missing["obj_token"], missing["iou_head.layers.2.bias"]
    with pytest.raises(WeightLoadError, match=r"2 missing keys: iou_head.layers.2.bias, obj_token"):
        load_proposer(build_proposer("tiny"), missing)
    with pytest.raises(WeightLoadError, match=r"unexpected keys: extra.key"):
        load_proposer(build_proposer("tiny"), {**proposer_state, "extra.key": torch.zeros(1)}, strict_extra=True)
    # by default unused keys (e.g. training-only heads) are ignored, loudly
    with pytest.warns(UserWarning, match="ignored 1 keys .*extra.key"):
        model = load_proposer(build_proposer("tiny"), {**proposer_state, "extra.key": torch.zeros(1)})
    _assert_loaded(model, proposer_state)
    bad = {**proposer_state, "motion_weight": torch.zeros(2)}
    with pytest.raises(WeightLoadError, match=r"misshaped keys: motion_weight: file \(2,\) vs model \(1,\)"):
        load_proposer(build_proposer("tiny"), bad)
    # A GMOS-S model is not silently filled from a GMOS checkpoint
    with pytest.raises(WeightLoadError, match="missing keys: fg_out"):
        load_gmos_s(build_gmos_s("tiny"), proposer_state)


def test_unreadable_files(tmp_path):
    with pytest.raises(WeightLoadError, match="not found"):
        load_state_dict_file(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightLoadError, match="neither safetensors"):
        load_state_dict_file(tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(WeightLoadError, match="safetensors"):
        load_state_dict_file(tmp_path / "junk.safetensors")
    torch.save({"epoch": 3}, tmp_path / "nostate.pt")
    with pytest.raises(WeightLoadError, match="no state_dict found"):
        load_state_dict_file(tmp_path / "nostate.pt")


def test_cuda_saved_file_loads_on_cpu(tmp_path, proposer_state, monkeypatch):
    """Simulated by making torch.save record the storage location tag 'cuda:0' (what a file saved from GPU
    tensors carries): torch.serialization.location_tag is what torch.save asks for each storage's tag."""
    import torch.serialization as ts

    monkeypatch.setattr(ts, "location_tag", lambda storage: "cuda:0")
    torch.save({"model_state_dict": proposer_state}, tmp_path / "cuda.pt")
    monkeypatch.undo()
    if not torch.cuda.is_available():
        # Proof that the file really is tagged for CUDA: a plain load (official code, no map_location) fails.
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "cuda.pt", weights_only=True)
    state = load_state_dict_file(tmp_path / "cuda.pt")
    assert all(v.device.type == "cpu" for v in state.values())
    _assert_loaded(load_proposer(build_proposer("tiny"), tmp_path / "cuda.pt"), proposer_state)


class _Exploit:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch_zip", "torch_legacy", "plain_pickle"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, proposer_state, writer):
    marker = tmp_path / "pwned"
    _Exploit.marker = str(marker)
    payload = {"model_state_dict": proposer_state, "hook": _Exploit()}
    path = tmp_path / "evil.pt"
    if writer == "torch_zip":
        torch.save(payload, path)
    elif writer == "torch_legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="refusing to unpickle"):
        load_proposer(build_proposer("tiny"), path)
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict_file(path)
    assert gmos_main(["convert-weights", str(path), str(tmp_path / "out.safetensors")]) == 1
    assert not marker.exists(), "unpickling executed code"
    assert not (tmp_path / "out.safetensors").exists()


def test_unsafe_pickle_only_when_asked(tmp_path, proposer_state):
    marker = tmp_path / "ran"
    _Exploit.marker = str(marker)
    torch.save({"model_state_dict": proposer_state, "hook": _Exploit()}, tmp_path / "trusted.pt")
    state = load_state_dict_file(tmp_path / "trusted.pt", allow_unsafe_pickle=True)
    assert marker.exists()  # full unpickling really is unsafe: that is why it is opt-in
    assert set(state) == set(proposer_state)


def test_convert_weights_cli(tmp_path, proposer_state, capsys):
    from safetensors import safe_open

    torch.save({"model_state_dict": {f"module.{k}": v for k, v in proposer_state.items()}}, tmp_path / "gmos.pt")
    out = tmp_path / "gmos.safetensors"
    assert gmos_main(["convert-weights", str(tmp_path / "gmos.pt"), str(out), "--size", "tiny"]) == 0
    assert "gmos" in capsys.readouterr().out
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["gmos_kind"] == "gmos"
    _assert_loaded(load_proposer(build_proposer("tiny"), out), proposer_state)

    pi3 = build_pi3_encoder("tiny")
    pi3_state = _seeded_state(pi3)
    save_file({**pi3_state, "camera_head.fc.weight": torch.zeros(3)}, str(tmp_path / "model.safetensors"))
    assert gmos_main(["convert-weights", str(tmp_path / "model.safetensors"), str(tmp_path / "pi3.safetensors"),
                      "--size", "tiny"]) == 0
    with safe_open(str(tmp_path / "pi3.safetensors"), "pt") as f:
        assert "camera_head.fc.weight" not in f.keys() and len(list(f.keys())) == len(pi3_state)

    # Wrong size: the full-size check names the misshaped keys and writes nothing
    assert gmos_main(["convert-weights", str(tmp_path / "gmos.pt"), str(tmp_path / "x.safetensors")]) == 1
    assert "misshaped" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_convert_sam2_checkpoint_cli(tmp_path, fixtures_dir):
    """The official SAM 2 form ({"model": sd} via torch.save) is detected and checked against the tiny config."""
    from safetensors.torch import load_file

    state = load_file(str(fixtures_dir / "propagator_tiny" / "sam2_tiny_weights.safetensors"))
    torch.save({"model": state}, tmp_path / "sam2_tiny.pt")
    out = tmp_path / "sam2_tiny.safetensors"
    assert gmos_main(["convert-weights", str(tmp_path / "sam2_tiny.pt"), str(out), "--size", "tiny"]) == 0
    converted = load_file(str(out))
    assert set(converted) == set(state) and all(torch.equal(converted[k], state[k]) for k in state)


def test_directory_truncated_file_and_wrong_model_are_named(tmp_path, proposer_state):
    with pytest.raises(WeightLoadError, match="is a directory; expected a weight file"):
        load_state_dict_file(tmp_path)
    torch.save({"model_state_dict": proposer_state}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightLoadError, match="truncated, or not a checkpoint"):
        load_state_dict_file(tmp_path / "cut.pt")
    # A GMOS proposer file given where GMOS-S weights are expected: the error says what the file looks like.
    save_file(proposer_state, str(tmp_path / "gmos.safetensors"))
    with pytest.raises(WeightLoadError, match="looks like a gmos checkpoint; a gmos-s checkpoint was expected"):
        load_gmos_s(build_gmos_s("tiny"), tmp_path / "gmos.safetensors")
