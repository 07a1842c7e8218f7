"""Test helpers of the propagator area: the tiny SAM 2 of the fixture and a call-trace recorder."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

TINY = "propagator_tiny"


def tiny_paths(fixtures_dir: Path):
    d = fixtures_dir / TINY
    return d / "sam2_tiny_gmos_fixture.yaml", d / "sam2_tiny_weights.safetensors"


def load_tiny_predictor(fixtures_dir: Path, image_size: int = 1024):
    """The fixture's tiny random SAM 2 (PyPI sam2, strict load); a smaller ``image_size`` gives a cheap
    model with the same weights for long streaming tests."""
    from gmos_core.propagator import load_sam2_video_predictor

    cfg, weights = tiny_paths(fixtures_dir)
    overrides = [] if image_size == 1024 else [f"++model.image_size={image_size}"]
    warnings.filterwarnings("ignore", message=r"(?s).*post-processing")
    return load_sam2_video_predictor(cfg, weights, "cpu", overrides=overrides)


class _RecordedGenerator:
    def __init__(self, recorder: "TraceRecorder", inner, gid: int, with_ious: bool):
        self.recorder, self.inner, self.gid, self.with_ious = recorder, inner, gid, with_ious

    def __iter__(self):
        return self

    def __next__(self):
        rec = self.recorder
        try:
            item = next(self.inner)
        except StopIteration:
            rec.events.append({"stage": rec.stage, "call": "generator_exhausted", "generator": self.gid})
            raise
        ev: Dict[str, Any] = {"stage": rec.stage, "call": "yield", "generator": self.gid, "frame": int(item[0]),
                              "obj_ids": list(item[1])}
        if self.with_ious:
            ev["object_ious"] = item[3].float().reshape(-1).tolist()
        rec.tensors[len(rec.events)] = {"logits": item[2].detach().clone()}
        rec.events.append(ev)
        return item

    def close(self):
        self.recorder.events.append({"stage": self.recorder.stage, "call": "generator_close", "generator": self.gid})
        self.inner.close()


class TraceRecorder:
    """Wraps a predictor's add_new_mask / propagate_in_video / reset_state (instance attributes) and records
    the same events as the fixture's trace.json."""

    def __init__(self, predictor):
        self.events: List[Dict[str, Any]] = []
        self.tensors: Dict[int, Dict[str, Any]] = {}
        self.stage = 1
        self._generators = 0
        add, prop, reset = predictor.add_new_mask, predictor.propagate_in_video, predictor.reset_state

        def add_new_mask(inference_state, frame_idx, obj_id, mask, with_object_ious=False):
            idx = inference_state["obj_id_to_idx"].get(obj_id)
            tracked = idx is not None and frame_idx in inference_state["frames_tracked_per_obj"][idx]
            result = add(inference_state, frame_idx, obj_id, mask, with_object_ious=with_object_ious)
            mask_np = mask.detach().cpu().numpy() if torch.is_tensor(mask) else np.asarray(mask)
            cond = (not tracked) or predictor.add_all_frames_to_correct_as_cond
            ev = {"stage": self.stage, "call": "add_new_mask", "frame": int(frame_idx), "obj_id": int(obj_id),
                  "mask_area": int((mask_np > 0).sum()), "new_object": idx is None,
                  "frame_already_tracked_for_obj": bool(tracked),
                  "stored_as": "cond_frame_outputs" if cond else "non_cond_frame_outputs",
                  "with_object_ious": bool(with_object_ious), "returned_obj_ids": list(result[1])}
            if with_object_ious:
                ev["returned_object_ious"] = result[3].reshape(-1).tolist()
            self.tensors[len(self.events)] = {"mask": mask_np > 0, "logits": result[2].detach().clone()}
            self.events.append(ev)
            return result

        def propagate_in_video(inference_state, start_frame_idx=None, max_frame_num_to_track=None, reverse=False,
                               with_object_ious=False):
            gid = self._generators
            self._generators += 1
            self.events.append({"stage": self.stage, "call": "propagate_in_video", "generator": gid,
                                "start_frame_idx": int(start_frame_idx), "reverse": bool(reverse),
                                "with_object_ious": bool(with_object_ious)})
            inner = prop(inference_state, start_frame_idx=start_frame_idx,
                         max_frame_num_to_track=max_frame_num_to_track, reverse=reverse,
                         with_object_ious=with_object_ious)
            return _RecordedGenerator(self, inner, gid, with_object_ious)

        def reset_state(inference_state):
            self.events.append({"stage": self.stage, "call": "reset_state"})
            self.stage = 2
            return reset(inference_state)

        predictor.add_new_mask = add_new_mask
        predictor.propagate_in_video = propagate_in_video
        predictor.reset_state = reset_state
