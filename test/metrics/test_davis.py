"""DAVIS 2017 J / F / statistics on hand-built masks, conventions, and the fg/bg and MoCA variants."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from gmos_core.cli.main import main as gmos_main
from gmos_core.metrics import (
    aggregate_davis,
    box_iou,
    db_eval_iou,
    db_statistics,
    evaluate_davis_sequence,
    f_measure,
    mask_to_box,
    seg2bmap,
    success_rates,
)
from gmos_core.metrics.davis import disk, frame_jf_tables


def _sq(h, w, y, x, s, label=1):
    m = np.zeros((h, w), np.uint8)
    m[y : y + s, x : x + s] = label
    return m


def _reference_f(fg, gt, void=None, bound_th=0.008):
    """Plain transcription of the DAVIS definition (scipy dilation), for cross-checking."""
    keep = np.ones_like(fg, bool) if void is None else ~void
    r = bound_th if bound_th >= 1 else math.ceil(bound_th * np.linalg.norm(fg.shape))
    fb, gb = seg2bmap(fg & keep), seg2bmap(gt & keep)
    fd = binary_dilation(fb, structure=disk(r).astype(bool))
    gd = binary_dilation(gb, structure=disk(r).astype(bool))
    n_fg, n_gt = fb.sum(), gb.sum()
    if n_fg == 0 and n_gt > 0:
        p, rc = 1, 0
    elif n_fg > 0 and n_gt == 0:
        p, rc = 0, 1
    elif n_fg == 0 and n_gt == 0:
        p, rc = 1, 1
    else:
        p, rc = (fb & gd).sum() / n_fg, (gb & fd).sum() / n_gt
    return 0 if p + rc == 0 else 2 * p * rc / (p + rc)


def test_j_known_values():
    gt = _sq(10, 10, 0, 0, 4).astype(bool)
    half = np.zeros_like(gt)
    half[0:4, 0:2] = True
    assert db_eval_iou(gt, half) == 0.5
    assert db_eval_iou(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    assert db_eval_iou(gt, np.zeros_like(gt)) == 0.0
    void = np.zeros_like(gt)
    void[0:4, 2:4] = True  # the missed half is void -> perfect
    assert db_eval_iou(gt, half, void) == 1.0
    stack = db_eval_iou(np.stack([gt, gt]), np.stack([half, np.zeros_like(gt)]))
    assert stack.tolist() == [0.5, 0.0]


def test_seg2bmap_marks_pixels_differing_from_right_lower_neighbours():
    seg = _sq(6, 6, 1, 1, 3).astype(bool)
    b = seg2bmap(seg)
    assert b[0, 0] and b[0, 1] and b[1, 0]  # outside, touching the square below / right
    assert b[3, 3] and b[1, 3] and b[3, 1]  # inside, on the right / bottom edges
    assert not b[1, 1] and not b[2, 2]  # inside, all neighbours inside
    assert not b[5, 5] and not b[0, 5]
    assert seg2bmap(np.zeros((4, 4), bool)).sum() == 0


def test_f_known_values():
    gt = _sq(20, 20, 5, 5, 6).astype(bool)
    assert math.ceil(0.008 * np.linalg.norm(gt.shape)) == 1
    assert f_measure(gt, gt) == 1.0
    assert f_measure(np.roll(gt, 1, axis=1), gt) == 1.0  # within the 1-pixel tolerance
    assert f_measure(_sq(20, 20, 14, 14, 4).astype(bool), _sq(20, 20, 0, 0, 4).astype(bool)) == 0.0
    assert f_measure(np.zeros_like(gt), gt) == 0.0
    assert f_measure(np.zeros_like(gt), np.zeros_like(gt)) == 1.0


def test_f_matches_plain_definition_and_pairwise_tables():
    rng = np.random.default_rng(0)
    for _ in range(5):
        h, w = rng.integers(40, 140, 2)
        gts = np.stack([binary_dilation(rng.random((h, w)) > 0.995, iterations=int(rng.integers(2, 8)))
                        for _ in range(3)])
        preds = np.stack([binary_dilation(rng.random((h, w)) > 0.995, iterations=int(rng.integers(2, 8)))
                          for _ in range(4)])
        preds[3] = False
        void = rng.random((h, w)) > 0.98
        j, f = frame_jf_tables(gts, preds, void)
        for p in range(4):
            for k in range(3):
                assert f[p, k] == pytest.approx(_reference_f(preds[p], gts[k], void), abs=1e-12)
                assert f_measure(preds[p], gts[k], void) == pytest.approx(f[p, k], abs=1e-12)
                assert j[p, k] == pytest.approx(db_eval_iou(gts[k], preds[p], void), abs=1e-12)


def test_statistics_mean_recall_decay():
    m, r, d = db_statistics(np.array([1, 1, 1, 1, 0, 0, 0, 0], float))
    assert (m, r, d) == (0.5, 0.5, 1.0)
    m, r, d = db_statistics(np.array([0.2, 0.6, 0.9]))
    assert m == pytest.approx(17 / 30) and r == pytest.approx(2 / 3)


def _video(n=6, h=30, w=40):
    gts, preds = [], []
    for t in range(n):
        g = _sq(h, w, 2, 2 + t, 8, 1) + _sq(h, w, 18, 20, 8, 2)
        p = _sq(h, w, 2, 3 + t, 8, 5) + _sq(h, w, 18, 20, 7, 9)
        gts.append(g)
        preds.append(p)
    return gts, preds


def test_unsupervised_matching_is_invariant_to_id_permutation():
    gts, preds = _video()
    a = evaluate_davis_sequence(gts, preds, "unsupervised")
    lut = np.arange(256, dtype=np.uint8)
    lut[5], lut[9] = 13, 2
    b = evaluate_davis_sequence(gts, [lut[p] for p in preds], "unsupervised")
    assert [o.object_id for o in a.objects] == [1, 2]
    assert [o.matched_pred_id for o in a.objects] == [5, 9]
    assert [o.matched_pred_id for o in b.objects] == [13, 2]
    assert a.summary()["J&F_mean"] == b.summary()["J&F_mean"]
    assert a.objects[1].j == pytest.approx([49 / 64] * 6)


def test_semi_supervised_drops_first_and_last_frame_and_uses_ids():
    gts, preds = _video()
    ids = [np.where(p == 5, 1, np.where(p == 9, 2, 0)).astype(np.uint8) for p in preds]
    r = evaluate_davis_sequence(gts, ids, "semi-supervised")
    assert r.n_frames == 4 and len(r.objects[0].j) == 4
    u = evaluate_davis_sequence(gts, ids, "unsupervised")
    assert u.objects[1].j_stats[0] == pytest.approx(r.objects[1].j_stats[0])
    with pytest.raises(ValueError, match="largest predicted id is 9 but the annotation has 2 objects"):
        evaluate_davis_sequence(gts, preds, "semi-supervised")


def test_unsupervised_limits_and_void():
    gts, preds = _video()
    with pytest.raises(ValueError, match="exceeds the 20 proposals"):
        evaluate_davis_sequence(gts, [np.where(p > 0, 21, 0).astype(np.uint8) for p in preds], "unsupervised")
    with pytest.raises(ValueError, match="6 annotated frames but 5 predicted"):
        evaluate_davis_sequence(gts, preds[:5])
    # 255 is read as background (the official evaluator never excludes void pixels)
    void_gt = [np.where(_sq(30, 40, 20, 30, 10, 1) > 0, 255, g).astype(np.uint8) for g in gts]
    zero_gt = [np.where(g == 255, 0, g).astype(np.uint8) for g in void_gt]
    r = evaluate_davis_sequence(void_gt, preds, "unsupervised")
    assert r.summary() == evaluate_davis_sequence(zero_gt, preds, "unsupervised").summary()
    agg = aggregate_davis([r])
    assert 0 < agg.j_mean <= 1 and agg.n_objects == 2
    # fewer predictions than objects: padded with empty predictions (J = F = 0 for the missing object)
    one = [np.where(p == 5, 1, 0).astype(np.uint8) for p in preds]
    r1 = evaluate_davis_sequence(gts, one, "unsupervised")
    assert r1.objects[1].j == [0.0] * 6 and r1.objects[1].matched_pred_id == 2
    with pytest.raises(ValueError, match="largest predicted id is 1 but the annotation has 2"):
        evaluate_davis_sequence(gts, one, "semi-supervised")


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.astype(np.uint8).tobytes())
    img.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    img.save(path)


@pytest.mark.parametrize("protocol", ["mos", "uvos", "fgbg"])
def test_cli_davis_protocols(tmp_path, capsys, protocol):
    gts, preds = _video()
    for t, (g, p) in enumerate(zip(gts, preds)):
        _write(tmp_path / "anno" / "seqX" / f"{t:05d}.png", g)
        _write(tmp_path / "out" / "mos_frame" / "seqX" / f"{t:05d}.png", p)
        _write(tmp_path / "out" / "frame" / "seqX" / f"{t:05d}.png", (p > 0).astype(np.uint8))
    rc = gmos_main(["eval", "--protocol", protocol, "--pred", str(tmp_path / "out"), "--anno",
                    str(tmp_path / "anno"), "--out", str(tmp_path / "res"), "--quiet", "--workers", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "J&F-Mean" in text and "seqX_1" in text
    import json

    res = json.loads((tmp_path / "res" / "results.json").read_text())
    expected = evaluate_davis_sequence(
        gts, preds if protocol != "fgbg" else [(p > 0).astype(np.uint8) for p in preds],
        objects_from_first_frame=False) if protocol != "fgbg" else evaluate_davis_sequence(
        [(g > 0).astype(np.uint8) for g in gts], [(p > 0).astype(np.uint8) for p in preds])
    assert res["aggregate"]["J&F_mean"] == pytest.approx(aggregate_davis([expected]).jf_mean, abs=1e-12)
    assert (tmp_path / "res" / "per_sequence.png").is_file()


def test_cli_errors_are_clear(tmp_path, capsys):
    (tmp_path / "anno" / "a").mkdir(parents=True)
    (tmp_path / "pred").mkdir()
    rc = gmos_main(["eval", "--protocol", "mos", "--pred", str(tmp_path / "pred"), "--anno", str(tmp_path / "anno"),
                    "--quiet"])
    assert rc == 1
    assert "sequence folder(s) missing under the predictions" in capsys.readouterr().err
    rc = gmos_main(["eval", "--protocol", "mos-i", "--pred", str(tmp_path / "nope"), "--anno",
                    str(tmp_path / "anno"), "--quiet"])
    assert rc == 1
    assert "prediction folder not found" in capsys.readouterr().err


def test_moca_success_rate():
    assert mask_to_box(_sq(10, 10, 2, 3, 4)) == (3.0, 2.0, 7.0, 6.0)
    assert mask_to_box(np.zeros((4, 4))) is None
    assert box_iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(1 / 3)
    masks = [_sq(10, 10, 0, 0, 4), _sq(10, 10, 0, 0, 4), np.zeros((10, 10))]
    boxes = [(0, 0, 4, 4), (0, 0, 4, 6), (0, 0, 1, 1)]  # IoU 1, 2/3, empty prediction
    sr = success_rates(masks, boxes)
    assert sr.per_threshold == pytest.approx([2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3])
    assert sr.mean == pytest.approx(7 / 15)
    with pytest.raises(ValueError, match="2 predicted masks but 3"):
        success_rates(masks[:2], boxes)


def test_fgbg_reads_prob_maps_with_the_half_threshold(tmp_path, capsys):
    gt = _sq(20, 30, 4, 4, 8, 1) + _sq(20, 30, 4, 18, 6, 2)
    prob = np.zeros((20, 30), np.uint8)
    prob[4:12, 4:12] = 200  # object 1 found
    prob[4:10, 18:24] = 127  # object 2 just below 0.5 -> background
    for t in range(3):
        _write(tmp_path / "anno" / "s" / f"{t:05d}.png", gt)
        path = tmp_path / "out" / "prob" / "s" / f"{t:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(prob, mode="L").save(path)
    rc = gmos_main(["eval", "--protocol", "fgbg", "--pred", str(tmp_path / "out"), "--anno", str(tmp_path / "anno"),
                    "--quiet", "--out", str(tmp_path / "res"), "--no-plots"])
    assert rc == 0
    import json

    res = json.loads((tmp_path / "res" / "results.json").read_text())
    assert res["aggregate"]["J_mean"] == pytest.approx(64 / 100)


def test_label_tables_equal_mask_tables():
    from gmos_core.metrics.davis import frame_jf_from_labels

    rng = np.random.default_rng(5)
    for _ in range(4):
        h, w = rng.integers(30, 120, 2)
        gt = np.zeros((h, w), np.uint8)
        pred = np.zeros((h, w), np.uint8)
        for k in range(1, 5):
            y, x = rng.integers(0, h - 10), rng.integers(0, w - 10)
            gt[y : y + int(rng.integers(3, 12)), x : x + int(rng.integers(3, 12))] = k
            y, x = rng.integers(0, h - 10), rng.integers(0, w - 10)
            pred[y : y + int(rng.integers(3, 12)), x : x + int(rng.integers(3, 12))] = k + 1
        gt_m = gt[None] == np.arange(1, 4)[:, None, None]  # 3 objects: id 4 is beyond the count
        pr_m = pred[None] == np.arange(1, 7)[:, None, None]
        j1, f1 = frame_jf_tables(gt_m, pr_m, None)
        j2, f2 = frame_jf_from_labels(gt, pred, 3, 6)
        np.testing.assert_allclose(j1, j2, rtol=0, atol=1e-12)
        np.testing.assert_allclose(f1, f2, rtol=0, atol=1e-12)
