"""The procedural generator: determinism, geometry (parallax), motion labels, and the on-disk layout."""
from __future__ import annotations

import numpy as np
import pytest

from training import synthetic as syn

# Textures only from the bundled clip, so results do not depend on which extra videos a machine has.
BUNDLED = [syn._BUNDLED_CLIP]


def _cfg(**kw) -> syn.SyntheticConfig:
    base = dict(width=160, height=96, num_frames=24, fps=24.0, texture_videos=BUNDLED)
    base.update(kw)
    return syn.SyntheticConfig(**base)


def test_same_seed_same_pixels_and_labels():
    a = syn.render_sequence(syn.sample_scene(7, _cfg()))
    b = syn.render_sequence(syn.sample_scene(7, _cfg()))
    c = syn.render_sequence(syn.sample_scene(8, _cfg()))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_rendering_a_subset_equals_the_full_sequence():
    scene = syn.sample_scene(3, _cfg())
    frames, labels = syn.render_sequence(scene)
    sub_f, sub_l = syn.render_sequence(scene, [5, 0, 17])
    assert np.array_equal(sub_f, frames[[5, 0, 17]]) and np.array_equal(sub_l, labels[[5, 0, 17]])


def test_forced_kinds_and_labels():
    cfg = _cfg(min_moving_objects=2, max_moving_objects=2)
    static = syn.sample_scene(1, cfg, kind="static_scene")
    assert static.time_annotation() == {}
    assert not any(layer.label for layer in static.layers)
    assert static.translations.std() > 0  # the camera moves in a static scene
    cam = syn.sample_scene(1, cfg, kind="static_camera")
    assert np.allclose(cam.translations, 0) and np.allclose(cam.rotations, np.eye(3))
    normal = syn.sample_scene(1, cfg, kind="normal")
    labels = syn.render_sequence(normal)[1]
    assert set(np.unique(labels)) <= {0, 1, 2} and labels.max() >= 1  # ids contiguous from 1, visible
    with pytest.raises(ValueError, match="clip kind"):
        syn.sample_scene(1, cfg, kind="bogus")


def test_motion_label_is_a_pose_change():
    """moving[t] <=> the object's world placement changed between t-1 and t (t >= 1)."""
    cfg = _cfg(num_frames=48, min_moving_objects=3, max_moving_objects=3, p_stop_and_go=1.0)
    scene = syn.sample_scene(11, cfg, kind="static_camera")
    stopped_somewhere = False
    for layer in scene.layers:
        if layer.label == 0:
            if layer.kind in ("static", "occluder"):
                assert np.allclose(np.diff(layer.placement, axis=0), 0)
            continue
        changed = np.abs(np.diff(layer.placement, axis=0)).max(axis=(1, 2)) > 0
        assert np.array_equal(changed, layer.moving[1:])
        stopped_somewhere |= not layer.moving.all()
    assert stopped_somewhere  # stop-and-go schedules exist
    anno = scene.time_annotation()
    moving = scene.moving_matrix()
    for key, ranges in anno.items():
        flags = np.zeros(scene.num_frames, bool)
        for s, e in ranges:
            flags[s:e + 1] = True
        assert np.array_equal(flags, moving[:, int(key) - 1])


def test_minimum_segment_length():
    cfg = _cfg(num_frames=96, p_stop_and_go=1.0, min_moving_objects=3, max_moving_objects=3)
    min_len = round(cfg.min_segment_s * cfg.fps)
    for seed in range(5):
        for layer in syn.sample_scene(seed, cfg, kind="normal").layers:
            if layer.label:
                runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, layer.moving.astype(int), -1]) != 0))
                assert runs.min() >= min_len, runs


