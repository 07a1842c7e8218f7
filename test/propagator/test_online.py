"""The streaming propagator with the fixture's tiny random SAM 2 at a small image size (cheap, same weights).

Random weights make SAM 2's own masks arbitrary, so the tests build proposals that make each rule fire from
what the tracker itself produced in a first run (SAM 2 is deterministic): a proposal equal to a track's mask
must re-inforce it (Case 1), a confident moving proposal on pixels no track covers must start a track (Case 2).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gmos_core.propagator import PropagatorConfig
from gmos_core.propagator.online import FrameProposals, OnlinePropagator

from .helpers import load_tiny_predictor

H, W = 48, 64
SMALL = 64  # SAM 2 image size for these tests (tracking cost scales with it; the weights are size-agnostic)


@pytest.fixture(scope="module")
def predictor(fixtures_dir):
    torch.set_num_threads(2)
    return load_tiny_predictor(fixtures_dir, image_size=SMALL)


def _square(y, x, size=16):
    m = np.zeros((H, W), bool)
    m[y:y + size, x:x + size] = True
    return m


@pytest.fixture(scope="module")
def video(predictor):
    """8 frames: a red square moving right (moving proposal from frame 2 on), a static green square."""
    from gmos_core.propagator import encode_video_features

    rng = np.random.default_rng(0)
    frames, proposals = [], []
    for t in range(8):
        img = rng.integers(0, 50, (H, W, 3)).astype(np.uint8)
        a, b = _square(4, 2 + 3 * t), _square(28, 40)
        img[a], img[b] = (230, 30, 30), (30, 200, 30)
        frames.append(img)
        if t < 2:  # only the static square is proposed: nothing to seed yet
            proposals.append(FrameProposals(b[None], np.array([0.1]), np.array([0.9])))
        else:
            proposals.append(FrameProposals(np.stack([a, b]), np.array([0.9, 0.1]), np.array([0.9, 0.9])))
    return encode_video_features(predictor, frames), proposals


def _run(predictor, features, proposals, **kwargs):
    prop = OnlinePropagator(predictor, PropagatorConfig(), (H, W), keep_logits=True, **kwargs)
    return prop, [prop.step(t, features[t], p) for t, p in enumerate(proposals)]


def _moving_rule(mask, union):
    area = mask.sum()
    return area > 0 and (mask & union).sum() / (area + 1e-6) > 0.5


@pytest.fixture(scope="module")
def plain_run(predictor, video):
    return _run(predictor, *video)


def test_seeding_ids_and_motion_states(plain_run, video):
    _, outs = plain_run
    _, proposals = video
    assert outs[0].track_ids == [] and outs[1].track_ids == []  # no confident moving proposal yet
    assert outs[0].label_map().max() == 0
    seed = outs[2]
    assert seed.track_ids == [0] and seed.new_track_ids == [0]
    assert seed.object_ious[0] == pytest.approx(1.0)  # a mask prompt is its own output
    inter = (seed.masks[0] & proposals[2].masks[0]).sum()
    assert inter / (seed.masks[0] | proposals[2].masks[0]).sum() > 0.6  # low-res (16x16) round trip
    for t, out in enumerate(outs[2:], start=2):
        assert out.track_ids[:1] == [0]  # ids are stable
        assert out.masks.shape == (len(out.track_ids), H, W)
        assert out.masks.sum(0).max() <= 1  # exclusive
        union = proposals[t].masks[0]  # the only moving proposal
        for i in range(len(out.track_ids)):
            assert bool(out.moving[i]) == _moving_rule(out.masks[i], union), f"frame {t} track {i}"
        labels = out.label_map(moving_only=True)
        assert set(np.unique(labels)) <= {0} | {tid + 1 for i, tid in enumerate(out.track_ids) if out.moving[i]}
    assert outs[2].moving[0]


def test_case1_reinforce_and_case2_new_track(predictor, video, plain_run):
    features, proposals = video
    _, outs = plain_run
    k = 7  # 5 frames after the seed prompt at frame 2: Case 1 is allowed again
    own = outs[k].logits[0] > 0  # what track 0 is on frame k (identical in a rerun up to frame k)
    assert own.any(), "track 0 is empty on frame k: nothing to re-inforce"
    # The new proposal: the 49 pixels the tracks cover least (lowest max-over-tracks probability), so that its
    # precision against every tracked (soft) mask is below min_precision_thres whatever the random tracker does.
    prob = 1 / (1 + np.exp(-outs[k].logits.astype(np.float64)))
    new = np.zeros(H * W, bool)
    new[np.argsort(prob.max(0).ravel(), kind="stable")[:49]] = True
    new = new.reshape(H, W) & ~own
    precision = (prob * new).sum((1, 2)) / new.sum()
    assert precision.max() < PropagatorConfig().min_precision_thres, precision  # Case 2 applies to it
    edited = list(proposals)
    edited[k] = FrameProposals(np.stack([own, new]), np.array([0.9, 0.9]), np.array([0.9, 0.9]))
    prop, outs2 = _run(predictor, features, edited)
    for t in range(k):  # identical history
        np.testing.assert_array_equal(outs2[t].logits, outs[t].logits)
    assert outs2[k].reinforced_track_ids == [0]
    assert outs2[k].new_track_ids == [1]
    assert outs2[k].track_ids == [0, 1]
    assert outs2[k].object_ious == pytest.approx([1.0, 1.0])  # both prompted on this frame
    # SAM 2 stored the correction as a non-conditioning output and the new track as a conditioning one.
    s = prop.state
    assert k in s["output_dict_per_obj"][0]["non_cond_frame_outputs"]
    assert k in s["output_dict_per_obj"][1]["cond_frame_outputs"]


def test_pruning_does_not_change_results(predictor, video):
    """Pruned and unpruned runs agree over more frames than SAM 2's memory and pointer windows."""
    features, proposals = video
    n = 24  # > max_obj_ptrs_in_encoder (16) and num_maskmem (7)
    feats = [features[t % len(features)] for t in range(n)]
    props = [proposals[min(t, 2)] if t < 3 else FrameProposals.empty(H, W) for t in range(n)]
    pruned, a = _run(predictor, feats, props)
    full, b = _run(predictor, feats, props, prune=False)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.logits, y.logits)
        np.testing.assert_array_equal(x.object_ious, y.object_ious)
    assert pruned.retained_state_size()["non_cond_outputs"] < full.retained_state_size()["non_cond_outputs"]
    assert full.retained_state_size()["cached_features"] == n and pruned.retained_state_size()["cached_features"] == 1


