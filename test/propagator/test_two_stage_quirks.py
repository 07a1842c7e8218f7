"""Inputs on which the official two-stage code crashes run here (docs/propagator.md, "Quirks"), and bad
inputs get clear errors. Tiny random SAM 2 at a small image size on 3-frame synthetic clips."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gmos_core.propagator import PropagatorConfig, run_two_stage

from .helpers import load_tiny_predictor

H, W, T = 32, 48, 3


@pytest.fixture(scope="module")
def predictor(fixtures_dir):
    torch.set_num_threads(2)
    return load_tiny_predictor(fixtures_dir, image_size=64)


@pytest.fixture(scope="module")
def features(predictor):
    from gmos_core.propagator import encode_video_features

    rng = np.random.default_rng(1)
    return encode_video_features(predictor, [rng.integers(0, 255, (H, W, 3)).astype(np.uint8) for _ in range(T)])


def _labels(*boxes_per_frame):
    """seq_annos with label k+1 painted in box k (None = label absent) per frame."""
    annos = np.zeros((T, H, W), np.uint8)
    for t, boxes in enumerate(boxes_per_frame):
        for k, box in enumerate(boxes):
            if box is not None:
                y, x = box
                annos[t, y:y + 8, x:x + 8] = k + 1
    return annos


def _scores(entries):
    """(T, 20, 1) arrays from {(t, label): value}."""
    arr = np.zeros((T, 20, 1), np.float32)
    for (t, label), v in entries.items():
        arr[t, label - 1, 0] = v
    return arr


def test_start_frame_without_seedable_label_falls_back(predictor, features):
    # Frame 0 has only label 1 (N_0 = 1) but only label 3's scores qualify there → official seeding adds no
    # prompt and SAM 2 raises "No input points or masks". Label 1 qualifies on frame 2.
    annos = _labels([(2, 2)], [(2, 2)], [(2, 2), (20, 30), (2, 30)])
    motions = _scores({(0, 3): 0.9, (2, 1): 0.9})
    ious = _scores({(0, 3): 0.9, (2, 1): 0.9})
    r = run_two_stage(predictor, features, annos, motions, ious, progress=False)
    assert r.stage1_start_frame == 2
    assert any("no seedable label" in n for n in r.notes)
    assert r.stage1.present[2, 0] and not r.stage1.present[:, 1:].any()
    assert r.mos_i.shape == r.mos.shape == (T, H, W) and r.mos_i.dtype == np.uint8


def test_nothing_seedable_anywhere_gives_empty_outputs(predictor, features):
    annos = _labels([(2, 2)], [(2, 2)], [(2, 2)])
    motions = _scores({(0, 3): 0.9})
    ious = _scores({(0, 3): 0.9})
    r = run_two_stage(predictor, features, annos, motions, ious, progress=False)
    assert r.stage1 is None and r.mos_i.max() == 0 and r.mos.max() == 0
    assert any("absent" in n for n in r.notes)


def test_no_moving_objects(predictor, features):
    annos = _labels([(2, 2)], [(2, 2)], [(2, 2)])
    motions = _scores({(t, 1): 0.2 for t in range(T)})
    ious = _scores({(t, 1): 0.9 for t in range(T)})
    r = run_two_stage(predictor, features, annos, motions, ious, progress=False)
    assert r.stage1_start_frame is None and r.mos_i.max() == 0 and r.mos.max() == 0


def test_seeding_is_capped_at_max_objects(predictor, features):
    # Three confident moving labels on the start frame but max_objects = 2 (officially: 12 labels vs 10
    # result columns → IndexError).
    boxes = [(2, 2), (2, 20), (20, 2)]
    annos = _labels(boxes, boxes, boxes)
    scores = _scores({(t, k): 0.9 for t in range(T) for k in (1, 2, 3)})
    cfg = PropagatorConfig(max_objects=2)
    r = run_two_stage(predictor, features, annos, scores, scores, config=cfg, progress=False)
    assert any("capped" in n for n in r.notes)
    assert r.stage1.present.shape == (T, 2)
    assert r.stage1.present[0].all()
    assert r.mos_i.max() <= 2 and r.mos.max() <= 2


@pytest.mark.parametrize("skip_empty", [False, True])
def test_empty_seed_mask(predictor, features, skip_empty):
    # Label 1 is absent on frame 0 (a label gap) but its scores qualify: officially an empty mask prompt.
    annos = _labels([None, (2, 20)], [(2, 2), (2, 20)], [(2, 2), (2, 20)])
    scores = _scores({(t, k): 0.9 for t in range(T) for k in (1, 2)})
    cfg = PropagatorConfig(skip_empty_prompts=skip_empty)
    r = run_two_stage(predictor, features, annos, scores, scores, config=cfg, progress=False)
    assert r.stage1_start_frame == 0
    seeded = r.stage1.present[0]
    if skip_empty:
        assert seeded[0] and not seeded[1]  # only label 2 was seeded (as object 0)
    else:
        assert seeded[0] and seeded[1]  # official: object 0 from the empty mask, object 1 from label 2
        assert (r.stage1.full_indexed[0] == 1).sum() == 0  # the empty prompt's mask on its frame


def test_bad_inputs_are_named(predictor, features):
    annos = _labels([(2, 2)], [(2, 2)], [(2, 2)])
    s = _scores({})
    with pytest.raises(ValueError, match="one backbone_out per frame"):
        run_two_stage(predictor, features[:2], annos, s, s, progress=False)
    with pytest.raises(ValueError, match="video_hw"):
        run_two_stage(predictor, features, annos, s, s, video_hw=(10, 10), progress=False)
    with pytest.raises(ValueError, match=r"pred_motions / pred_ious must be \(T=3"):
        run_two_stage(predictor, features, annos, s[:2], s[:2], progress=False)
