"""IoU tracker: per-frame instance proposals → tracks with stable ids and a moving/static state.

The official online path tracks objects with the SAM 2 video predictor's memory. The default model shipped
here has no trained SAM 2 memory (a tiny SAM 2 cannot be trained on 2 CPU cores), so it tracks by
association instead, and gives the same outputs (a uint16 label image of ``track_id + 1``, and per object its
track id, moving/static state, motion probability and predicted IoU):

1. **Proposals** of one frame: the proposer's top-k labelled masks (:func:`proposals_from_label_frame`), or
   the connected components of a GMOS-S foreground mask (:func:`proposals_from_foreground`). Proposals below
   ``min_area_fraction`` of the frame are ignored.
2. **Prediction**: each live track's last mask, shifted by its smoothed per-frame centroid velocity times the
   frames since it was last seen (constant velocity: two objects that cross keep their ids).
3. **Association**: mask IoU between every proposal and every predicted track mask, Hungarian matching
   (``scipy.optimize.linear_sum_assignment``) maximising the total IoU; a pair counts only with IoU >=
   ``match_iou``.
3b. **Re-identification**: a proposal the IoU step left unmatched may continue a track that went unseen for a
   while (an object that stopped, so GMOS-S no longer marks it, or was occluded) when it is within
   ``reid_distance`` equivalent diameters of the track's last or predicted centroid and its area is within
   ``reid_area_ratio`` of the track's last or recent full size; nearest first (Hungarian on the distance).
   MOS-I matches one predicted id per object for the whole sequence, so a new id after a stop loses the rest.
4. **Birth**: an unmatched proposal whose motion probability is above ``birth_motion`` (and predicted IoU
   above ``birth_min_iou``) starts a new track (ids are never reused while alive; at most ``max_tracks``).
   Objects that never moved are not tracked (MOS-I is about moving objects), but a tracked object that stops
   stays tracked, as *static*.
5. **Confirmation and death**: a new track is output only once it has been matched on ``confirm_frames``
   frames in a row (1 = from its first frame); a track not yet confirmed is dropped the first frame it goes
   unmatched (flickering fragments never show). A confirmed track unmatched for more than ``max_missed_frames``
   consecutive frames is removed; one that comes back within that many frames keeps its id.
6. **Motion state with hysteresis**: the motion probability is smoothed per track (exponential, weight
   ``motion_smoothing`` on the newest frame); a static track becomes moving when the smoothed value rises above
   ``moving_on``, a moving one becomes static only when it falls below ``moving_off`` (< ``moving_on``), so a
   probability hovering around one threshold does not flicker the state.

Memory is bounded: at most ``max_tracks`` tracks, each holding its last mask cropped to its bounding box and a
few numbers; nothing grows with the number of frames. Track ids wrap before 65535 (uint16 label images).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from gmos_core.engine.result import MotionState

MAX_TRACK_ID = 65534  # label value track_id + 1 must fit uint16
REF_AREA_DECAY = 0.9


class IouTrackerConfigError(ValueError):
    """An IouTrackerConfig field has a value the tracker cannot use."""


@dataclass(frozen=True)
class IouTrackerConfig:
    """Thresholds of the IoU tracker (see the module docstring for what each step does).

    match_iou:          minimum mask IoU between a proposal and a track's predicted mask to continue the track.
    max_missed_frames:  consecutive frames a track may go unmatched and still come back with its id.
    birth_motion:       a proposal starts a track only when its motion probability is above this (official
                        ``motion_thres`` 0.5).
    birth_min_iou:      ... and its predicted IoU is above this (the official propagator seeds at 0.7); 0 = no
                        requirement (the default: a small model's IoU head is not calibrated, may even be < 0).
    moving_on / moving_off: hysteresis thresholds on the smoothed motion probability (off < on).
    motion_smoothing:   weight of the newest frame's motion probability in the per-track average (1 = none).
    min_area_fraction:  proposals smaller than this fraction of the frame are ignored (noise).
    max_tracks:         live tracks at most (births beyond it are refused).
    predict_motion:     shift a track's mask by its smoothed velocity before matching.
    confirm_frames:     matched frames in a row before a new track is output (1 = at once).
    reid_distance:      re-identification of lost tracks (0 = off): a proposal left unmatched by the IoU step may
                        continue a track that went unseen (missed >= 1) when its centroid is within this many
                        equivalent diameters (sqrt(area)) of the track's last or predicted centroid ...
    reid_area_ratio:    ... and the two areas differ by at most this factor ...
    reid_max_shift:     ... and the centroid is at most this fraction of the frame's shorter side away (a large
                        object's diameters would otherwise span the frame, and a second large object appearing
                        anywhere would take a lost one's id). The nearest such track wins (Hungarian on the
                        distance).
    split_cover:        splitting of merged proposals (0 = off): a proposal that holds at least this fraction of
                        the predicted masks of two or more tracks ...
    split_max_missed:   ... each seen within this many frames ...
    split_min_age:      ... and each matched on at least this many frames, is split between them, every pixel
                        to the track whose predicted mask is nearest.
    """

    # match_iou, max_missed_frames and min_area_fraction: chosen on the default model's VALIDATION split
    # (benchmarks/heldout_eval.py --split validation --tracker-config ...; docs/default_model.md, "Tracker
    # thresholds"): from 0.2 / 8 / 0.0005, MOS-I mtIoU 0.092 -> 0.103, J_mov 0.249 -> 0.278, false-positive tracks
    # 0.60 -> 0.38 per frame. The area floor does most of it (fragments under 0.2 % of the frame are noise).
    match_iou: float = 0.1
    max_missed_frames: int = 40
    birth_motion: float = 0.5
    birth_min_iou: float = 0.0
    moving_on: float = 0.5
    moving_off: float = 0.3
    motion_smoothing: float = 0.5
    min_area_fraction: float = 0.002
    max_tracks: int = 64
    predict_motion: bool = True
    confirm_frames: int = 1
    # reid_*: chosen on the VALIDATION split with benchmarks/tracker_sweep.py (docs/default_model.md,
    # "Re-identification"): mtIoU 0.432 -> 0.483; flat from 3 diameters up, area ratio 3 up and a shift cap of 0.35
    # of the short side up. The cap guards large objects (a hand on a 720p frame is ~250 px across: a few of its
    # diameters span the frame), which synthetic clips with small objects cannot show; the tightest setting on
    # the plateau was kept.
    reid_distance: float = 3.0
    reid_area_ratio: float = 3.0
    reid_max_shift: float = 0.35
    split_cover: float = 0.0
    split_max_missed: int = 1
    split_min_age: int = 1

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> IouTrackerConfigError:
            return IouTrackerConfigError(f"IouTrackerConfig.{name}={getattr(self, name)!r}: expected {expected}")

        for name in ("match_iou", "birth_motion", "birth_min_iou", "moving_on", "moving_off", "min_area_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
                raise bad(name, "a number in [0, 1]")
        if not (0.0 < self.match_iou):
            raise bad("match_iou", "a number in (0, 1] (0 would match disjoint masks)")
        value = self.motion_smoothing
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value <= 1.0):
            raise bad("motion_smoothing", "a number in (0, 1]")
        if not self.moving_off < self.moving_on:
            raise bad("moving_off", f"a value below moving_on={self.moving_on} (hysteresis)")
        value = self.split_cover
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
            raise bad("split_cover", "a number in [0, 1] (0 = no splitting)")
        for name, low in (("max_missed_frames", 0), ("max_tracks", 1), ("confirm_frames", 1),
                          ("split_max_missed", 0), ("split_min_age", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(name, f"an integer >= {low}")
        for name, low in (("reid_distance", 0.0), ("reid_area_ratio", 1.0), ("reid_max_shift", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value < math.inf):
                raise bad(name, f"a finite number >= {low}")
        if self.max_tracks > MAX_TRACK_ID:
            raise bad("max_tracks", f"an integer <= {MAX_TRACK_ID}")
        if not isinstance(self.predict_motion, bool):
            raise bad("predict_motion", "a bool")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class InstanceProposals:
    """One frame's instance proposals: masks (N, H, W) bool, motions (N,) in [0, 1], ious (N,)."""

    masks: np.ndarray
    motions: np.ndarray
    ious: np.ndarray

    def __post_init__(self) -> None:
        self.masks = np.asarray(self.masks, dtype=bool)
        if self.masks.ndim != 3:
            raise ValueError(f"proposal masks must be (N, H, W), got shape {self.masks.shape}")
        n = self.masks.shape[0]
        self.motions = np.asarray(self.motions, dtype=np.float32).reshape(-1)
        self.ious = np.asarray(self.ious, dtype=np.float32).reshape(-1)
        if self.motions.shape != (n,) or self.ious.shape != (n,):
            raise ValueError(f"need one motion and one iou per proposal mask ({n}), got {self.motions.shape} "
                             f"and {self.ious.shape}")

    @staticmethod
    def empty(height: int, width: int) -> "InstanceProposals":
        return InstanceProposals(np.zeros((0, height, width), bool), np.zeros(0), np.zeros(0))


