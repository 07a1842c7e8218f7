"""benchmarks/mos_i_breakdown.py sorts every moving (frame, object) pair and every predicted (frame, id) pair
into one kind of outcome; a crafted clip with one case of each gives exact counts."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.mos_i_breakdown import breakdown_sequence, pooled, what_if  # noqa: E402


def _box(label, top, left, h, w, value):
    label[top:top + h, left:left + w] = value


def test_each_kind_of_error_is_counted_once():
    n, shape = 6, (40, 40)
    gts, preds = [], []
    for f in range(n):
        gt = np.zeros(shape, np.uint8)
        _box(gt, 5, 5, 10, 10, 1)     # object 1: moving on frames 0-4, static on 5
        _box(gt, 20, 5, 10, 10, 2)    # object 2 (6 % of the frame): moving on every frame
        _box(gt, 35, 35, 2, 2, 3)     # object 3 (0.25 %): moving on frame 5 only, never found
        pred = np.zeros(shape, np.uint8)
        _box(pred, 5, 5, 10, 10, 1)   # id 1 = object 1 on every frame (frame 5: a static-frame prediction)
        if f <= 2:
            _box(pred, 20, 5, 10, 10, 2)  # id 2 = object 2: hits
        elif f == 3:
            _box(pred, 5, 5, 25, 10, 1)   # id 1 over both: object 1 low IoU (0.5), object 2 merged
        elif f == 4:
            _box(pred, 20, 5, 10, 10, 9)  # object 2 under a split track's id
        gts.append(gt)
        preds.append(pred)               # frame 5: object 2 not detected
    counts = breakdown_sequence(gts, preds, {"1": [[0, 4]], "2": [[0, 5]], "3": [[5, 5]]}, "clip")
    assert counts["G"] == 5 + 6 + 1
    assert counts["hit"] == 4 + 3  # object 1 on frames 0-2 and 4, object 2 on 0-2
    assert counts["low_iou"] == 1
    assert counts["no_prediction"] == 4
    assert counts["merged"] == 1 and counts["other_id"] == 1
    assert counts["not_detected"] == {">= 2 %": 1, "0.2-0.5 %": 1}
    assert counts["P"] == 10
    assert counts["P_on_moving"] == 8
    # id 9 (frame 4) is matched either to object 3 (a static-frame prediction) or to no object: a tie in
    # MOS-I's matching; id 1 on frame 5 is a static-frame prediction either way
    assert counts["P_static_frames"] >= 1 and counts["P_static_frames"] + counts["P_extra"] == 2
    total = pooled({"clip": counts})
    scores = what_if(total)
    assert abs(scores["as measured"] - 7 / (10 + 12 - 7)) < 1e-9
    assert abs(scores["low-IoU pairs made hits"] - 8 / (10 + 12 - 8)) < 1e-9
    assert scores["undetected pairs made hits"] > scores["as measured"]
