"""Propagator helpers against the official ``utils`` fixture (exact integers, floats to 1e-6)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gmos_core.propagator.config import PropagatorConfig
from gmos_core.propagator.inputs import build_propagator_inputs, select_start_frame
from gmos_core.propagator.ops import (batch_hungarian_match, compute_iou, compute_motion_labels, compute_precision,
                                      form_result_array, get_torch_hard_max, get_torch_priority_hard_max,
                                      smooth_motions)


@pytest.fixture(scope="module")
def utils(fixtures_dir):
    return json.loads((fixtures_dir / "utils" / "utils.json").read_text())


@pytest.fixture(scope="module")
def utils_tensors(fixtures_dir):
    from safetensors.numpy import load_file

    return load_file(str(fixtures_dir / "utils" / "utils.safetensors"))


def T(x, dtype=torch.float64):
    return torch.tensor(np.asarray(x), dtype=dtype)


def test_hard_max(utils):
    s = utils["get_torch_hard_max"]
    x = T(s["input"])
    np.testing.assert_array_equal(get_torch_hard_max(x).numpy(), np.asarray(s["default_threshold_-1"]))
    np.testing.assert_array_equal(get_torch_hard_max(x, 0).numpy(), np.asarray(s["threshold_0"]))


@pytest.mark.parametrize("mutant", ["last_max_on_ties", "ge_threshold"])
def test_hard_max_pitfalls_break_parity(utils, mutant):
    """The fixture input has exact ties and values equal to the thresholds: a last-max tie-break (the real
    function on reversed object channels) or a >= comparison (threshold lowered by 1e-9) must fail the exact
    check of test_hard_max."""
    s = utils["get_torch_hard_max"]
    x = T(s["input"])
    for threshold, key in ((-1, "default_threshold_-1"), (0, "threshold_0")):
        if mutant == "last_max_on_ties":
            out = get_torch_hard_max(x.flip(1), threshold).flip(1)
        else:
            out = get_torch_hard_max(x, threshold - 1e-9)
        assert not np.array_equal(out.numpy(), np.asarray(s[key])), (mutant, key)


def test_priority_hard_max(utils):
    s = utils["get_torch_priority_hard_max"]
    x = T(s["input"])
    np.testing.assert_array_equal(get_torch_priority_hard_max(x, s["priority"]).numpy(), np.asarray(s["output"]))
    np.testing.assert_array_equal(get_torch_priority_hard_max(x, [0, 0, 0, 0]).numpy(),
                                  np.asarray(s["priority_all_zero_output"]))
    with pytest.raises(ValueError, match="one entry per channel"):
        get_torch_priority_hard_max(x, [1, 2])


def test_iou_and_precision(utils):
    s = utils["compute_iou_precision"]
    cases = [s["random"]] + list(s["edge_cases"].values())
    for case in cases:
        pred, gt = T(case["pred"], torch.float32), T(case["gt"], torch.float32)
        np.testing.assert_allclose(compute_iou(pred, gt).numpy(), case["iou"], atol=1e-6)
        np.testing.assert_allclose(compute_precision(pred, gt).numpy(), case["precision"], atol=1e-6)


def test_hungarian_match(utils):
    s = utils["batch_hungarian_match"]
    for name in ("float_case", "padded_case", "bool_case_more_preds"):
        case = s[name]
        pred = T(case["pred_bool"]).bool() if "pred_bool" in case else T(case["pred"], torch.float32)
        gt = T(case["gt"], torch.float32)
        aux = T(case["aux"], torch.float32)
        matched, idx, (aux_r,) = batch_hungarian_match(pred, gt, [aux])
        assert list(idx[0]) == case["matched_idx"][0], name
        np.testing.assert_array_equal(matched.numpy().astype(np.float64), np.asarray(case["matched_pred"]), name)
        np.testing.assert_allclose(aux_r.numpy(), case["aux_reordered"], atol=1e-7)
        if name == "bool_case_more_preds":
            assert matched.dtype == torch.bool
    with pytest.raises(ValueError, match="M<="):
        batch_hungarian_match(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4))


def test_select_start_frame(utils):
    s = utils["select_start_frame"]
    for name in ("none_valid", "valid_in_first_3", "tie_in_first_3", "valid_only_later"):
        case = s[name]
        start, q = select_start_frame(np.asarray(case["ious"], np.float32), np.asarray(case["motions"], np.float32))
        assert start == case["start"], name
        np.testing.assert_allclose(q, case["all_frame_ious"], atol=1e-7)


def test_build_propagator_inputs(utils, utils_tensors):
    s = utils["build_propagator_inputs"]
    x = {k.split("/", 1)[1]: v for k, v in utils_tensors.items() if k.startswith("build_propagator_inputs/")}
    inputs = build_propagator_inputs(x["seq_annos"], x["pred_motions"], x["pred_ious"])
    assert [m.shape[0] for m in inputs.all_pred_masks] == s["N_t"]
    for t, m in enumerate(inputs.all_pred_masks):
        assert m.dtype == bool
        np.testing.assert_array_equal(m, x[f"all_pred_masks/t{t}"] > 0)
    np.testing.assert_array_equal(inputs.all_pred_motion_masks, x["all_pred_motion_masks"])
    np.testing.assert_array_equal(inputs.all_motions, x["pred_motions"][..., 0])
    with pytest.raises(ValueError, match="label"):
        build_propagator_inputs(np.full((1, 2, 2), 30, np.uint8), np.zeros((1, 20, 1)), np.zeros((1, 20, 1)))


def test_compute_motion_labels(utils):
    s = utils["compute_motion_labels"]
    sam = T(s["sam_masks_onehot"], torch.float32)[:, None]
    union = T(s["pred_motion_mask"], torch.float32)
    masks = T(s["pred_masks"], torch.float32)
    motions = T(s["pred_motions"], torch.float32)
    g, per = compute_motion_labels(sam, union, masks, motions, masks.shape[0])
    np.testing.assert_array_equal(g, s["motion_global"])
    np.testing.assert_allclose(per, s["motion_per_obj"], atol=1e-7)
    g0, per0 = compute_motion_labels(sam, union, masks[:0], motions[:0], 0)
    np.testing.assert_array_equal(g0, s["n_pred_0"]["motion_global"])
    np.testing.assert_array_equal(per0, s["n_pred_0"]["motion_per_obj"])


def test_smooth_motions(utils):
    s = utils["smooth_motions"]
    for inp, key in ((s["input"], ""), (s["short_T1"]["input"], "short_T1"), (s["short_T2"]["input"], "short_T2")):
        ref = s[key] if key else s
        np.testing.assert_allclose(smooth_motions(np.asarray(inp), s["weights_stage1"]), ref["stage1"], atol=1e-12)
        np.testing.assert_allclose(smooth_motions(np.asarray(inp), s["weights_stage2"]), ref["stage2"], atol=1e-12)


def test_form_result_array():
    out = form_result_array({0: {1: 0.5}, 2: {0: 1.0, 3: 2.0}}, np.zeros((3, 4)), 3)
    np.testing.assert_array_equal(out, [[0, 0.5, 0, 0], [0, 0, 0, 0], [1, 0, 0, 2]])
    with pytest.raises(IndexError, match="result width"):
        form_result_array({0: {7: 1.0}}, np.zeros((1, 4)), 1)


def test_prop_config_defaults_are_official(utils):
    assert PropagatorConfig().official_constants() == utils["prop_config"]


@pytest.mark.parametrize("kwargs, match", [
    ({"motion_thres": 1.5}, "motion_thres"),
    ({"iou_thres": float("nan")}, "iou_thres"),
    ({"max_objects": 0}, "max_objects"),
    ({"max_objects": 300}, "max_objects"),
    ({"stage1_smoothing_weights": (1.0, 1.0)}, "5 weights"),
    ({"stage2_smoothing_weights": (0, 0, 0, 0, 0)}, "sum to 0"),
    ({"max_cond_frames_in_attn": 1}, "max_cond_frames_in_attn"),
    ({"max_cond_frames_in_attn": 6, "max_kept_cond_frames": 4}, "max_kept_cond_frames"),
    ({"stage2_prompt_fraction": 0.0}, "stage2_prompt_fraction"),
    ({"skip_empty_prompts": 1}, "skip_empty_prompts"),
])
def test_config_validation_names_the_field(kwargs, match):
    from gmos_core.propagator import PropagatorConfigError

    with pytest.raises(PropagatorConfigError, match=match):
        PropagatorConfig(**kwargs)


def test_sam2_image_tensor_matches_official_transform(utils_tensors):
    """Both the shared preprocessing (used when present) and the local fallback equal SAM2Transforms(1024)."""
    from gmos_core.propagator.features import _sam2_image_tensor_local, sam2_image_tensor

    for case in ("small_80x60", "wide_1500x40"):
        rgb = utils_tensors[f"sam2_transform/{case}/input_u8"]
        for fn in (sam2_image_tensor, _sam2_image_tensor_local):
            out = fn(rgb).numpy()
            np.testing.assert_allclose(out[0, ::4, ::4], utils_tensors[f"sam2_transform/{case}/ch0_sub4"], atol=1e-5)
            np.testing.assert_allclose(out[:, 517, :], utils_tensors[f"sam2_transform/{case}/row517"], atol=1e-5)
            np.testing.assert_allclose(out[:, :, 333], utils_tensors[f"sam2_transform/{case}/col333"], atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        _sam2_image_tensor_local(np.zeros((4, 4, 3), np.float32))
