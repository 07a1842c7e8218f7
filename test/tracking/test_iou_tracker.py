"""IoU tracker on crafted masks: exact ids, births, deaths, states (no model involved)."""
from __future__ import annotations

import numpy as np
import pytest

from gmos_core.engine.result import MotionState
from gmos_core.tracking import (InstanceProposals, IouTracker, IouTrackerConfig, IouTrackerConfigError,
                                proposals_from_foreground, proposals_from_label_frame)

H, W = 32, 80


def square(top, left, size=8, shape=(H, W)):
    mask = np.zeros(shape, bool)
    mask[max(0, top):max(0, top + size), max(0, left):max(0, left + size)] = True
    return mask


def frame(masks, motions=None, ious=None):
    masks = np.asarray(masks, bool).reshape(-1, H, W)
    n = len(masks)
    return InstanceProposals(masks, np.full(n, 0.9) if motions is None else motions,
                             np.full(n, 0.8) if ious is None else ious)


def crossing_frames(num_frames=18, speed=4):
    """A (rows 10-18) moves right, B (rows 14-22) moves left, B in front: they overlap mid-sequence."""
    out = []
    for t in range(num_frames):
        a, b = square(10, 2 + speed * t), square(14, W - 10 - speed * t)
        out.append((a & ~b, b))
    return out


def test_two_crossing_objects_keep_their_ids():
    tracker = IouTracker()
    overlapped = 0
    for t, (a, b) in enumerate(crossing_frames()):
        out = tracker.step(frame([a, b]))
        # every visible pixel of A carries A's id (track 0 -> 1), B's pixels B's id, nothing else is labelled
        assert np.all(out.labels[a] == 1) and np.all(out.labels[b] == 2), t
        assert np.count_nonzero(out.labels) == a.sum() + b.sum()
        assert out.labels.dtype == np.uint16
        overlapped += square(10, 2 + 4 * t)[14:18].any() and (a.sum() < 64)
    assert overlapped >= 2  # the sequence really occludes A behind B for a few frames
    assert tracker.track_ids == [0, 1]


def test_velocity_prediction_is_what_keeps_fast_objects():
    """An 8-px square accelerating to 7 px/frame overlaps its previous mask by 1 column (IoU 1/15 < match_iou
    0.1): without the constant-velocity prediction each such frame starts a new track. (Re-identification is
    off here: it would give the lost track back its id a frame later, and this test is about the IoU step.)"""
    lefts = np.cumsum([2, 3, 3, 5, 7, 7, 7, 7])
    frames = [square(12, int(x)) for x in lefts]
    with_prediction = IouTracker(IouTrackerConfig(reid_distance=0.0))
    without = IouTracker(IouTrackerConfig(predict_motion=False, reid_distance=0.0))
    ids_with = [sorted(with_prediction.step(frame([m])).info) for m in frames]
    ids_without = [sorted(without.step(frame([m])).info) for m in frames]
    assert ids_with == [[1]] * 8
    # shifts 3, 3, 5 still overlap enough (IoU 5/11, 5/11, 3/13); every 7-px shift is a new track
    assert ids_without == [[1]] * 4 + [[2], [3], [4], [5]]


def test_object_returning_within_max_missed_keeps_its_id_and_later_one_is_new():
    config = IouTrackerConfig(max_missed_frames=3, predict_motion=False)
    tracker = IouTracker(config)
    other = square(20, 60)
    timeline = []
    for t in range(14):
        visible = not (3 <= t < 6 or 7 <= t < 11)  # absent 3 frames (returns), later 4 frames (> 3: dies)
        masks = [square(4, 10)] if visible else []
        out = tracker.step(frame(masks + [other]))
        timeline.append(sorted(k for k in out.info if k != 2))
        if t == 10:
            assert out.removed_track_ids == [0]  # 4th consecutive missed frame
    assert timeline == [[1]] * 3 + [[]] * 3 + [[1]] + [[]] * 4 + [[3]] * 3
    assert tracker.track_ids == [1, 2]


