"""benchmarks/heldout_oracles.py: the ceilings in docs/default_model.md are only as good as its ground truth and
its scoring path."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import heldout_oracles as HO


def test_mos_i_ground_truth_keeps_objects_only_on_their_moving_frames():
    ann = np.zeros((4, 6), np.uint8)
    ann[0, :2], ann[1, :2], ann[2, 3:] = 1, 1, 2
    frames = [ann.copy() for _ in range(4)]
    gt = HO.mos_i_ground_truth(frames, {"1": [[0, 1]], "2": [[1, 1], [3, 3]]})
    # spans are inclusive; object 1 moves on 0-1, object 2 on 1 and 3
    assert [sorted(set(np.unique(g)) - {0}) for g in gt] == [[1], [1, 2], [], [2]]
    assert (gt[1][ann == 1] == 1).all() and (gt[1][ann == 2] == 2).all()
    assert not gt[2].any()


def test_perfect_instances_score_one_and_one_label_less(tmp_path):
    """Rendered clips end to end through `gmos eval --protocol mos-i`: the ground truth scores the metric's maximum
    (a frame misaligned between prediction and annotation, or static frames left in, would not), and merging all
    moving objects into one label scores below it where two objects move at once."""
    out = tmp_path / "ho"
    assert HO.main(["--out", str(out), "--normal", "2", "--static-camera", "1", "--static-scene", "0",
                    "--frames", "10", "--size", "160x96"]) == 0
    scores = json.loads((out / "oracle_scores.json").read_text())
    # the official script adds 1e-8 to denominators: 0.99999999938 measured
    assert scores["perfect instances"]["mtiou"] == pytest.approx(1.0, abs=1e-6)
    assert scores["perfect instances"]["j_mov"] == pytest.approx(1.0, abs=1e-6)
    for name, row in scores.items():
        assert 0.0 <= row["mtiou"] <= 1.0 + 1e-6, (name, row)
    assert scores["perfect fg/bg, one label"]["mtiou"] < 1.0
    assert scores["perfect fg/bg at 16x16"]["j_mov"] < scores["perfect fg/bg, components"]["j_mov"]
