"""training/retrain_default_cpu90.sh, the 90-minute CPU recipe, end to end on tiny configurations (seconds):
both steps run, the refinement stage is trained on the *uncalibrated* head of step 1 (a calibrated one can be
pushed to "call nothing", which would leave the refiner no head signal), and the result is one default-model file
with that head unchanged and a refiner added."""
import json
import os
import subprocess
import sys
from dataclasses import asdict

import torch
import yaml

from test.conftest import REPO_ROOT as ROOT
from test.training.tiny_configs import TINY_DEFAULT_TRAIN_YAML

SCRIPT = ROOT / "training" / "retrain_default_cpu90.sh"


def test_the_shipped_configs_load():
    from training.default_train import TrainConfig
    from training.refiner_train import RefinerTrainConfig

    TrainConfig.from_yaml(ROOT / "training" / "configs" / "default_cpu.yaml")
    refiner = RefinerTrainConfig.from_yaml(ROOT / "training" / "configs" / "default_cpu90_refiner.yaml")
    shipped = RefinerTrainConfig.from_yaml(ROOT / "training" / "configs" / "default_refiner.yaml")
    assert refiner.name == "gmos-default-cpu90"
    assert {**asdict(refiner), "name": None} == {**asdict(shipped), "name": None}  # the same recipe as s4's


def test_the_recipe_runs_both_steps_on_tiny_configs(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from gmos_core.weights.metadata import read_checkpoint_metadata

    head_cfg = tmp_path / "head.yaml"
    head_cfg.write_text(TINY_DEFAULT_TRAIN_YAML)
    refiner_cfg = tmp_path / "refiner.yaml"
    refiner_cfg.write_text(yaml.safe_dump({"clips_normal": 1, "clips_static_camera": 1, "clips_static_scene": 0,
                                           "frames": 8, "steps": 4, "batch_size": 2, "log_every": 2,
                                           "checkpoint_every": 2, "name": "cpu90-smoke"}))
    out = tmp_path / "run"
    env = {**os.environ, "HEAD_CONFIG": str(head_cfg), "REFINER_CONFIG": str(refiner_cfg), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), str(out), "0.05", "0.05"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "step 1/2" in done.stdout and "step 2/2" in done.stdout

    final = out / "gmos_default.safetensors"
    meta = read_checkpoint_metadata(final)
    assert meta.name == "cpu90-smoke" and meta.components[-1] == "refiner"
    with safe_open(str(final), framework="pt") as handle:
        strings = handle.metadata()
    assert "--time-budget-min 0.05" in strings["training_command"]
    assert "training.default_train" in json.loads(strings["base_model"])["training_command"]

    head = load_file(str(out / "head" / "gmos_default_uncalibrated.safetensors"))
    calibrated = load_file(str(out / "head" / "gmos_default.safetensors"))
    new = load_file(str(final))
    assert {k for k in new if not k.startswith("refiner.")} == set(head)
    assert all(torch.equal(new[k], head[k]) for k in head)  # step 1's uncalibrated head, bit for bit
    # The tiny run's calibration moves the bias (offset -0.5 when measured), so a recipe that used the calibrated
    # file would fail the bit-for-bit check above; make sure the data still exercises that.
    assert float((calibrated["head.fg_out.bias"] - head["head.fg_out.bias"]).abs().max()) > 0.1
