"""MOS-I behaviour on hand-built sequences with known answers and on every documented edge case."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gmos_core.metrics import (
    EvaluationInputError,
    MotionScoreError,
    ObjectIdError,
    evaluate_mos_i_arrays,
    evaluate_mos_i_folders,
    frame_table,
    load_time_annotations,
    motion_matrix,
    read_label_png,
)
from gmos_core.metrics.mos_i import MOS_I_THRESHOLDS


def _square(h, w, y, x, s, label=1, dtype=np.uint8):
    m = np.zeros((h, w), dtype)
    m[y : y + s, x : x + s] = label
    return m


def test_perfect_prediction_known_numbers():
    gt = [_square(20, 30, 2, 2, 6, 1) for _ in range(4)]
    r = evaluate_mos_i_arrays(gt, gt, {"1": [[0, 3]]}, frame_level=True)
    assert r.slhm.j_mov_per_object == [1.0]
    assert r.slhm.fp_count == 0.0
    assert r.slhm.mtiou_per_threshold == pytest.approx([4 / (4 + 4 - 4 + 1e-8)] * 10, abs=1e-15)
    assert r.flhm.summary()["j_mov"] == 1.0


def test_half_overlap_iou_and_thresholds():
    gt = [_square(10, 10, 0, 0, 4)]
    pred = [np.zeros((10, 10), np.uint8)]
    pred[0][0:4, 0:2] = 1  # 8 of 16 pixels -> IoU 0.5
    r = evaluate_mos_i_arrays(gt, pred, {"1": [[0, 0]]})
    assert r.slhm.j_mov_per_object == [0.5]
    # 0.5 is not > 0.50: no hit at any threshold; P = 1, G = 1
    assert r.slhm.mtiou_per_threshold == [0.0] * 10


def test_empty_predictions_only_count_moving_pairs_with_empty_gt():
    # object 1 moves on frames 0-1 but its GT mask is empty on frame 1 -> both-empty IoU = 1 is a hit
    gt = [_square(10, 10, 0, 0, 3), np.zeros((10, 10), np.uint8)]
    pred = [np.zeros((10, 10), np.uint8)] * 2
    r = evaluate_mos_i_arrays(gt, pred, {"1": [[0, 1]]})
    assert r.slhm.j_mov_per_object == [0.5]  # IoU 0 then 1
    assert r.slhm.fp_count == 0.0
    # P = 0, G = 2, I = 1 at every threshold
    assert r.slhm.mtiou_per_threshold == pytest.approx([1 / (0 + 2 - 1 + 1e-8)] * 10)


def test_never_moving_object_gives_no_j_mov_but_counts_false_positives():
    gt = [_square(12, 12, 0, 0, 4, 1) + _square(12, 12, 6, 6, 4, 2) for _ in range(3)]
    r = evaluate_mos_i_arrays(gt, gt, {"1": [[0, 2]]})  # object 2 never moves
    assert r.slhm.object_ids == [1]
    assert r.slhm.j_mov_per_object == [1.0]
    assert r.slhm.fp_count == pytest.approx(1.0)  # predicting the static object 2 on each frame
    assert r.num_moving_objects == 1


def test_time_annotation_ranges_are_inclusive_and_clipped():
    m = motion_matrix({"2": [[1, 2], [4, 99]], "20": [[0, 0]]}, 6)
    assert m.shape == (6, 20)
    assert m[:, 1].tolist() == [0, 1, 1, 0, 1, 1]
    assert m[:, 19].tolist() == [1, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("key", ["21", "0", "x"])
def test_time_annotation_keys_outside_protocol_raise(key):
    with pytest.raises(ObjectIdError, match="time annotation key"):
        motion_matrix({key: [[0, 1]]}, 3)


def test_gt_ids_beyond_20_raise_clear_error():
    gt = _square(8, 8, 0, 0, 3, 21)
    with pytest.raises(ObjectIdError, match=r"id\(s\) \[21\] exceed 20"):
        frame_table(gt, gt)


def test_predicted_ids_beyond_20_are_ignored():
    gt = [_square(8, 8, 0, 0, 3, 1)]
    pred = [_square(8, 8, 0, 0, 3, 1) + _square(8, 8, 5, 5, 3, 25)]
    r = evaluate_mos_i_arrays(gt, pred, {"1": [[0, 0]]})
    assert r.slhm.fp_count == 0.0 and r.slhm.j_mov_per_object == [1.0]


def test_matching_is_invariant_to_predicted_id_permutation():
    rng = np.random.default_rng(0)
    gt = []
    for f in range(6):
        g = np.zeros((24, 24), np.uint8)
        for k in range(1, 5):
            y, x = rng.integers(0, 18, 2)
            g[y : y + 5, x : x + 5] = k
        gt.append(g)
    noisy = [np.where(rng.random(g.shape) < 0.1, 0, g).astype(np.uint8) for g in gt]
    perm = np.array([0, 7, 3, 12, 9] + list(range(5, 256)), np.uint8)  # 1->7, 2->3, 3->12, 4->9
    permuted = [perm[p] for p in noisy]
    anno = {"1": [[0, 5]], "2": [[1, 4]], "3": [[0, 2]], "4": [[3, 5]]}
    a = evaluate_mos_i_arrays(gt, noisy, anno, frame_level=True)
    b = evaluate_mos_i_arrays(gt, permuted, anno, frame_level=True)
    assert a.slhm.summary() == b.slhm.summary()
    assert a.flhm.summary() == b.flhm.summary()
    assert a.slhm.j_mov > 0.5


def test_frame_level_matching_follows_identity_switches():
    gt = [_square(16, 16, 0, 0, 5, 1) + _square(16, 16, 9, 9, 5, 2) for _ in range(4)]
    swapped = [_square(16, 16, 0, 0, 5, 2) + _square(16, 16, 9, 9, 5, 1) for _ in range(2)]
    pred = gt[:2] + swapped  # identity switch half-way
    r = evaluate_mos_i_arrays(gt, pred, {"1": [[0, 3]], "2": [[0, 3]]}, frame_level=True)
    assert r.flhm.j_mov_per_object == [1.0, 1.0]
    assert r.slhm.j_mov_per_object == [0.5, 0.5]


def test_motion_scores_gate_channels_and_bad_shapes_raise():
    gt = [_square(8, 8, 0, 0, 3, 1)] * 3
    scores = np.zeros((3, 20, 1), np.float32)
    scores[:, 0, 0] = [0.9, 0.5, 0.51]  # <= 0.5 gates the channel off
    r = evaluate_mos_i_arrays(gt, gt, {"1": [[0, 2]]}, motion_scores=scores)
    assert r.slhm.j_mov_per_object == pytest.approx([2 / 3])
    with pytest.raises(MotionScoreError, match=r"expected \(3 or more frames, 20, 1\)"):
        evaluate_mos_i_arrays(gt, gt, {"1": [[0, 2]]}, motion_scores=np.zeros((2, 20, 1)))


def test_smaller_prediction_is_resized():
    gt = [_square(20, 20, 0, 0, 10, 1)]
    pred = [_square(10, 10, 0, 0, 5, 1)]
    r = evaluate_mos_i_arrays(gt, pred, {"1": [[0, 0]]})
    assert r.resized
    assert r.slhm.j_mov_per_object[0] > 0.8


def test_extra_frames_ignored_and_no_frames_error():
    gt = [_square(8, 8, 0, 0, 3)] * 3
    r = evaluate_mos_i_arrays(gt, gt + gt, {"1": [[0, 5]]})
    assert r.n_frames == 3 and r.n_pred_frames == 6
    with pytest.raises(ValueError, match="no frames"):
        evaluate_mos_i_arrays(gt, [], {"1": [[0, 2]]})


def test_thresholds_are_official():
    assert np.allclose(MOS_I_THRESHOLDS, np.arange(0.5, 1.0, 0.05))
    assert len(MOS_I_THRESHOLDS) == 10


# ------------------------------------------------------------------------------------------ folders


def _write(path, arr, mode="P"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if mode == "P":
        img = img.convert("P")
        img.putpalette([v for i in range(256) for v in (i, 255 - i, (i * 7) % 256)])
        img = Image.frombytes("P", img.size, arr.astype(np.uint8).tobytes())
        img.putpalette([v for i in range(256) for v in (i, 255 - i, (i * 7) % 256)])
    img.save(path)


def _make_set(root, n_gt=4, n_pred=4):
    for i in range(n_gt):
        _write(root / "anno" / "s1" / f"{i:05d}.png", _square(16, 16, 2, 2, 6, 1))
    for i in range(n_pred):
        _write(root / "pred" / "mos-i_frame" / "s1" / f"{i:05d}.png", _square(16, 16, 2, 3, 6, 1))
    csv = root / "t.csv"
    csv.write_text('seq_name,time_anno,ann_frames,vid_frames,dataset,split\n'
                   's1,"{\'1\': [[0, 3]]}",4,4,davis,test\n'
                   'empty,{},4,4,davis,test\n')
    return csv


def test_palette_png_roundtrip(tmp_path):
    arr = _square(5, 7, 1, 1, 3, 17)
    _write(tmp_path / "a.png", arr)
    assert np.array_equal(read_label_png(tmp_path / "a.png"), arr)


def test_folders_accept_gmos_infer_root_and_drop_empty_rows(tmp_path):
    from gmos_core.metrics.readers import resolve_prediction_dir

    csv = _make_set(tmp_path)
    annos = load_time_annotations(csv, "davis17-im")
    assert list(annos) == ["s1"]
    pred = resolve_prediction_dir(tmp_path / "pred", "mos-i")
    assert pred.name == "mos-i_frame"
    rep = evaluate_mos_i_folders(pred, tmp_path / "anno", annos, progress=False)
    assert rep.slhm.j_mov == pytest.approx(30 / 42, abs=1e-6)


def test_missing_sequence_folder_is_named(tmp_path):
    csv = _make_set(tmp_path)
    annos = load_time_annotations(csv)
    annos["ghost"] = {"1": [[0, 1]]}
    with pytest.raises(EvaluationInputError, match=r"missing under the predictions .*\['ghost'\]"):
        evaluate_mos_i_folders(tmp_path / "pred" / "mos-i_frame", tmp_path / "anno", annos, progress=False)


def test_unreadable_and_rgb_pngs_are_named(tmp_path):
    csv = _make_set(tmp_path)
    bad = tmp_path / "pred" / "mos-i_frame" / "s1" / "00002.png"
    bad.write_bytes(b"not a png")
    annos = load_time_annotations(csv)
    with pytest.raises(EvaluationInputError, match="00002.png: unreadable PNG"):
        evaluate_mos_i_folders(tmp_path / "pred" / "mos-i_frame", tmp_path / "anno", annos, progress=False)
    Image.new("RGB", (16, 16)).save(bad)
    with pytest.raises(EvaluationInputError, match="mode 'RGB'; expected a palette-indexed"):
        evaluate_mos_i_folders(tmp_path / "pred" / "mos-i_frame", tmp_path / "anno", annos, progress=False)


def test_frame_count_mismatch_noted_or_strict_error(tmp_path):
    csv = _make_set(tmp_path, n_gt=4, n_pred=3)
    annos = load_time_annotations(csv)
    pred = tmp_path / "pred" / "mos-i_frame"
    rep = evaluate_mos_i_folders(pred, tmp_path / "anno", annos, progress=False)
    assert rep.results[0].n_frames == 3
    assert rep.notes == ["s1: 4 annotated vs 3 predicted frames, evaluated the first 3"]
    with pytest.raises(EvaluationInputError, match="4 annotation PNGs .* but 3 prediction PNGs"):
        evaluate_mos_i_folders(pred, tmp_path / "anno", annos, progress=False, strict_frames=True)


def test_bundled_gmos2k_csv_selects_official_sequence_counts():
    assert len(load_time_annotations(None, "davis17-im")) == 19
    assert len(load_time_annotations(None, "ytvos19-im")) == 231


def test_fast_and_generic_frame_tables_agree():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 21, (37, 53)).astype(np.uint8)
    pred = rng.integers(0, 40, (37, 53)).astype(np.uint8)
    fast = frame_table(gt, pred)
    slow = frame_table(gt.astype(np.int32), pred.astype(np.int32))
    for a, b in [(fast.inter, slow.inter), (fast.pred_area, slow.pred_area), (fast.gt_area, slow.gt_area)]:
        assert np.array_equal(a, b)
    assert fast.inter.sum() == ((pred > 0) & (pred <= 20) & (gt > 0)).sum()
    with pytest.raises(ObjectIdError, match=r"\[200\]"):
        frame_table(np.where(gt == 3, 200, gt).astype(np.uint8), pred)