def test_memory_stays_flat_on_a_long_stream(predictor, video):
    """Hundreds of steps (features reused) with repeated Case-1 prompts stored as conditioning frames:
    every count of retained state reaches its cap and stays there."""
    features, proposals = video
    predictor.add_all_frames_to_correct_as_cond = True  # every re-inforcement adds a conditioning frame
    try:
        cfg = PropagatorConfig(max_objects=2, max_cond_frames_in_attn=3, max_kept_cond_frames=3)
        prop = OnlinePropagator(predictor, cfg, (H, W), keep_logits=True)
        sizes, reinforced = [], 0
        prev = None
        for t in range(100):
            if prev is None:
                p = proposals[2]
            else:  # feed back track 0's mask (a static scene: it re-finds itself → Case 1 every 5 frames)
                p = FrameProposals(prev[None], np.array([0.9]), np.array([0.9]))
            out = prop.step(t, features[2], p)
            reinforced += len(out.reinforced_track_ids)
            prev = out.logits[0] > 0 if out.track_ids else None
            sizes.append(prop.retained_state_size())
    finally:
        predictor.add_all_frames_to_correct_as_cond = False
    assert reinforced >= 10, f"only {reinforced} re-inforcements: the stream did not exercise the caps"
    late = sizes[40:]
    for s in late:
        n_obj = s["objects"]
        assert 1 <= n_obj <= 2  # max_objects
        assert s["cached_features"] == 1
        assert s["cond_outputs"] <= 3 * n_obj and s["mask_inputs"] <= s["cond_outputs"]
        assert s["non_cond_outputs"] <= 16 * n_obj and s["non_cond_full_outputs"] <= 8 * n_obj
        assert s["frames_tracked"] <= n_obj and s["temp_outputs"] == 0
    assert any(s["cond_outputs"] == 3 * s["objects"] for s in late)  # the cap was reached, not avoided
    first, second = late[:30], late[30:]
    for key in late[0]:  # no growth between the two halves of the late window
        assert max(s[key] for s in second) <= max(s[key] for s in first), key