def test_reidentification_after_a_stop_keeps_the_id():
    """A moving object vanishes (it stopped: GMOS-S shows only what moves) for 10 frames, then moves again 12 px
    away from where it was last seen (no overlap with its last mask, nor with the mask shifted by its old
    velocity): re-identification gives it its id back. Without it (reid_distance 0) it is a new track; so is
    a proposal farther than reid_distance diameters, or one whose area differs by more than reid_area_ratio."""
    def run(config, reappear):
        tracker = IouTracker(config)
        ids = []
        for t in range(4):
            ids.append(sorted(tracker.step(frame([square(4, 10 + 2 * t)])).info))
        for _ in range(10):
            tracker.step(frame([]))
        ids.append(sorted(tracker.step(frame([reappear])).info))
        return ids

    config = IouTrackerConfig(reid_distance=2.0, reid_area_ratio=3.0, reid_max_shift=1.0, max_missed_frames=40)
    # last seen at column 16 (8 px wide, equivalent diameter 8): back at column 4, 12 px = 1.5 diameters away
    # (on the side opposite its old velocity, so the shifted mask is farther still: no IoU match)
    assert run(config, square(4, 4)) == [[1]] * 5
    assert run(IouTrackerConfig(reid_distance=0.0, max_missed_frames=40), square(4, 4)) == [[1]] * 4 + [[2]]
    assert run(config, square(20, 60)) == [[1]] * 4 + [[2]]  # 6 diameters away
    big = np.zeros((H, W), bool)
    big[2:18, 0:16] = True  # 4x the area, centroid 0.8 diameters (of the larger) away
    assert run(config, big) == [[1]] * 4 + [[2]]
    assert run(IouTrackerConfig(reid_distance=2.0, reid_area_ratio=5.0, reid_max_shift=1.0, max_missed_frames=40),
               big) == [[1]] * 5
    # the shift cap: 12 px is 0.375 of the 32-px short side, above a cap of 0.35 (and below 0.4)
    assert run(IouTrackerConfig(reid_distance=2.0, reid_max_shift=0.35, max_missed_frames=40),
               square(4, 4)) == [[1]] * 4 + [[2]]
    assert run(IouTrackerConfig(reid_distance=2.0, reid_max_shift=0.4, max_missed_frames=40),
               square(4, 4)) == [[1]] * 5
    # a track that died (more than max_missed_frames unseen) is not re-identified
    assert run(IouTrackerConfig(reid_distance=2.0, reid_max_shift=1.0, max_missed_frames=5), square(4, 4)) \
        == [[1]] * 4 + [[2]]
    for bad in ({"reid_distance": -1.0}, {"reid_area_ratio": 0.5}, {"reid_distance": float("inf")},
                {"reid_max_shift": -0.1}):
        with pytest.raises(IouTrackerConfigError, match=next(iter(bad))):
            IouTrackerConfig(**bad)


def test_reidentification_compares_with_the_objects_recent_size_not_its_last_fragment():
    """An object that stops fades out of a GMOS-S mask over a few frames: its last mask is a fragment (here a
    quarter of it). When it moves again at full size, the area ratio to that fragment (4) is above
    reid_area_ratio (3), but not the ratio to its recent full size, so it keeps its id."""
    tracker = IouTracker(IouTrackerConfig(reid_distance=2.0, reid_area_ratio=3.0, reid_max_shift=1.0,
                                          max_missed_frames=40))
    full = square(8, 20, size=12)
    fragment = np.zeros((H, W), bool)
    fragment[8:14, 20:26] = True  # 36 px of the 144
    ids = [sorted(tracker.step(frame([full])).info) for _ in range(3)]
    ids.append(sorted(tracker.step(frame([fragment])).info))
    for _ in range(6):
        tracker.step(frame([]))
    ids.append(sorted(tracker.step(frame([square(8, 34, size=12)])).info))  # 14 px right: no overlap
    assert ids == [[1]] * 5
    assert tracker.track_ids == [0]


