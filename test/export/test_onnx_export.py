"""ONNX export ↔ PyTorch parity (onnxruntime on CPU), the export-friendly RoPE, manifests and `gmos export`.

The tiny Pi3 exercises exactly the code path of the full one (same modules, dynamic H x W); the heads are
checked at their official (full) size. The full-size Pi3 graphs (1 B parameters, ~3 GB of ONNX external data,
minutes to export) are checked by ``python -m gmos_core.export.parity --size full`` (docs/gpu.md has its
figures) and by ``test_full_size_pi3_parity`` when GMOS_FULL_EXPORT_TEST=1.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="onnx is part of the test extra (pip install -e .[test])")
pytest.importorskip("onnxruntime", reason="onnxruntime is part of the test extra (pip install -e .[test])")
pytest.importorskip("onnxscript", reason="onnxscript is part of the test extra (pip install -e .[test])")

from gmos_core import models as M  # noqa: E402
from gmos_core.export.onnx_export import (HEAD_OUTPUTS, ExportError, export_friendly_rope, export_head,  # noqa: E402
                                          export_model_set, export_pi3_decoder, export_pi3_encoder, max_patches,
                                          onnx_session, read_manifest, sha256_file, state_dict_sha256)
from gmos_core.export.parity import head_parity, pi3_parity  # noqa: E402
from gmos_core.models.layers.rope import RoPE2D  # noqa: E402

# Measured on this machine (docs/gpu.md, "Parity"): tiny Pi3 end to end max |onnx - torch| <= 3.7e-6 with outputs
# up to |3.8|; full-size heads <= 2.6e-6 (proposer mask logits up to |1.7|): fp32 rounding of reordered
# reductions. Tolerances: about 5x those.
PI3_TINY_ATOL = 2e-5
HEAD_ATOL = 1.5e-5
TINY_PIXEL_LIMIT = 14 * 14 * 60


@pytest.fixture(scope="module")
def tiny_pi3():
    torch.manual_seed(0)
    return M.build_pi3_encoder("tiny").eval()


@pytest.fixture(scope="module")
def tiny_pi3_sessions(tiny_pi3, tmp_path_factory):
    out = tmp_path_factory.mktemp("pi3_tiny")
    export_pi3_encoder(tiny_pi3, out / "pi3_encoder.onnx", (70, 112), TINY_PIXEL_LIMIT)
    export_pi3_decoder(tiny_pi3, out / "pi3_decoder.onnx", 5, (70, 112), TINY_PIXEL_LIMIT)
    return onnx_session(out / "pi3_encoder.onnx", 1), onnx_session(out / "pi3_decoder.onnx", 1), out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_export_friendly_rope_is_identical_and_restored(dtype):
    rope = RoPE2D(100.0)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 4, 30, 16, generator=g).to(dtype)
    positions = torch.randint(0, 12, (2, 30, 2), generator=g)
    reference = rope(tokens, positions)
    original = RoPE2D.forward
    with export_friendly_rope():
        assert RoPE2D.forward is not original
        patched = RoPE2D(100.0)(tokens, positions)
    assert RoPE2D.forward is original
    assert patched.dtype == reference.dtype
    assert torch.equal(patched, reference)  # same float32 products and casts: bit-identical


@pytest.mark.slow
def test_pi3_encoder_decoder_parity_dynamic_sizes(tiny_pi3, tiny_pi3_sessions):
    encoder, decoder, _ = tiny_pi3_sessions
    # the export sample size, a portrait one, a square one and a one-patch-high one: H x W is dynamic
    rows = pi3_parity(tiny_pi3, encoder, decoder, [(70, 112), (98, 56), (42, 42), (14, 28)])
    for row in rows:
        assert row["max_abs_ref"] > 0.5, row  # the outputs are not trivially small
        assert row["max_abs_diff"] < PI3_TINY_ATOL, row


@pytest.mark.slow
def test_pi3_encoder_takes_any_frame_count(tiny_pi3, tiny_pi3_sessions):
    encoder, _, _ = tiny_pi3_sessions
    images = torch.rand(3, 3, 56, 84)
    tokens = encoder.run(None, {"images": images.numpy()})[0]
    with torch.no_grad():
        expected = tiny_pi3.encode_frames(images).reshape(3, 4, 6, -1).numpy()
    assert tokens.shape == expected.shape
    np.testing.assert_allclose(tokens, expected, atol=PI3_TINY_ATOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["gmos_s", "proposer"])
def test_full_size_head_parity(variant, tmp_path):
    torch.manual_seed(1)
    head = (M.build_gmos_s if variant == "gmos_s" else M.build_proposer)("full").eval()
    path = export_head(head, tmp_path / "head.onnx", (27, 48))
    session = onnx_session(path, 2)
    rows = head_parity(head, variant, session, [(27, 48), (31, 41)], batch=1)
    assert [r["output"] for r in rows[: len(HEAD_OUTPUTS[variant])]] == list(HEAD_OUTPUTS[variant])
    for row in rows:
        assert row["max_abs_diff"] < HEAD_ATOL, row
    masks = [r for r in rows if r["output"] in ("fg_mask", "mask")]
    assert all(r["max_abs_ref"] > 0.1 for r in masks)  # non-trivial mask logits were compared


@pytest.mark.skipif(os.environ.get("GMOS_FULL_EXPORT_TEST") != "1",
                    reason="full-size Pi3 export needs ~3 GB of disk, ~10 GB of RAM and minutes: set "
                    "GMOS_FULL_EXPORT_TEST=1 (figures in docs/gpu.md)")
def test_full_size_pi3_parity(tmp_path):
    torch.manual_seed(0)
    pi3 = M.build_pi3_encoder("full").eval()
    export_pi3_encoder(pi3, tmp_path / "e.onnx", (112, 196))
    export_pi3_decoder(pi3, tmp_path / "d.onnx", 5, (112, 196))
    rows = pi3_parity(pi3, onnx_session(tmp_path / "e.onnx", 2), onnx_session(tmp_path / "d.onnx", 2),
                      [(112, 196), (84, 84)])
    # Measured end to end at full size: <= 5.2e-6 with outputs up to |4.7| (docs/gpu.md); about 6x that.
    for row in rows:
        assert row["max_abs_diff"] < 3e-5, row


def test_manifest_and_metadata(tmp_path):
    torch.manual_seed(2)
    pi3 = M.build_pi3_encoder("tiny").eval()
    head = M.build_gmos_s("tiny").eval()
    metadata = {"gmos_format": "1", "name": "test-model", "variant": "gmos_s", "anchor": "center",
                "window_size": "5", "window_seconds": "0.5", "components": "pi3,sam2_image_encoder,head"}
    manifest = export_model_set(pi3, head, tmp_path, metadata, sample_hw=(70, 112), pixel_limit=TINY_PIXEL_LIMIT,
                                components=("head",), progress=lambda _m: None)
    assert read_manifest(tmp_path) == json.loads((tmp_path / "manifest.json").read_text()) == manifest
    (graph,) = manifest["graphs"]
    assert graph["name"] == "head" and graph["outputs"] == list(HEAD_OUTPUTS["gmos_s"])
    assert graph["weights_sha256"] == state_dict_sha256(head)
    assert graph["files_sha256"] == {"head.onnx": sha256_file(tmp_path / "head.onnx")}
    assert manifest["metadata"] == metadata and manifest["max_patches_per_frame"] == max_patches(TINY_PIXEL_LIMIT)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "head.onnx")).metadata_props}
    assert props["name"] == "test-model" and props["variant"] == "gmos_s" and props["gmos_graph"] == "head"
    assert props["weights_sha256"] == state_dict_sha256(head)


def test_weights_hash_changes_with_any_weight():
    torch.manual_seed(3)
    head = M.build_gmos_s("tiny")
    before = state_dict_sha256(head)
    with torch.no_grad():
        next(head.parameters()).view(-1)[0] += 1e-3
    assert state_dict_sha256(head) != before


def test_export_model_set_refuses_bad_requests(tmp_path):
    pi3, head = M.build_pi3_encoder("tiny"), M.build_gmos_s("tiny")
    with pytest.raises(ValueError, match="unknown export component"):
        export_model_set(pi3, head, tmp_path, {}, components=("sam2",))
    with pytest.raises(ValueError, match="multiples of 14"):
        export_model_set(pi3, head, tmp_path, {}, sample_hw=(100, 100))
    with pytest.raises(FileNotFoundError, match="gmos export"):
        read_manifest(tmp_path / "nothing")


def test_export_error_names_the_graph(tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, token, sam_btn, high_res):
            raise RuntimeError("boom")

    broken = Broken()
    broken.config = M.build_gmos_s("tiny").config
    with pytest.raises(ExportError, match=r"ONNX export of head\.onnx failed"):
        export_head(broken, tmp_path / "head.onnx", (5, 8), TINY_PIXEL_LIMIT)


def test_cli_export_head_with_check(tmp_path, capsys):
    from gmos_core.cli.main import main

    code = main(["export", str(tmp_path), "--tiny-random-model", "--mode", "gmos_s", "--components", "head",
                 "--check"])
    out = capsys.readouterr().out
    assert code == 0, out
    manifest = read_manifest(tmp_path)
    assert [g["name"] for g in manifest["graphs"]] == ["head"]
    assert manifest["metadata"]["variant"] == "gmos_s" and manifest["metadata"]["gmos_format"] == "1"
    assert "head_gmos_s" in out and "max |onnx - torch|" in out
    # in-process: the command must leave the caller's autograd mode as it found it (a global
    # set_grad_enabled(False) here once broke every training test that ran after it)
    import torch

    assert torch.is_grad_enabled()


@pytest.mark.parametrize("argv, message", [
    (["--components", "sam2"], "--components 'sam2': unknown ['sam2']"),
    (["--pixel-limit", "5"], "--pixel-limit 5: expected an integer >= 196"),
    (["--pi3-weights", "{tmp}/pi3.pt"], "but not --sam2-checkpoint, --head-weights"),
])
def test_cli_export_bad_input_one_line(tmp_path, capsys, argv, message):
    from gmos_core.cli.main import main

    (tmp_path / "pi3.pt").write_bytes(b"not a checkpoint, only one of three files")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    extra = [] if "--pi3-weights" in argv else ["--tiny-random-model"]
    assert main(["export", str(tmp_path / "out"), *extra, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