def test_step_validation_and_reset(predictor, video):
    features, proposals = video
    prop = OnlinePropagator(predictor, PropagatorConfig(), (H, W))
    prop.step(0, features[0], proposals[0])
    with pytest.raises(ValueError, match="consecutive"):
        prop.step(2, features[2], proposals[2])
    with pytest.raises(ValueError, match=r"proposal masks must be \(N, 48, 64\)"):
        prop.step(1, features[1], FrameProposals(np.zeros((1, 10, 10), bool), np.ones(1), np.ones(1)))
    with pytest.raises(ValueError, match="one value per mask"):
        prop.step(1, features[1], FrameProposals(np.zeros((2, H, W), bool), np.ones(1), np.ones(2)))
    prop.step(1, features[2], proposals[2])
    assert prop.track_ids == [0]
    prop.reset()
    assert prop.track_ids == [] and prop.retained_state_size()["cached_features"] == 0
    prop.step(5, features[3], proposals[3])  # after reset any start index is accepted
    assert prop.track_ids == [0]
    with pytest.raises(ValueError, match="video_hw"):
        OnlinePropagator(predictor, PropagatorConfig(), (0, 64))


def test_frame_proposals_from_label_map_matches_offline_inputs():
    from gmos_core.propagator import build_propagator_inputs

    labels = np.zeros((1, 6, 8), np.uint8)
    labels[0, 1:3, 1:3] = 1
    labels[0, 4:6, 5:8] = 3  # label 2 absent: an empty mask, as offline
    motions = np.zeros((1, 20, 1), np.float32)
    ious = np.zeros((1, 20, 1), np.float32)
    motions[0, :3, 0] = [0.9, 0.8, 0.2]
    ious[0, :3, 0] = [0.8, 0.9, 0.95]
    p = FrameProposals.from_label_map(labels[0], motions[0], ious[0])
    ref = build_propagator_inputs(labels, motions, ious)
    np.testing.assert_array_equal(p.masks, ref.all_pred_masks[0])
    np.testing.assert_array_equal(p.moving_union, ref.all_pred_motion_masks[0] > 0)
    np.testing.assert_allclose(p.motions, motions[0, :3, 0])
    with pytest.raises(ValueError, match="one motion and one iou per label"):
        FrameProposals.from_label_map(labels[0], motions[0, :2], ious[0, :2])


def test_lost_tracks_are_removed_and_ids_not_reused(predictor, video):
    features, _ = video
    labels = np.zeros((H, W), np.uint8)
    labels[28:44, 40:56] = 2  # label 1 is absent (a label gap) but its scores qualify: an empty seed mask
    seed = FrameProposals.from_label_map(labels, np.array([0.9, 0.9]), np.array([0.9, 0.9]))
    cfg = PropagatorConfig(max_absent_frames=1)
    prop = OnlinePropagator(predictor, cfg, (H, W))
    out = prop.step(0, features[0], seed)
    assert out.track_ids == [0, 1] and out.new_track_ids == [0, 1]
    assert not out.masks[0].any() and out.masks[1].any()
    assert out.removed_track_ids == [0]
    assert prop.track_ids == [1] and prop.retained_state_size()["objects"] == 1
    nxt = prop.step(1, features[1], FrameProposals.empty(H, W))
    assert 0 not in nxt.track_ids and nxt.track_ids[:1] == [1]
    # Without the option (official behaviour) the empty track stays.
    keep = OnlinePropagator(predictor, PropagatorConfig(), (H, W))
    assert keep.step(0, features[0], seed).removed_track_ids == [] and keep.track_ids == [0, 1]