def proposals_from_label_frame(labels: np.ndarray, motions: np.ndarray, ious: np.ndarray) -> InstanceProposals:
    """Proposer output labelled per frame (``gmos_core.engine.proposals.label_frame``: labels 1..M, score column
    j = label j+1) → one proposal per label."""
    labels = np.asarray(labels)
    count = int(labels.max()) if labels.size else 0
    masks = labels[None] == np.arange(1, count + 1, dtype=labels.dtype)[:, None, None]
    return InstanceProposals(masks, np.asarray(motions)[:count], np.asarray(ious)[:count])


def proposals_from_foreground(prob: np.ndarray, threshold: float = 0.5, predicted_iou: float = 0.0,
                              min_area_pixels: int = 1, max_instances: int = 20) -> InstanceProposals:
    """GMOS-S foreground probability (H, W) → its connected components (8-connected) above ``threshold``, each
    with motion probability = its mean foreground probability, largest first, at most ``max_instances``."""
    from scipy import ndimage

    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"foreground probability must be (H, W), got shape {prob.shape}")
    components, count = ndimage.label(prob > threshold, structure=np.ones((3, 3), bool))
    if count == 0:
        return InstanceProposals.empty(*prob.shape)
    index = np.arange(1, count + 1)
    areas = np.bincount(components.reshape(-1), minlength=count + 1)[1:]
    means = np.asarray(ndimage.mean(prob, components, index), dtype=np.float32)
    keep = [i for i in np.argsort(-areas, kind="stable") if areas[i] >= min_area_pixels][:max_instances]
    masks = components[None] == index[keep][:, None, None]
    return InstanceProposals(masks, means[keep], np.full(len(keep), predicted_iou, np.float32))