def test_near_layers_shift_more_than_far_layers():
    """Parallax: the plane-induced homography moves a point on a near plane further than one on a far plane."""
    scene = syn.sample_scene(2, _cfg(), kind="static_scene")
    t = scene.num_frames - 1
    point = np.array([80.0, 48.0, 1.0])
    shifts = {}
    for depth in (2.0, 20.0):
        layer = syn.Layer(np.zeros((1, 1, 4), np.uint8), np.repeat(np.eye(3)[None], scene.num_frames, 0),
                          np.array([0.0, 0.0, 1.0]), depth)
        moved = syn._layer_homography(scene, layer, t) @ point
        shifts[depth] = np.linalg.norm(moved[:2] / moved[2] - point[:2])
    rot_only = scene.K @ scene.rotations[t] @ np.linalg.inv(scene.K) @ point
    rot_shift = np.linalg.norm(rot_only[:2] / rot_only[2] - point[:2])
    # the far plane moves almost like pure rotation; the near one adds translation parallax
    assert abs(shifts[20.0] - rot_shift) < abs(shifts[2.0] - rot_shift)


def test_layout_is_read_by_the_metrics_and_scores_ground_truth_perfectly(tmp_path):
    from gmos_core.metrics.readers import list_frames, load_time_annotations, read_label_png
    from gmos_core.metrics.runner import evaluate_mos_i_folders

    cfg = _cfg(num_frames=12, min_moving_objects=1)
    out = syn.write_dataset(tmp_path / "syn", [0, 1, 2], cfg, progress=False)
    annos = load_time_annotations(out / "time_annotation.csv", "custom")
    scenes = {syn.sequence_name(s): syn.sample_scene(s, cfg) for s in (0, 1, 2)}
    expected = {}
    for n, sc in scenes.items():  # written annotations mark motion only where the object is visible
        labels = np.stack([syn.render_frame(sc, t)[1] for t in range(sc.num_frames)])
        anno = sc.time_annotation(syn.visible_matrix(labels, sc.moving_matrix().shape[1]))
        if anno:
            expected[n] = anno
    assert dict(annos) == expected and annos
    for name, scene in scenes.items():
        pngs = list_frames(out / "Annotations" / name)
        assert len(pngs) == 12 and len(list((out / "JPEGImages" / name).glob("*.jpg"))) == 12
        assert np.array_equal(read_label_png(pngs[4]), syn.render_frame(scene, 4)[1])
    report = evaluate_mos_i_folders(out / "Annotations", out / "Annotations", annos, progress=False)
    assert report.slhm.j_mov == pytest.approx(1.0)


def test_seed_and_size_parsing():
    assert syn.parse_seeds("3-5,9") == [3, 4, 5, 9]
    assert syn.parse_size("480x272") == (480, 272)
    with pytest.raises(ValueError, match="seeds"):
        syn.parse_seeds("5-3")
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        syn.parse_size("480")
    with pytest.raises(ValueError, match="frame size"):
        syn.SyntheticConfig(width=8)


def test_written_time_annotation_marks_motion_only_where_the_object_is_visible():
    """An annotator cannot mark an invisible object as moving, and MOS-I scores an empty prediction of an invisible
    "moving" object as a hit (an empty prediction then reaches mtIoU ~1e9 on such a sequence)."""
    cfg = _cfg(num_frames=12, min_moving_objects=2, max_moving_objects=2, p_stop_and_go=0.0)
    scene = syn.sample_scene(3, cfg, kind="normal")
    moving = scene.moving_matrix()
    assert moving.shape[1] >= 2 and moving.all()
    visible = np.ones_like(moving)
    visible[4:7, 0] = False      # object 1 hidden on frames 4-6
    visible[:, 1] = False        # object 2 never seen
    anno = scene.time_annotation(visible)
    assert anno["1"] == [[0, 3], [7, 11]]
    assert "2" not in anno
    assert scene.time_annotation() == {str(k + 1): [[0, 11]] for k in range(moving.shape[1])}
    labels = np.zeros((2, 10, 10), np.uint8)
    labels[0, :4, :8] = 1          # 32 pixels: visible
    labels[1, :3, :10] = 1         # 30 pixels: below MIN_VISIBLE_PIXELS
    labels[1, 5:, 5:] = 2
    assert syn.visible_matrix(labels, 2).tolist() == [[True, False], [False, False]]
    assert syn.MIN_VISIBLE_PIXELS == 32