def test_online_equals_stage1_when_the_start_frame_is_0(fixtures_dir, monkeypatch):
    """Without the official start-frame look-ahead (the fixture's proposals with label 1 made confident on
    frame 0, so the official start frame is 0), gmos_online run over the whole clip reproduces our stage 1
    (which test_two_stage_fixture checks against the official code) exactly: same tracks created on the same
    frames, bit-identical per-object logits, label maps, moving flags and object IoUs. SAM 2 at image size 256
    (cheap; the fixture's weights are size-agnostic). The clip length is given to the online mode, as the
    official code knows it (see test_online_mode_matches_official_stage1); with the default (unknown length)
    only float noise in the object-pointer time encoding differs, bounded below."""
    from safetensors.numpy import load_file

    import gmos_core.propagator.online as online
    from gmos_core.propagator import encode_video_features, run_two_stage

    from .helpers import TINY, TraceRecorder

    x = load_file(str(fixtures_dir / TINY / "propagator_tiny.safetensors"))
    annos, motions, ious = x["inputs/seq_annos"], x["inputs/pred_motions"], x["inputs/pred_ious"].copy()
    T, h, w = annos.shape
    ious[0, 0, 0] = 1.0  # label 1 on frame 0: confident (it is moving in the fixture)
    assert annos[0].max() >= 1 and motions[0, 0, 0] > 0.5
    predictor = load_tiny_predictor(fixtures_dir, image_size=256)
    features = encode_video_features(predictor, x["frames"])
    recorder = TraceRecorder(predictor)
    offline = run_two_stage(predictor, features, annos, motions, ious, progress=False)
    assert offline.stage1_start_frame == 0
    stage1_logits = {e["frame"]: recorder.tensors[i]["logits"][:, 0].numpy()
                     for i, e in enumerate(recorder.events) if e["stage"] == 1 and e["call"] == "yield"}
    created = [(e["frame"], e["obj_id"]) for e in recorder.events
               if e["stage"] == 1 and e["call"] == "add_new_mask" and e["new_object"]]
    assert len(created) >= 3, "the clip must create tracks after the first frame (Case 2)"

    def run_online():
        prop = OnlinePropagator(load_tiny_predictor(fixtures_dir, image_size=256), PropagatorConfig(), (h, w),
                                keep_logits=True)
        return [prop.step(t, features[t], FrameProposals.from_label_map(annos[t], motions[t], ious[t]))
                for t in range(T)]

    default = run_online()
    monkeypatch.setattr(online, "_UNBOUNDED_NUM_FRAMES", T)
    outs = run_online()
    s1 = offline.stage1
    assert [(o.frame_index, tid) for o in outs for tid in o.new_track_ids] == created
    for t, out in enumerate(outs):
        assert out.track_ids == np.flatnonzero(s1.present[t]).tolist()
        np.testing.assert_array_equal(out.label_map(moving_only=False), s1.full_indexed[t])
        np.testing.assert_array_equal(out.label_map(moving_only=True), s1.mov_indexed[t])
        np.testing.assert_array_equal(out.moving, s1.motions[t, out.track_ids] > PropagatorConfig().motion_iou_thres)
        np.testing.assert_array_equal(out.object_ious, s1.object_ious[t, out.track_ids])
        if not out.new_track_ids:  # on prompt frames stage 1 records the prompt's consolidated output
            np.testing.assert_array_equal(out.logits, stage1_logits[t])
        # Unknown stream length: the same tracks, logits within float noise (measured below 1e-4).
        assert default[t].track_ids == out.track_ids
        np.testing.assert_allclose(default[t].logits, out.logits, atol=1e-3, rtol=0)
    assert any(o.moving.any() for o in outs) and any(not o.moving.all() for o in outs if o.track_ids)