@dataclass
class _Track:
    track_id: int
    crop: np.ndarray  # last observed mask, cropped to its bounding box
    top: int
    left: int
    centroid: tuple[float, float]
    motion: float  # smoothed motion probability
    state: MotionState
    predicted_iou: float
    velocity: tuple[float, float] = (0.0, 0.0)  # smoothed centroid displacement per frame (dy, dx)
    missed: int = 0
    age: int = 1
    # the object's recent full size: the area, decaying by REF_AREA_DECAY per matched frame unless a larger mask
    # renews it. An object that stops fades out of a GMOS-S mask over a few frames, so its last mask is often a
    # fragment; re-identification compares a returning object with this as well as with the last mask.
    ref_area: float = 0.0

    @property
    def area(self) -> int:
        return int(self.crop.sum())

    def predicted_origin(self, predict: bool) -> tuple[int, int]:
        if not predict:
            return self.top, self.left
        steps = self.missed + 1
        return (self.top + int(round(self.velocity[0] * steps)), self.left + int(round(self.velocity[1] * steps)))


@dataclass
class TrackerFrameOutput:
    """Tracking result of one frame.

    labels:   (H, W) uint16, track_id + 1 on the pixels of every track seen on this frame (0 = background)
    info:     {instance_id: {"track_id", "state", "motion_prob", "predicted_iou"}} for those tracks
    moving:   (H, W) bool, pixels of the tracks that are moving on this frame
    new_track_ids / removed_track_ids: tracks born on / dropped after this frame
    """

    labels: np.ndarray
    info: dict
    moving: np.ndarray
    new_track_ids: list = field(default_factory=list)
    removed_track_ids: list = field(default_factory=list)


