"""Propagator configuration: the official constants (``prop/prop_config.py``) plus streaming caps.

Every default below is the official value (gmos_reference.md §8.1) unless the field is marked as an
addition of this implementation (the ``online``/``quirk`` fields), whose defaults keep the official
behaviour wherever the official code does not crash.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Tuple


class PropagatorConfigError(ValueError):
    """A PropagatorConfig field has a value outside its documented range."""


def _check_fraction(name: str, value: float, *, inclusive_low: bool = True) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise PropagatorConfigError(f"PropagatorConfig.{name} must be a finite number in [0, 1], got {value!r}")
    low_ok = value >= 0.0 if inclusive_low else value > 0.0
    if not (low_ok and value <= 1.0):
        bound = "[0, 1]" if inclusive_low else "(0, 1]"
        raise PropagatorConfigError(f"PropagatorConfig.{name} must lie in {bound}, got {value!r}")


def _check_weights(name: str, weights: Tuple[float, ...]) -> None:
    if len(weights) != 5:
        raise PropagatorConfigError(
            f"PropagatorConfig.{name} must have 5 weights (offsets -2..+2), got {len(weights)}: {weights!r}"
        )
    if any((not isinstance(w, (int, float))) or w < 0 or not math.isfinite(w) for w in weights):
        raise PropagatorConfigError(f"PropagatorConfig.{name} must hold non-negative finite numbers, got {weights!r}")
    if sum(weights) <= 0:
        raise PropagatorConfigError(f"PropagatorConfig.{name} must not sum to 0, got {weights!r}")


@dataclass(frozen=True)
class PropagatorConfig:
    """Thresholds and constants of the GMOS propagator (official defaults) and the streaming caps.

    Official constants (names as in ``prop_config.py``, lower-cased):

    * ``motion_thres`` (0.5): a proposal is *moving* when its motion probability is strictly above this.
    * ``iou_thres`` (0.7): a proposal is *confident* when its predicted IoU is strictly above this.
    * ``match_iou_thres`` (0.95): Case 1 (re-inforce) needs IoU(matched proposal, SAM mask) above this.
    * ``min_precision_thres`` (0.3): Case 2 (new object) needs the proposal's max precision against all
      SAM masks below this.
    * ``motion_precision_thres`` (0.5): a SAM mask is moving on a frame when more than this fraction of
      it lies inside the union of the frame's moving proposals.
    * ``motion_iou_thres`` (0.2): ``mos-i`` keeps an object on frames whose 0/1 motion exceeds this.
    * ``min_mov_object_frame_prop`` (0.03): stage-2 objects moving on fewer frames (mean) are static.
    * ``max_objects`` (10): maximum number of tracked objects (and the width of the result arrays).
    * ``stage1_smoothing_weights`` / ``stage2_smoothing_weights``: 5-tap weights of ``smooth_motions``.
    * ``min_prompt_frame_distance`` (5): Case 1 is skipped within this many frames of an own prompt.
    * ``stage2_prompt_fraction`` (0.1), ``stage2_prompt_iou_thres`` (0.95): stage-2 prompt selection.

    Additions of this implementation:

    * ``skip_empty_prompts`` (False = official): never add an all-zero mask as a prompt.
    * ``max_cond_frames_in_attn`` (online; official SAM 2 default -1 = all): conditioning frames the
      streaming tracker attends to per frame (the temporally closest ones, as SAM 2 selects them).
    * ``max_kept_cond_frames`` (online): conditioning outputs kept per object; older ones are pruned.
    * ``max_absent_frames`` (online; 0 = never, like the official code): a track whose (exclusive) mask has
      been empty for this many consecutive frames is removed, freeing its slot for new objects.
    * ``cuda_bf16_autocast`` (True = official): on CUDA run under bf16 autocast with TF32 enabled.
    """

    motion_thres: float = 0.5
    iou_thres: float = 0.7
    match_iou_thres: float = 0.95
    min_precision_thres: float = 0.3
    motion_precision_thres: float = 0.5
    motion_iou_thres: float = 0.2
    min_mov_object_frame_prop: float = 0.03
    max_objects: int = 10
    stage1_smoothing_weights: Tuple[float, ...] = (0.0, 0.0, 1.0, 0.7, 0.4)
    stage2_smoothing_weights: Tuple[float, ...] = (0.25, 0.5, 1.0, 0.5, 0.25)
    min_prompt_frame_distance: int = 5
    stage2_prompt_fraction: float = 0.1
    stage2_prompt_iou_thres: float = 0.95
    # ---- additions (defaults keep the official behaviour) ----
    skip_empty_prompts: bool = False
    max_cond_frames_in_attn: int = 4
    max_kept_cond_frames: int = 4
    max_absent_frames: int = 0
    cuda_bf16_autocast: bool = True

    def __post_init__(self) -> None:
        for name in ("motion_thres", "iou_thres", "match_iou_thres", "min_precision_thres",
                     "motion_precision_thres", "motion_iou_thres", "min_mov_object_frame_prop",
                     "stage2_prompt_iou_thres"):
            _check_fraction(name, getattr(self, name))
        _check_fraction("stage2_prompt_fraction", self.stage2_prompt_fraction, inclusive_low=False)
        object.__setattr__(self, "stage1_smoothing_weights", tuple(float(w) for w in self.stage1_smoothing_weights))
        object.__setattr__(self, "stage2_smoothing_weights", tuple(float(w) for w in self.stage2_smoothing_weights))
        _check_weights("stage1_smoothing_weights", self.stage1_smoothing_weights)
        _check_weights("stage2_smoothing_weights", self.stage2_smoothing_weights)
        for name, low in (("max_objects", 1), ("min_prompt_frame_distance", 0), ("max_kept_cond_frames", 2),
                          ("max_absent_frames", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise PropagatorConfigError(f"PropagatorConfig.{name} must be an integer >= {low}, got {value!r}")
        if self.max_objects > 255:
            raise PropagatorConfigError(
                f"PropagatorConfig.max_objects must be <= 255 (labels are stored as uint8 obj_id+1), got {self.max_objects}"
            )
        m = self.max_cond_frames_in_attn
        if not isinstance(m, int) or isinstance(m, bool) or (m != -1 and m < 2):
            # SAM 2 always keeps the closest conditioning frame before *and* after the current one.
            raise PropagatorConfigError(
                f"PropagatorConfig.max_cond_frames_in_attn must be -1 (unlimited) or an integer >= 2, got {m!r}"
            )
        if m != -1 and self.max_kept_cond_frames < m:
            raise PropagatorConfigError(
                "PropagatorConfig.max_kept_cond_frames must be >= max_cond_frames_in_attn "
                f"(pruned conditioning frames could not be attended anyway), got {self.max_kept_cond_frames} < {m}"
            )
        for name in ("skip_empty_prompts", "cuda_bf16_autocast"):
            if not isinstance(getattr(self, name), bool):
                raise PropagatorConfigError(f"PropagatorConfig.{name} must be a bool, got {getattr(self, name)!r}")

    def official_constants(self) -> dict:
        """The constants under their official upper-case names (as in ``prop_config.py``)."""
        d = asdict(self)
        keys = ("motion_thres", "iou_thres", "match_iou_thres", "min_precision_thres", "motion_precision_thres",
                "motion_iou_thres", "min_mov_object_frame_prop", "max_objects", "stage1_smoothing_weights",
                "stage2_smoothing_weights", "min_prompt_frame_distance", "stage2_prompt_fraction",
                "stage2_prompt_iou_thres")
        return {k.upper(): (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in keys}