def test_confirmation_hides_flickering_fragments_and_delays_new_tracks():
    """confirm_frames=3: an object seen on 3 frames in a row shows from its 3rd frame (reported new then); a
    fragment seen on 2 frames, then gone, then back, never shows; with the default (1) both show at once."""
    obj, frag = square(4, 10), square(20, 60)
    frag_on = {0, 1, 3, 4, 6}  # never 3 frames in a row
    tracker, eager = IouTracker(IouTrackerConfig(confirm_frames=3)), IouTracker()
    shown, new, shown_eager = [], [], []
    for t in range(8):
        masks = [obj] + ([frag] if t in frag_on else [])
        out = tracker.step(frame(masks))
        shown.append(sorted(out.info))
        new.append(out.new_track_ids)
        assert out.removed_track_ids == []  # unconfirmed tracks leave silently
        shown_eager.append(len(eager.step(frame(masks)).info))
    assert shown == [[], [], [1]] + [[1]] * 5
    assert new == [[], [], [0]] + [[]] * 5
    assert np.all(tracker.step(frame([obj])).labels[obj] == 1)
    assert shown_eager == [1 + (t in frag_on) for t in range(8)]
    with pytest.raises(IouTrackerConfigError, match="confirm_frames"):
        IouTrackerConfig(confirm_frames=0)


def test_hysteresis_of_the_motion_state():
    config = IouTrackerConfig(motion_smoothing=1.0, moving_on=0.5, moving_off=0.3)
    tracker = IouTracker(config)
    mask = square(8, 30)
    motions = [0.9, 0.4, 0.45, 0.25, 0.45, 0.5, 0.6, 0.35, 0.2]
    expected = ["M", "M", "M", "S", "S", "S", "M", "M", "S"]  # on: > 0.5, off: < 0.3
    states, moving_pixels = [], []
    for m in motions:
        out = tracker.step(frame([mask], motions=[m]))
        info = out.info[1]
        states.append({MotionState.MOVING: "M", MotionState.STATIC: "S"}[info["state"]])
        assert info["motion_prob"] == pytest.approx(m)
        assert info["predicted_iou"] == pytest.approx(0.8)
        moving_pixels.append(int(out.moving.sum()))
    assert states == expected
    assert moving_pixels == [64 if s == "M" else 0 for s in expected]
    assert np.all(out.labels[mask] == 1)  # a static object is still labelled (MOS-I drops it via `moving`)


def test_smoothing_delays_a_state_change():
    tracker = IouTracker(IouTrackerConfig(motion_smoothing=0.5))
    mask = square(8, 30)
    # without smoothing the second frame (0.1 < moving_off 0.3) would already be static
    probs = [tracker.step(frame([mask], motions=[m])).info[1] for m in (0.9, 0.1, 0.2, 0.1)]
    assert [p["motion_prob"] for p in probs] == pytest.approx([0.9, 0.5, 0.35, 0.225])
    assert [p["state"] for p in probs] == [MotionState.MOVING] * 3 + [MotionState.STATIC]


def test_only_moving_proposals_start_tracks_and_small_ones_are_ignored():
    tracker = IouTracker(IouTrackerConfig(min_area_fraction=10 / (H * W)))
    static, tiny = square(2, 2), square(20, 40, size=3)  # tiny: 9 px < 10
    out = tracker.step(frame([static, tiny], motions=[0.2, 0.99]))
    assert not out.labels.any() and out.info == {} and tracker.track_ids == []
    out = tracker.step(frame([static], motions=[0.7]))
    assert sorted(out.info) == [1]


def test_memory_is_bounded_and_ids_wrap():
    rng = np.random.default_rng(0)
    tracker = IouTracker(IouTrackerConfig(max_tracks=5, max_missed_frames=2))
    sizes = []
    for t in range(300):  # random objects popping up everywhere: many births and deaths
        masks = [square(int(rng.integers(0, H - 8)), int(rng.integers(0, W - 8))) for _ in range(rng.integers(0, 4))]
        tracker.step(frame(masks) if masks else InstanceProposals.empty(H, W))
        sizes.append(tracker.retained_state_size()["tracks"])
    assert max(sizes) == 5 and tracker._next_id > 100
    # ids wrap before 65535 (uint16 labels) and never collide with a live track
    tracker = IouTracker(IouTrackerConfig(reid_distance=0.0))  # each square a new object, not a re-appearance
    tracker._next_id = 65533
    ids = [sorted(tracker.step(frame([square(0, 16 * i)])).info)[0] - 1 for i in range(4)]
    assert ids == [65533, 65534, 0, 1]


