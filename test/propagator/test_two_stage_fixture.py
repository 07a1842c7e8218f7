"""The official two-stage propagator on the fixture's tiny random SAM 2 (fixtures README §6).

One pipeline run per module (it is the slow part, ~20 s on 2 idle cores); every test checks one aspect of
it against the official numbers: features, the SAM 2 call trace, traced logits, stage arrays, label maps
and PNGs. Expected counts, frames and ids are read from the fixture (trace.json, meta.json, the arrays), never
written here, so a fixture regenerated with another seed is checked the same way.

Measured on this machine (torch 2.13 CPU; the fixture: torch 2.15) -> tolerance:
* SAM 2 features: 4.8e-6 -> 2e-5; channel means 9.2e-8 -> 5e-7; position encodings 0.0 -> exact.
* Traced logits (video resolution, |x| up to 1024): 3.0e-5 -> 1e-4; their signs (masks): 0 pixels differ ->
  a sign may differ only where |logit| <= 1e-4. The features differ from the official ones by float noise
  (different torch build), so the logits cannot be bit-identical here; the official replay with the
  fixture's own features was (meta.json pypi_sam2_replay: 0.0).
* object IoUs 3.0e-6 -> 1.5e-5. Everything discrete (calls, frames, ids, stage arrays, label maps, PNGs) and
  the motion values (copied from the inputs): exact.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from .helpers import TINY, TraceRecorder, load_tiny_predictor

LOGIT_TOL = 1e-4  # measured 3.0e-5 (see the module docstring)
IOU_TOL = 1.5e-5  # measured 3.0e-6


@pytest.fixture(scope="module")
def fixture_data(fixtures_dir):
    from safetensors.numpy import load_file

    d = fixtures_dir / TINY
    return {"tensors": load_file(str(d / "propagator_tiny.safetensors")),
            "trace": json.loads((d / "trace.json").read_text())["events"], "dir": d,
            "meta": json.loads((d / "meta.json").read_text())}


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
                                   atol=2e-5, rtol=0)
        np.testing.assert_allclose(full.astype(np.float64).mean((2, 3)),
                                   x[f"sam_feat/backbone_fpn{level}_channel_mean_f64"], atol=5e-7, rtol=0)
        pos = feats[0]["vision_pos_enc"][level].numpy()
        np.testing.assert_array_equal(pos[:, ::4, ::sub, ::sub], x[f"sam_feat/vision_pos_enc{level}_frame0_c4_sub{sub}"])
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
                np.testing.assert_allclose(a[key], b[key], atol=IOU_TOL, rtol=0, err_msg=f"event {i} {key}")
    # meta.json's summary of the prompts agrees with the trace we matched.
    summary = fixture_data["meta"]["summary"]
    ours_prompts = [[e["stage"], e["frame"], e["obj_id"], e["stored_as"]] for e in ours if e["call"] == "add_new_mask"]
    assert ours_prompts == summary["add_new_mask (stage, frame, obj_id, stored_as)"]
    ours_gens = [[e["stage"], e["start_frame_idx"], e["reverse"]] for e in ours if e["call"] == "propagate_in_video"]
    assert ours_gens == summary["propagate_in_video (stage, start, reverse)"]


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
        np.testing.assert_allclose(logits[:, ::2, ::2], x[prefix + "_sub2"], atol=LOGIT_TOL, rtol=0,
                                   err_msg=f"event {i}")
        flipped = (logits > 0) != (x[prefix + "_gt0"] > 0)
        # A sign can only differ where the logit is within the tolerance of 0 (measured: no pixel differs).
        assert np.all(np.abs(logits[flipped]) <= LOGIT_TOL), f"event {i}: {int(flipped.sum())} pixels changed sign"
        compared += 1
    traced = sum(e["call"] in ("add_new_mask", "yield") for e in fixture_data["trace"])
    assert compared == traced == fixture_data["meta"]["pypi_sam2_replay"]["logit_tensors_compared"]


def test_stage_arrays_match(run, fixture_data):
    x = fixture_data["tensors"]
    trace = fixture_data["trace"]
    r = run["result"]
    # Start frames from the trace: stage 1 seeds on its start frame first; stage 2 starts its first generator
    # at its anchor frame.
    first_prompt = next(e for e in trace if e["stage"] == 1 and e["call"] == "add_new_mask")
    stage2_gen = next(e for e in trace if e["stage"] == 2 and e["call"] == "propagate_in_video")
    assert r.stage1_start_frame == first_prompt["frame"] == fixture_data["meta"]["summary"]["stage1_start_frame"]
    assert r.stage2_start_frame == stage2_gen["start_frame_idx"]
    s1, s2, s2b = r.stage1, r.stage2, r.stage2_before_static_filter
    np.testing.assert_array_equal(s1.full_indexed, x["stage1/full_segments_indexed"])
    np.testing.assert_array_equal(s1.mov_indexed, x["stage1/mov_segments_indexed"])
    np.testing.assert_array_equal(s1.present, x["stage1/present"] > 0)
    np.testing.assert_array_equal(s1.motions, x["stage1/motions"])
    np.testing.assert_array_equal(s1.motions_alter, x["stage1/motions_alter"])  # measured 0.0: copied inputs
    np.testing.assert_allclose(s1.object_ious, x["stage1/object_ious"], atol=IOU_TOL, rtol=0)
    np.testing.assert_array_equal(s2b.full_indexed, x["stage2/full_segments_before_static_filter_indexed"])
    np.testing.assert_array_equal(s2b.present, x["stage2/present_before_static_filter"] > 0)
    np.testing.assert_array_equal(s2.full_indexed, x["stage2/full_segments_indexed"])
    np.testing.assert_array_equal(s2.present, x["stage2/present"] > 0)
    np.testing.assert_array_equal(s2.mov_indexed, x["stage2/mov_segments_indexed"])
    np.testing.assert_array_equal(s2.motions, x["stage2/motions"])
    np.testing.assert_array_equal(s2.motions_alter, x["stage2/motions_alter"])
    # Stage-2 prompts: the official ones in call order (incl. the argpartition pick among equal IoUs).
    official_prompts = [(e["frame"], e["obj_id"]) for e in trace if e["stage"] == 2 and e["call"] == "add_new_mask"]
    assert r.stage2_prompts == official_prompts
    # Static objects: every column stage 2 leaves without entries (never-used columns included).
    present_after = x["stage2/present"] > 0
    assert r.static_objects == [o for o in range(present_after.shape[1]) if not present_after[:, o].any()]


def test_propagator_inputs_match_fixture(fixture_data):
    """build_propagator_inputs vs the official prop_inputs/*: union of the moving proposals and N_t."""
    from gmos_core.propagator import build_propagator_inputs

    x = fixture_data["tensors"]
    inputs = build_propagator_inputs(x["inputs/seq_annos"], x["inputs/pred_motions"], x["inputs/pred_ious"])
    np.testing.assert_array_equal(inputs.all_pred_motion_masks, x["prop_inputs/all_pred_motion_masks"])
    assert [m.shape[0] for m in inputs.all_pred_masks] == x["prop_inputs/n_pred_per_frame"].tolist()
    assert inputs.all_pred_motion_masks.any()  # the fixture has moving proposals on some frames


def test_final_label_maps_and_pngs(run, fixture_data, tmp_path):
    from PIL import Image

    from gmos_core.io.palette import save_indexed_png

    x = fixture_data["tensors"]
    r = run["result"]
    np.testing.assert_array_equal(r.mos_i, x["final/mos_i"])
    np.testing.assert_array_equal(r.mos, x["final/mos"])
    summary = fixture_data["meta"]["summary"]
    assert [sorted(set(np.unique(m).tolist()) - {0}) for m in r.mos_i] == summary["mos_i_labels_per_frame"]
    assert [sorted(set(np.unique(m).tolist()) - {0}) for m in r.mos] == summary["mos_labels_per_frame"]
    assert r.mos_i.any() and r.mos.any()
    for kind, labels in (("mos-i", r.mos_i), ("mos", r.mos)):
        for t in range(labels.shape[0]):
            official = Image.open(fixture_data["dir"] / f"{kind}_frame" / f"{t:05d}.png")
            path = tmp_path / f"{kind}_{t:05d}.png"
            save_indexed_png(path, labels[t])
            ours = Image.open(path)
            assert ours.mode == official.mode == "P"
            np.testing.assert_array_equal(np.array(ours), np.array(official), err_msg=f"{kind} frame {t}")
            assert ours.getpalette()[:3 * 8] == official.getpalette()[:3 * 8]


def test_online_mode_matches_official_stage1(fixtures_dir, fixture_data, run, monkeypatch):
    """gmos_online (OnlinePropagator) over the whole clip, fed the same per-frame proposals, against the
    official stage-1 arrays. The one intended difference is causal: the official stage 1 looks ahead to pick
    its start frame and seeds there, tracking the frames before it from that later prompt ("look-ahead
    objects"); the online mode cannot, and seeds on the first frame whose confident moving proposal it has
    seen. Every other official object must be reproduced: same creation frames and order (online ids are the
    official ids without the look-ahead objects, renumbered), the same label on every pixel the official map
    does not give to a look-ahead object, the same moving flags, motion values and SAM 2 object IoUs.
    SAM 2 normalises the object-pointer time encoding by min(video length, 16) - 1; the official code knows the
    length, a stream does not (the online mode uses 16), so the clip length is given here to compare like
    with like (the default differs by float noise: 2.6e-5 in the logits, measured on this clip)."""
    import gmos_core.propagator.online as online
    from gmos_core.propagator import PropagatorConfig
    from gmos_core.propagator.online import FrameProposals, OnlinePropagator

    x = fixture_data["tensors"]
    trace = fixture_data["trace"]
    annos, motions, ious = x["inputs/seq_annos"], x["inputs/pred_motions"], x["inputs/pred_ious"]
    T, H, W = annos.shape
    monkeypatch.setattr(online, "_UNBOUNDED_NUM_FRAMES", T)
    prop = OnlinePropagator(load_tiny_predictor(fixtures_dir), PropagatorConfig(), (H, W))
    outs = [prop.step(t, run["features"][t], FrameProposals.from_label_map(annos[t], motions[t], ious[t]))
            for t in range(T)]

    # Official objects and where they were created (trace): look-ahead = seeded on the start frame before the
    # first generator ran.
    first_gen = next(i for i, e in enumerate(trace) if e["call"] == "propagate_in_video")
    lookahead = [e["obj_id"] for e in trace[:first_gen] if e["call"] == "add_new_mask"]
    created = [(e["frame"], e["obj_id"]) for e in trace[first_gen:]
               if e["stage"] == 1 and e["call"] == "add_new_mask" and e["new_object"]]
    assert lookahead and created, "the fixture must exercise both the look-ahead seed and later new objects"
    official_id = [o for _, o in created]  # online track k <-> official object official_id[k]
    online_created = [(out.frame_index, tid) for out in outs for tid in out.new_track_ids]
    # A look-ahead object can change later official decisions (a Case-2 precision, the exclusive hard max):
    # the comparison holds while both create the same objects on the same frames. On this fixture that is the
    # whole clip (asserted below); a fixture where a look-ahead object covers a later proposal diverges there,
    # and only the frames before are compared.
    same = 0
    while (same < min(len(created), len(online_created)) and online_created[same][0] == created[same][0]
           and online_created[same][1] < len(official_id) and official_id[online_created[same][1]] == created[same][1]):
        same += 1
    if same == len(created) == len(online_created):
        end = T
    else:
        # Look-ahead objects only make official Case-2 creations harder (more tracked masks to be covered by),
        # so the first divergence must be a track the online mode creates and the official stage 1 does not.
        assert same < len(online_created), (created, online_created)
        end = online_created[same][0]
        assert same == len(created) or created[same][0] >= end, (created, online_created)

    present = x["stage1/present"] > 0
    full, mov = x["stage1/full_segments_indexed"], x["stage1/mov_segments_indexed"]
    compared_pixels = 0
    for t, out in enumerate(outs[:end]):
        ids = [official_id[k] for k in out.track_ids]
        assert ids == [o for o in np.flatnonzero(present[t]) if o not in lookahead], f"frame {t}"
        keep = ~np.isin(full[t], [o + 1 for o in lookahead])  # pixels no look-ahead object won officially
        lut = np.array([0] + [o + 1 for o in official_id], np.int64)
        np.testing.assert_array_equal(lut[out.label_map(moving_only=False)][keep], full[t][keep], err_msg=f"frame {t}")
        np.testing.assert_array_equal(lut[out.label_map(moving_only=True)][keep], mov[t][keep], err_msg=f"frame {t}")
        compared_pixels += int((keep & (full[t] > 0)).sum())
        np.testing.assert_array_equal(out.moving, x["stage1/motions"][t, ids] > PropagatorConfig().motion_iou_thres,
                                      err_msg=f"frame {t}")
        np.testing.assert_array_equal(out.motion_scores, x["stage1/motions_alter"][t, ids], err_msg=f"frame {t}")
        np.testing.assert_allclose(out.object_ious, x["stage1/object_ious"][t, ids], atol=IOU_TOL, rtol=0)
    if end == T:  # the fixture of README section 6: the whole clip, most official object pixels compared
        assert compared_pixels > 0.5 * (full > 0).sum()
