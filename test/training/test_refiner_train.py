"""training.refiner_train: a seconds-long run of the whole command (render, engine outputs, train, export) makes a
default-model file the engine loads with its refinement stage; the cached inputs are the engine's own."""
import json

import numpy as np
import pytest
import torch
import yaml

from gmos_core.weights.default_model import default_model_path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from training import refiner_train

    out = tmp_path_factory.mktemp("refiner")
    cfg = out / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"clips_normal": 2, "clips_static_camera": 1, "clips_static_scene": 1,
                                   "frames": 10, "steps": 6, "batch_size": 2, "log_every": 3,
                                   "checkpoint_every": 3, "name": "refiner-smoke"}))
    base = default_model_path()
    assert refiner_train.main(["--config", str(cfg), "--out-dir", str(out), "--base", str(base),
                               "--threads", "2"]) == 0
    return out, base


def test_export_keeps_the_base_tensors_and_adds_the_refiner(tiny_run):
    from safetensors.torch import load_file

    from gmos_core.weights.metadata import read_checkpoint_metadata

    out, base = tiny_run
    path = out / "gmos_default.safetensors"
    meta = read_checkpoint_metadata(path)
    assert meta.name == "refiner-smoke" and meta.components[-1] == "refiner" and meta.refiner_config
    new, old = load_file(str(path)), load_file(str(base))
    core = {k for k in old if not k.startswith("refiner.")}  # the shipped base may carry a refiner: replaced
    assert {k for k in new if not k.startswith("refiner.")} == core
    assert all(torch.equal(new[k], old[k]) for k in core)
    from gmos_core.models.motion_refiner import MotionRefiner

    assert {k[len("refiner."):] for k in new if k.startswith("refiner.")} == set(MotionRefiner().state_dict())
    log = (out / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,") and len(log) == 3  # steps 3 and 6
    assert set(json.loads((out / "train_scores.json").read_text())) == {"refined_iou", "head_iou", "geometric_iou"}


def test_cached_inputs_are_what_the_engine_computes(tiny_run):
    """The cache holds the base model's gmos_s probability and the geometric mode's, area-downsampled: recompute
    one clip through the engine's own refinement inputs (a cache made at another size, from other frames or with
    the refiner switched on would differ)."""
    from gmos_core.engine.refinement import refiner_inputs
    from gmos_core.engine.streaming import run_clip
    from training import refiner_data as RD

    out, base = tiny_run
    row = next(r for r in __import__("csv").DictReader((out / "data" / "clips.csv").open()) if r["kind"] == "normal")
    cached = np.load(out / "cache" / f"{row['seq_name']}.npz")
    frames = RD.read_frames(out / "data", row["seq_name"])
    (bc, bm), (gc, gm) = RD.build_engines(str(base))
    head = np.stack([r.fg_prob for r in run_clip(bc, bm, frames)])
    motion = np.stack([r.motion_prob for r in run_clip(gc, gm, frames)])
    rgb, head_t, motion_t = refiner_inputs(frames, head, motion, 240 * 136)
    assert cached["rgb"].shape == (10, 3, 136, 240)
    np.testing.assert_allclose(cached["head"].astype(np.float32), head_t[:, 0].numpy(), atol=2e-3)
    np.testing.assert_allclose(cached["motion"].astype(np.float32), motion_t[:, 0].numpy(), atol=2e-3)
    assert cached["target"].max() > 0.9  # a clip with a moving object has a non-empty target
    assert cached["head"].max() > 0.5 or cached["motion"].max() > 0.5


def test_bad_config_and_base_are_refused(tmp_path, tiny_run, capsys):
    from training import refiner_train

    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    with pytest.raises(ValueError, match="unknown keys"):
        refiner_train.main(["--config", str(bad), "--out-dir", str(tmp_path / "o")])
    out, _ = tiny_run
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump({"clips_normal": 1, "clips_static_camera": 0, "clips_static_scene": 0,
                                  "frames": 10, "steps": 1, "batch_size": 1}))
    proposer = tmp_path / "proposer.safetensors"
    from safetensors.torch import save_file

    from gmos_core.weights.metadata import CheckpointMetadata

    save_file({"head.x": torch.zeros(1)}, str(proposer), metadata=CheckpointMetadata(
        variant="proposer", components=("head",)).to_strings())
    assert refiner_train.main(["--config", str(ok), "--out-dir", str(tmp_path / "o2"), "--base", str(proposer)]) == 2
    assert "with a GMOS-S head" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "data").exists()  # refused before any work