def _bbox(mask: np.ndarray) -> Optional[tuple[int, int, int, int]]:
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _centroid(mask: np.ndarray, top: int = 0, left: int = 0) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(ys.mean()) + top, float(xs.mean()) + left


class IouTracker:
    """Call :meth:`step` once per segmented frame, in order; :meth:`reset` after a discontinuity."""

    def __init__(self, config: Optional[IouTrackerConfig] = None) -> None:
        import scipy.optimize  # noqa: F401  (about 1 s to import: paid here, not on the first frame)

        self.config = config or IouTrackerConfig()
        self.reset()

    def reset(self) -> None:
        self._tracks: list[_Track] = []
        self._next_id = 0
        self.frames_seen = 0

    @property
    def track_ids(self) -> list[int]:
        return [t.track_id for t in self._tracks]

    def retained_state_size(self) -> dict[str, int]:
        """What the tracker holds (for the engine's memory checks): bounded by max_tracks."""
        return {"tracks": len(self._tracks), "mask_pixels": int(sum(t.crop.size for t in self._tracks))}

    # ------------------------------------------------------------------ per frame
    def step(self, proposals: InstanceProposals) -> TrackerFrameOutput:
        cfg = self.config
        height, width = proposals.masks.shape[1:]
        self.frames_seen += 1
        areas = proposals.masks.reshape(len(proposals.masks), height * width).sum(1)
        keep = np.flatnonzero(areas >= max(1, math.ceil(cfg.min_area_fraction * height * width)))
        masks, motions, ious = proposals.masks[keep], proposals.motions[keep], proposals.ious[keep]
        areas = areas[keep]
        boxes = [_bbox(m) for m in masks]
        if cfg.split_cover > 0 and len(masks) and len(self._tracks) >= 2:
            split = self._split_merged(masks, motions, ious, boxes)
            if split[0] is not masks:  # something was split: the parts need their own areas and boxes
                masks, motions, ious = split
                areas = masks.reshape(len(masks), height * width).sum(1)
                boxes = [_bbox(m) for m in masks]

        iou = self._iou_matrix(masks, boxes, areas)
        matched: dict[int, int] = {}  # proposal -> track position
        if iou.size:
            from scipy.optimize import linear_sum_assignment

            rows, cols = linear_sum_assignment(-iou)
            matched = {int(r): int(c) for r, c in zip(rows, cols) if iou[r, c] >= cfg.match_iou}
        if cfg.reid_distance > 0:
            matched.update(self._reidentify(masks, boxes, areas, matched))

        seen: list[tuple[_Track, np.ndarray]] = []
        matched_tracks = set(matched.values())
        born = []  # tracks output for the first time on this frame
        for p, position in matched.items():
            track = self._tracks[position]
            self._update(track, masks[p], boxes[p], float(motions[p]), float(ious[p]))
            if track.age >= cfg.confirm_frames:
                seen.append((track, masks[p]))
                if track.age == cfg.confirm_frames:
                    born.append(track.track_id)
        removed = []
        survivors = []
        for position, track in enumerate(self._tracks):
            if position not in matched_tracks:
                track.missed += 1
                confirmed = track.age >= cfg.confirm_frames
                if not confirmed or track.missed > cfg.max_missed_frames:
                    if confirmed:
                        removed.append(track.track_id)
                    continue
            survivors.append(track)
        self._tracks = survivors
        for p in range(len(masks)):
            if p in matched or len(self._tracks) >= cfg.max_tracks:
                continue
            if motions[p] > cfg.birth_motion and (cfg.birth_min_iou == 0 or ious[p] > cfg.birth_min_iou):
                track = self._birth(masks[p], boxes[p], float(motions[p]), float(ious[p]))
                if cfg.confirm_frames == 1:
                    born.append(track.track_id)
                    seen.append((track, masks[p]))

        labels = np.zeros((height, width), np.uint16)
        moving_ids = np.zeros(MAX_TRACK_ID + 2, bool)  # lookup: label value -> moving on this frame
        info = {}
        for track, mask in seen:
            instance_id = track.track_id + 1
            labels[mask] = instance_id
            moving_ids[instance_id] = track.state == MotionState.MOVING
            info[instance_id] = {"track_id": track.track_id, "state": track.state,
                                 "motion_prob": track.motion, "predicted_iou": track.predicted_iou}
        return TrackerFrameOutput(labels, info, moving_ids[labels], born, removed)

    # ------------------------------------------------------------------ internals
    def _iou_matrix(self, masks: np.ndarray, boxes, areas) -> np.ndarray:
        """(proposals, tracks) mask IoU against each track's predicted (shifted) mask; computed on bounding-box
        overlaps only."""
        iou = np.zeros((len(masks), len(self._tracks)), np.float64)
        height, width = masks.shape[1:]
        for j, track in enumerate(self._tracks):
            top, left = track.predicted_origin(self.config.predict_motion)
            bottom, right = top + track.crop.shape[0], left + track.crop.shape[1]
            track_area = track.area
            for i, box in enumerate(boxes):
                y0, x0 = max(top, box[0], 0), max(left, box[1], 0)
                y1, x1 = min(bottom, box[2], height), min(right, box[3], width)
                if y0 >= y1 or x0 >= x1:
                    continue
                inter = int(np.count_nonzero(masks[i, y0:y1, x0:x1]
                                             & track.crop[y0 - top:y1 - top, x0 - left:x1 - left]))
                if inter:
                    iou[i, j] = inter / float(areas[i] + track_area - inter)
        return iou

    def _split_merged(self, masks: np.ndarray, motions: np.ndarray, ious: np.ndarray, boxes):
        """Proposals that cover two or more recently seen tracks -> one proposal per track.

        Why: a foreground map has no instances; two moving objects that touch or overlap become one connected
        component, and the IoU step would give it to one track and leave the other object unlabelled for as
        long as they touch (on the validation clips, 157 of the 683 moving (frame, object) pairs without a
        prediction were covered by another object's merged mask). Each pixel goes to the track whose predicted
        mask is nearest (inside a predicted mask: distance 0; inside two: the older track)."""
        from scipy import ndimage

        cfg = self.config
        height, width = masks.shape[1:]
        placed = [(track, *track.predicted_origin(cfg.predict_motion)) for track in self._tracks
                  if track.missed <= cfg.split_max_missed and track.age >= max(cfg.split_min_age, cfg.confirm_frames)]
        if len(placed) < 2:
            return masks, motions, ious
        out_masks, out_motions, out_ious = [], [], []
        for i, mask in enumerate(masks):
            y0, x0, y1, x1 = boxes[i]
            seeds = []
            for track, top, left in placed:
                crop = track.crop
                ty0, tx0 = max(top, y0), max(left, x0)
                ty1, tx1 = min(top + crop.shape[0], y1), min(left + crop.shape[1], x1)
                if ty0 >= ty1 or tx0 >= tx1:
                    continue
                seed = np.zeros((y1 - y0, x1 - x0), bool)
                seed[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0] = crop[ty0 - top:ty1 - top, tx0 - left:tx1 - left]
                if np.count_nonzero(seed & mask[y0:y1, x0:x1]) >= cfg.split_cover * max(1, track.area):
                    seeds.append(seed)
            if len(seeds) < 2:
                out_masks.append(mask)
                out_motions.append(motions[i])
                out_ious.append(ious[i])
                continue
            distance = np.stack([ndimage.distance_transform_edt(~seed) for seed in seeds])
            owner = np.argmin(distance, axis=0)
            for k in range(len(seeds)):
                part = np.zeros((height, width), bool)
                part[y0:y1, x0:x1] = mask[y0:y1, x0:x1] & (owner == k)
                if part.any():
                    out_masks.append(part)
                    out_motions.append(motions[i])
                    out_ious.append(ious[i])
        if len(out_masks) == len(masks):
            return masks, motions, ious
        return np.stack(out_masks), np.asarray(out_motions, np.float32), np.asarray(out_ious, np.float32)

    def _reidentify(self, masks: np.ndarray, boxes, areas, matched: dict[int, int]) -> dict[int, int]:
        """Proposals the IoU step left unmatched -> lost tracks (missed >= 1) by centroid distance.

        Why: an object that stops leaves no foreground (GMOS-S and the refiner mark only what moves), and one
        that is occluded leaves none either; when it moves again or reappears, its mask rarely overlaps the
        track's last mask shifted by a velocity measured before the stop, so the IoU step would give it a new
        id, and MOS-I matches one prediction id per object for the whole sequence."""
        cfg = self.config
        used = set(matched.values())
        free_props = [i for i in range(len(masks)) if i not in matched]
        lost = [j for j, t in enumerate(self._tracks) if t.missed >= 1 and j not in used]
        if not free_props or not lost:
            return {}
        # per lost track, once: its areas (last mask, recent full size) and its last and predicted centroids
        candidates = []
        for j in lost:
            track = self._tracks[j]
            top, left = track.predicted_origin(cfg.predict_motion)
            predicted = (track.centroid[0] + top - track.top, track.centroid[1] + left - track.left)
            candidates.append(((float(track.area), track.ref_area), (track.centroid, predicted)))
        cost = np.full((len(free_props), len(lost)), np.inf)
        max_shift = cfg.reid_max_shift * min(masks.shape[1:])
        for a, i in enumerate(free_props):
            y0, x0, y1, x1 = boxes[i]
            centroid = _centroid(masks[i, y0:y1, x0:x1], y0, x0)
            area = float(areas[i])
            for b, (track_areas, track_centroids) in enumerate(candidates):
                if min(max(area, ref) / max(1.0, min(area, ref)) for ref in track_areas) > cfg.reid_area_ratio:
                    continue
                scale = math.sqrt(max(area, *track_areas))
                shift = min(math.dist(centroid, c) for c in track_centroids)
                if shift <= cfg.reid_distance * scale and shift <= max_shift:
                    cost[a, b] = shift / scale
        if not np.isfinite(cost).any():
            return {}
        from scipy.optimize import linear_sum_assignment

        finite = np.where(np.isfinite(cost), cost, 1e9)
        rows, cols = linear_sum_assignment(finite)
        return {free_props[r]: lost[c] for r, c in zip(rows, cols) if np.isfinite(cost[r, c])}

    def _smooth_state(self, track: _Track, motion: float) -> None:
        cfg = self.config
        track.motion = cfg.motion_smoothing * motion + (1.0 - cfg.motion_smoothing) * track.motion
        if track.state == MotionState.MOVING and track.motion < cfg.moving_off:
            track.state = MotionState.STATIC
        elif track.state != MotionState.MOVING and track.motion > cfg.moving_on:
            track.state = MotionState.MOVING

    def _update(self, track: _Track, mask: np.ndarray, box, motion: float, iou: float) -> None:
        y0, x0, y1, x1 = box
        centroid = _centroid(mask[y0:y1, x0:x1], y0, x0)
        steps = track.missed + 1
        shift = ((centroid[0] - track.centroid[0]) / steps, (centroid[1] - track.centroid[1]) / steps)
        track.velocity = shift if track.age == 1 else tuple(0.5 * v + 0.5 * s for v, s in zip(track.velocity, shift))
        track.crop, track.top, track.left, track.centroid = mask[y0:y1, x0:x1].copy(), y0, x0, centroid
        track.ref_area = max(float(track.area), REF_AREA_DECAY * track.ref_area)
        track.predicted_iou = iou
        track.missed = 0
        track.age += 1
        self._smooth_state(track, motion)

    def _birth(self, mask: np.ndarray, box, motion: float, iou: float) -> _Track:
        y0, x0, y1, x1 = box
        alive = {t.track_id for t in self._tracks}
        while self._next_id in alive:  # only after a wrap-around
            self._next_id = (self._next_id + 1) % (MAX_TRACK_ID + 1)
        track = _Track(track_id=self._next_id, crop=mask[y0:y1, x0:x1].copy(), top=y0, left=x0,
                       centroid=_centroid(mask[y0:y1, x0:x1], y0, x0), motion=motion,
                       state=MotionState.MOVING if motion > self.config.moving_on else MotionState.STATIC,
                       predicted_iou=iou)
        track.ref_area = float(track.area)  # its full size so far
        self._next_id = (self._next_id + 1) % (MAX_TRACK_ID + 1)
        self._tracks.append(track)
        return track
