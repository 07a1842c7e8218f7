"""The official two-stage propagator on the fixture's tiny random SAM 2 (fixtures README §6).

One pipeline run per module (it is the slow part, ~20 s on 2 idle cores); every test checks one aspect of
it against the official numbers: features, the SAM 2 call trace, traced logits, stage arrays, label maps
and PNGs.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from .helpers import TINY, TraceRecorder, load_tiny_predictor


@pytest.fixture(scope="module")
def fixture_data(fixtures_dir):
    from safetensors.numpy import load_file

    d = fixtures_dir / TINY
    return {"tensors": load_file(str(d / "propagator_tiny.safetensors")),
            "trace": json.loads((d / "trace.json").read_text())["events"], "dir": d}


@pytest.fixture(scope="module")
def run(fixtures_dir, fixture_data):
    from gmos_core.propagator import encode_video_features, run_two_stage

    torch.set_num_threads(2)
    predictor = load_tiny_predictor(fixtures_dir)
    x = fixture_data["tensors"]
    features = encode_video_features(predictor, x["frames"], batch_size=8)
    recorder = TraceRecorder(predictor)
    result = run_two_stage(predictor, features, x["inputs/seq_annos"], x["inputs/pred_motions"],
                           x["inputs/pred_ious"], progress=False)
    return {"features": features, "recorder": recorder, "result": result}


def test_sam2_features_match_fixture(run, fixture_data):
    x = fixture_data["tensors"]
    feats = run["features"]
    for level, sub in ((0, 16), (1, 8), (2, 4)):
        full = torch.cat([f["backbone_fpn"][level] for f in feats]).numpy()
        np.testing.assert_allclose(full[:, ::4, ::sub, ::sub], x[f"sam_feat/backbone_fpn{level}_c4_sub{sub}"],
                                   atol=1e-4)
        np.testing.assert_allclose(full.astype(np.float64).mean((2, 3)),
                                   x[f"sam_feat/backbone_fpn{level}_channel_mean_f64"], atol=1e-5)
        pos = feats[0]["vision_pos_enc"][level].numpy()
        np.testing.assert_allclose(pos[:, ::4, ::sub, ::sub], x[f"sam_feat/vision_pos_enc{level}_frame0_c4_sub{sub}"],
                                   atol=1e-5)
    # The bottleneck of each frame is its own (cloned) tensor, not a view into the batch output.
    assert feats[1]["backbone_fpn"][-1]._base is None


def test_call_trace_matches_official(run, fixture_data):
    ours = run["recorder"].events
    ref = fixture_data["trace"]
    assert [(e["call"], e["stage"]) for e in ours] == [(e["call"], e["stage"]) for e in ref]
    for i, (a, b) in enumerate(zip(ours, ref)):
        for key in ("frame", "obj_id", "mask_area", "new_object", "frame_already_tracked_for_obj", "stored_as",
                    "with_object_ious", "returned_obj_ids", "generator", "start_frame_idx", "reverse", "obj_ids"):
            if key in b:
                assert a[key] == b[key], f"event {i} ({b['call']}): {key} {a[key]!r} != official {b[key]!r}"
        for key in ("returned_object_ious", "object_ious"):
            if key in b:
                np.testing.assert_allclose(a[key], b[key], atol=1e-4, err_msg=f"event {i} {key}")


def test_traced_masks_and_logits_match(run, fixture_data):
    x = fixture_data["tensors"]
    tensors = run["recorder"].tensors
    compared = 0
    for i, ev in enumerate(fixture_data["trace"]):
        if ev["call"] == "add_new_mask":
            np.testing.assert_array_equal(tensors[i]["mask"], x[f"trace/{i:03d}/mask"] > 0, err_msg=f"event {i}")
            prefix = f"trace/{i:03d}/returned_logits"
        elif ev["call"] == "yield":
            prefix = f"trace/{i:03d}/logits"
        else:
            continue
        logits = tensors[i]["logits"][:, 0].numpy()
        np.testing.assert_allclose(logits[:, ::2, ::2], x[prefix + "_sub2"], atol=1e-3, err_msg=f"event {i}")
        flipped = int(((logits > 0) != (x[prefix + "_gt0"] > 0)).sum())
        # README: a few logits are within 1e-4 of 0, so a handful of sign flips are tolerated.
        assert flipped <= 3, f"event {i}: {flipped} pixels changed sign"
        compared += 1
    assert compared == 34


def test_stage_arrays_match(run, fixture_data):
    x = fixture_data["tensors"]
    r = run["result"]
    assert r.stage1_start_frame == 2 and r.stage2_start_frame == 8
    s1, s2, s2b = r.stage1, r.stage2, r.stage2_before_static_filter
    np.testing.assert_array_equal(s1.full_indexed, x["stage1/full_segments_indexed"])
    np.testing.assert_array_equal(s1.mov_indexed, x["stage1/mov_segments_indexed"])
    np.testing.assert_array_equal(s1.present, x["stage1/present"] > 0)
    np.testing.assert_array_equal(s1.motions, x["stage1/motions"])
    np.testing.assert_allclose(s1.motions_alter, x["stage1/motions_alter"], atol=1e-6)
    np.testing.assert_allclose(s1.object_ious, x["stage1/object_ious"], atol=1e-4)
    np.testing.assert_array_equal(s2b.full_indexed, x["stage2/full_segments_before_static_filter_indexed"])
    np.testing.assert_array_equal(s2b.present, x["stage2/present_before_static_filter"] > 0)
    np.testing.assert_array_equal(s2.full_indexed, x["stage2/full_segments_indexed"])
    np.testing.assert_array_equal(s2.present, x["stage2/present"] > 0)
    np.testing.assert_array_equal(s2.mov_indexed, x["stage2/mov_segments_indexed"])
    np.testing.assert_array_equal(s2.motions, x["stage2/motions"])
    np.testing.assert_allclose(s2.motions_alter, x["stage2/motions_alter"], atol=1e-6)
    # Stage-2 prompts: one per object, object 0 at frame 2 (the official argpartition pick among two 1.0s).
    assert r.stage2_prompts == [(2, 0), (1, 1), (3, 2), (5, 3), (7, 4), (8, 5)]
    assert r.static_objects == [6, 7, 8, 9]  # only the never-used columns


def test_final_label_maps_and_pngs(run, fixture_data, tmp_path):
    from PIL import Image

    from gmos_core.io.palette import save_indexed_png

    x = fixture_data["tensors"]
    r = run["result"]
    np.testing.assert_array_equal(r.mos_i, x["final/mos_i"])
    np.testing.assert_array_equal(r.mos, x["final/mos"])
    for kind, labels in (("mos-i", r.mos_i), ("mos", r.mos)):
        for t in range(labels.shape[0]):
            official = Image.open(fixture_data["dir"] / f"{kind}_frame" / f"{t:05d}.png")
            path = tmp_path / f"{kind}_{t:05d}.png"
            save_indexed_png(path, labels[t])
            ours = Image.open(path)
            assert ours.mode == official.mode == "P"
            np.testing.assert_array_equal(np.array(ours), np.array(official), err_msg=f"{kind} frame {t}")
            assert ours.getpalette()[:3 * 8] == official.getpalette()[:3 * 8]