def test_a_base_with_a_refiner_gets_it_replaced(tiny_run, tmp_path):
    """Retraining from the shipped file (which may carry a refiner) replaces the refiner and keeps the rest."""
    from safetensors.torch import load_file

    from gmos_core.models.motion_refiner import MotionRefiner
    from training.refiner_train import RefinerTrainConfig, export

    out, base = tiny_run
    first = out / "gmos_default.safetensors"
    again = export(MotionRefiner(channels=(4, 8)), first, tmp_path / "again.safetensors",
                   RefinerTrainConfig(name="again"), "cmd", 1, {})
    new, old = load_file(str(again)), load_file(str(first))
    core = {k for k in old if not k.startswith("refiner.")}
    assert {k for k in new if not k.startswith("refiner.")} == core
    assert all(torch.equal(new[k], old[k]) for k in core)
    assert new["refiner.out.weight"].shape[1] == 4  # the new refiner, not the old one


def test_small_object_weighting():
    """Off by default (no weights, the batches the shipped refiner saw); on, a 4x4 object gets the capped weight,
    a large one and the background 1, measured on the whole frame (a crop through a large object keeps 1), and
    the sampled crops are the same either way. The weights reach the loss."""
    from training.refiner_train import RefinerTrainConfig, loss_fn, sample_batch, small_object_weights

    target = np.zeros((136, 240), np.float32)
    target[10:14, 10:14] = 1.0  # 16 px: 0.05 % of the frame -> sqrt(0.01 / 0.00049) = 4.5, capped at 3
    target[40:130, 20:220] = 1.0  # 55 % of the frame
    on = RefinerTrainConfig(small_object_weight=3.0, batch_size=6, crop=(100, 200))
    w = small_object_weights(target, on)
    assert w[11, 11] == 3.0 and w[60, 60] == 1.0 and w[0, 0] == 1.0 and w[20, 20] == 1.0
    assert small_object_weights(target, RefinerTrainConfig(small_object_weight=3.0, small_object_area=0.002))[11, 11] \
        == pytest.approx(np.sqrt(0.002 / (16 / target.size)))
    data = {"rgb": np.zeros((2, 3, 136, 240), np.uint8), "head": np.zeros((2, 136, 240), np.float16),
            "motion": np.zeros((2, 136, 240), np.float16), "target": np.stack([target] * 2).astype(np.float16)}
    off_batch = sample_batch(data, RefinerTrainConfig(batch_size=6, crop=(100, 200)), np.random.default_rng(3))
    on_batch = sample_batch(data, on, np.random.default_rng(3))
    assert off_batch[4] is None
    assert all(torch.equal(a, b) for a, b in zip(off_batch[:4], on_batch[:4]))
    weight = on_batch[4]
    assert weight.shape == on_batch[3].shape
    assert torch.all(weight[on_batch[3] == 0] == 1.0) and torch.all(weight >= 1.0) and torch.all(weight <= 3.0)
    small = [i for i in range(6) if (weight[i] == 3.0).any()]
    assert small and all(int((weight[i] == 3.0).sum()) <= 16 for i in small)  # only the small object's pixels
    assert any(int((weight[i] == 1.0)[on_batch[3][i] > 0].sum()) > 1000 for i in range(6))  # crops of the large one
    logits = torch.zeros_like(on_batch[3])
    assert float(loss_fn(logits, on_batch[3], on, weight)) != float(loss_fn(logits, on_batch[3], on))
    for bad in ({"small_object_weight": 0.5}, {"small_object_area": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RefinerTrainConfig(**bad)