def test_proposal_sources():
    labels = np.zeros((H, W), np.uint8)
    labels[2:6, 2:6] = 1
    labels[10:20, 10:20] = 2
    props = proposals_from_label_frame(labels, np.array([0.9, 0.1, 0, 0]), np.array([0.5, 0.6, 0, 0]))
    assert props.masks.shape == (2, H, W) and props.masks[1].sum() == 100
    np.testing.assert_allclose(props.motions, [0.9, 0.1])

    prob = np.zeros((H, W), np.float32)
    prob[2:6, 2:6] = 0.8        # 16 px
    prob[10:20, 30:40] = 0.6    # 100 px, largest first
    prob[10:20, 35] = 1.0       # inside it: its mean rises
    prob[30, 70] = 0.9          # 1 px of noise
    props = proposals_from_foreground(prob, predicted_iou=0.7, min_area_pixels=4)
    assert [int(m.sum()) for m in props.masks] == [100, 16]
    np.testing.assert_allclose(props.motions, [(90 * 0.6 + 10 * 1.0) / 100, 0.8], rtol=1e-6)
    np.testing.assert_allclose(props.ious, [0.7, 0.7])
    assert proposals_from_foreground(np.zeros((H, W))).masks.shape == (0, H, W)


def test_bad_config_is_refused_with_the_field_name():
    with pytest.raises(IouTrackerConfigError, match="moving_off"):
        IouTrackerConfig(moving_on=0.4, moving_off=0.6)
    with pytest.raises(IouTrackerConfigError, match="max_missed_frames"):
        IouTrackerConfig(max_missed_frames=-1)
    with pytest.raises(ValueError, match="one motion and one iou"):
        InstanceProposals(np.zeros((2, 4, 4), bool), [0.5], [0.5, 0.5])
    for bad in ({"split_cover": 1.5}, {"split_cover": True}, {"split_min_age": 0}, {"split_max_missed": -1}):
        with pytest.raises(IouTrackerConfigError, match=next(iter(bad))):
            IouTrackerConfig(**bad)


def test_split_merged_proposal_keeps_both_objects():
    """Two squares 4 px apart, tracked apart for 4 frames; on frames 4-6 the foreground also fills the gap, so
    they are one component (as a blurred GMOS-S map gives two close objects). Off (the default): the component
    takes one id and the other object is unlabelled while they touch. On: each keeps its id and its pixels,
    the gap is shared between them (each pixel to the nearer)."""
    def frames():
        out = []
        a, b = square(12, 20), square(12, 32)
        bridge = np.zeros((H, W), bool)
        bridge[12:20, 28:32] = True
        for t in range(9):
            out.append((a, b, [a | b | bridge] if 4 <= t <= 6 else [a, b]))
        return out

    def run(config):
        tracker, labels = IouTracker(config), []
        for a, b, proposals in frames():
            labels.append(tracker.step(frame(proposals)).labels)
        return labels

    for t, (lab, (a, b, _)) in enumerate(zip(run(IouTrackerConfig(split_cover=0.5, split_min_age=3)), frames())):
        assert np.all(lab[a] == 1) and np.all(lab[b] == 2), t
        if 4 <= t <= 6:
            assert np.all(lab[12:20, 28:30] == 1) and np.all(lab[12:20, 30:32] == 2), t
    merged = run(IouTrackerConfig())
    for t in (4, 5, 6):
        assert set(np.unique(merged[t])) == {0, 1}  # one id over both squares
    # the split needs established tracks: with split_min_age above the frames seen apart, no split
    late = run(IouTrackerConfig(split_cover=0.5, split_min_age=6))
    assert set(np.unique(late[4])) == {0, 1}
