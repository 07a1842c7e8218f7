"""Training samples: windows of frames around an annotated query frame, with per-object moving targets.

Sources (all yield the same sample layout):

* :class:`FolderSequence` -- GMOS-2K layout (palette-PNG annotations + ``time_annotation.csv``), generic
  DAVIS / YTVOS folders (no time annotation: every annotated object counts as moving -- the DAVIS unsupervised
  convention), and the generator's on-disk output (``JPEGImages/`` + ``Annotations/`` + ``time_annotation.csv``
  + ``sequences.json`` for the frame rate).
* :class:`StaticSequence` -- static-scene clips (camera moves, nothing else does): frames only, every target empty.
* :class:`SyntheticSequence` -- the procedural generator rendered on the fly (only the frames of the window).

Windows are sampled by time, as in the paper: window length uniform in [0.16 s, 1.0 s] (fixed 0.5 s for
validation), ``window_size`` (5) frames spread uniformly over it, the query frame at the centre (``center``)
or at the end (``end``, a zero-look-ahead model); times are converted to frame indices with the sequence's frame
rate and clamped to the clip (edge replication, as at inference).

Targets (query frame): every annotated object *visible* at that frame is a target with motion state m (1 if the
time annotation says it moves at that frame); its target mask is its mask if m = 1 and empty if m = 0.  Masks are
resized to the head's output grid (SAM 2 input stretched to a square, /4).
"""
from __future__ import annotations

import ast
import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

WINDOW_SECONDS_RANGE = (0.16, 1.0)
INFERENCE_WINDOW_SECONDS = 0.5
VOID_LABEL = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class DatasetError(ValueError):
    """A dataset folder or file that cannot be used (named, with what was expected)."""


# ---------------------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowSpec:
    window_size: int = 5
    anchor: str = "center"
    seconds_range: tuple = WINDOW_SECONDS_RANGE
    fixed_seconds: Optional[float] = None   # validation: INFERENCE_WINDOW_SECONDS

    def __post_init__(self) -> None:
        if self.anchor not in ("center", "end"):
            raise ValueError(f"window anchor must be 'center' or 'end', got {self.anchor!r}")
        lo, hi = self.seconds_range
        if not 0 < lo <= hi:
            raise ValueError(f"window seconds range must satisfy 0 < low <= high, got {self.seconds_range}")

    def seconds(self, rng: np.random.Generator) -> float:
        if self.fixed_seconds is not None:
            return float(self.fixed_seconds)
        return float(rng.uniform(*self.seconds_range))

    @property
    def anchor_position(self) -> int:
        return self.window_size // 2 if self.anchor == "center" else self.window_size - 1


def window_frame_indices(query: int, num_frames: int, fps: float, seconds: float, window_size: int = 5,
                         anchor: str = "center") -> list[int]:
    """Frame indices of a ``seconds``-long window of ``window_size`` frames around (centre) or ending at (end)
    frame ``query``; rounded to the nearest frame and clamped to [0, num_frames - 1]."""
    if window_size == 1:
        return [int(query)]
    fractions = np.linspace(0.0, 1.0, window_size)
    offsets = (fractions - 0.5) * seconds if anchor == "center" else (fractions - 1.0) * seconds
    idx = np.floor(query + offsets * fps + 0.5).astype(int)
    idx[len(idx) // 2 if anchor == "center" else -1] = query  # exact anchor despite rounding
    return np.clip(idx, 0, num_frames - 1).tolist()


# ---------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class SampleGeometry:
    """Input sizes: frames resized to ``frame_size`` (W, H) first (None: native; batches then need equal sizes),
    Pi3 size from the pixel budget, SAM 2 square input ``image_size``, target masks at ``image_size / 4``."""

    image_size: int = 1024
    pixel_limit: int = 255000
    frame_size: Optional[tuple] = None
    max_objects: int = 20

    @property
    def mask_size(self) -> int:
        return self.image_size // 4

    def pi3_hw(self, width: int, height: int) -> tuple[int, int]:
        from gmos_core.preprocess import pi3_target_size

        return tuple(pi3_target_size(int(width), int(height), pixel_limit=self.pixel_limit))


def _resize_labels(labels: np.ndarray, size: int, ids: Sequence[int]) -> np.ndarray:
    """(len(ids), size, size) float32 binary masks, area-resampled then thresholded at 0.5."""
    import cv2

    out = np.zeros((len(ids), size, size), np.float32)
    for i, obj in enumerate(ids):
        m = (labels == obj).astype(np.float32)
        out[i] = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA) >= 0.5
    return out


def make_sample(frames: np.ndarray, labels: np.ndarray, moving: dict, geometry: SampleGeometry,
                anchor_position: int, name: str = "", query: int = 0) -> dict:
    """One training sample (numpy arrays; the collate turns them into tensors).

    frames (N, H, W, 3) uint8 window; labels (H, W) ids of the query frame; moving {id: bool} at the query frame.
    """
    import cv2
    import torch

    from gmos_core.preprocess import pi3_resize, sam2_image_tensor

    if geometry.frame_size is not None:
        w, h = geometry.frame_size
        if frames.shape[1:3] != (h, w):
            frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
            labels = cv2.resize(labels.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    H, W = frames.shape[1:3]
    pi3_hw = geometry.pi3_hw(W, H)
    pi3 = np.stack([pi3_resize(f, pi3_hw) for f in frames]).transpose(0, 3, 1, 2)
    sam = sam2_image_tensor(frames[anchor_position], geometry.image_size).numpy()
    ids = [int(i) for i in np.unique(labels) if 0 < i < VOID_LABEL]
    ids = ids[: geometry.max_objects]
    full = _resize_labels(labels, geometry.mask_size, ids)
    visible = full.reshape(len(ids), -1).any(1) if ids else np.zeros(0, bool)
    ids = [i for i, v in zip(ids, visible) if v]
    full = full[visible] if len(visible) else full
    M = geometry.max_objects
    masks = np.zeros((M, geometry.mask_size, geometry.mask_size), np.float32)
    motion = np.zeros(M, np.float32)
    valid = np.zeros(M, bool)
    for k, obj in enumerate(ids):
        m = bool(moving.get(obj, False))
        motion[k] = float(m)
        valid[k] = True
        if m:
            masks[k] = full[k]
    fg = masks[valid].max(0, keepdims=True) if valid.any() else np.zeros((1,) + masks.shape[1:], np.float32)
    return {"pi3": torch.from_numpy(np.ascontiguousarray(pi3)), "sam": torch.from_numpy(sam),
            "masks": torch.from_numpy(masks), "motion": torch.from_numpy(motion), "valid": torch.from_numpy(valid),
            "fg": torch.from_numpy(fg), "name": name, "query": int(query)}


# ---------------------------------------------------------------------------------------------- sources


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"{path}: unreadable image; expected a JPEG/PNG frame")
    return img[..., ::-1].copy()


def moving_flags(time_anno: Optional[dict], num_ann: int) -> dict[int, np.ndarray]:
    """{object id: (num_ann,) bool} from a GMOS-2K time annotation (inclusive ranges of annotated frames)."""
    out: dict[int, np.ndarray] = {}
    for key, ranges in (time_anno or {}).items():
        flags = np.zeros(num_ann, bool)
        for start, end in ranges:
            flags[int(start):int(end) + 1] = True
        out[int(key)] = flags
    return out


class SequenceSource:
    """Interface: ``name``, ``fps``, ``num_frames`` (video frames), ``query_frames`` (video indices of the
    annotated frames) and ``window(indices, query_slot) -> (frames (N,H,W,3), labels (H,W), moving {id: bool})``
    where ``query_slot`` indexes ``query_frames``."""

    name: str
    fps: float
    num_frames: int
    query_frames: list

    def window(self, indices: Sequence[int], query_slot: int):  # pragma: no cover - interface
        raise NotImplementedError


class FolderSequence(SequenceSource):
    """Frames folder + palette-PNG annotation folder (+ time annotation).  ``time_anno=None``: every annotated
    object is moving at every annotated frame (DAVIS/YTVOS semantics)."""

    def __init__(self, frames_dir: Path, anno_dir: Path, fps: float, time_anno: Optional[dict] = None,
                 name: Optional[str] = None) -> None:
        self.frames_dir, self.anno_dir = Path(frames_dir), Path(anno_dir)
        self.name = name or self.frames_dir.name
        if not self.frames_dir.is_dir():
            raise DatasetError(f"sequence {self.name!r}: frames folder {self.frames_dir} not found")
        if not self.anno_dir.is_dir():
            raise DatasetError(f"sequence {self.name!r}: annotation folder {self.anno_dir} not found")
        self.frame_files = _image_files(self.frames_dir)
        self.anno_files = sorted(p for p in self.anno_dir.iterdir() if p.suffix.lower() == ".png")
        if not self.frame_files or not self.anno_files:
            raise DatasetError(f"sequence {self.name!r}: no frames in {self.frames_dir} or no PNGs in {self.anno_dir}")
        self.fps = float(fps)
        self.num_frames = len(self.frame_files)
        self.query_frames = self._map_annotations()
        self.time_anno = time_anno
        self.flags = moving_flags(time_anno, len(self.anno_files)) if time_anno is not None else None

    def _map_annotations(self) -> list[int]:
        # YTVOS-style: annotation 00005.png belongs to frame 00005.jpg; else proportional placement.
        stems = {p.stem: i for i, p in enumerate(self.frame_files)}
        if all(p.stem in stems for p in self.anno_files):
            return [stems[p.stem] for p in self.anno_files]
        ratio = self.num_frames / len(self.anno_files)
        return [min(self.num_frames - 1, int(round(i * ratio))) for i in range(len(self.anno_files))]

    def window(self, indices, query_slot):
        from gmos_core.metrics.readers import read_label_png

        frames = np.stack([_read_rgb(self.frame_files[i]) for i in indices])
        labels = read_label_png(self.anno_files[query_slot])
        if labels.shape != frames.shape[1:3]:
            import cv2

            labels = cv2.resize(labels.astype(np.uint8), (frames.shape[2], frames.shape[1]),
                                interpolation=cv2.INTER_NEAREST)
        if self.flags is None:
            moving = {int(i): True for i in np.unique(labels) if 0 < i < VOID_LABEL}
        else:
            moving = {k: bool(v[query_slot]) for k, v in self.flags.items() if query_slot < len(v)}
        return frames, labels, moving


class StaticSequence(SequenceSource):
    """A static-scene clip (frames folder or video file): nothing moves, every target is empty."""

    def __init__(self, source: Path, fps: Optional[float] = None, max_frames: int = 300) -> None:
        self.source = Path(source)
        self.name = self.source.stem if self.source.is_file() else self.source.name
        if self.source.is_dir():
            self.frame_files = _image_files(self.source)
            if not self.frame_files:
                raise DatasetError(f"static clip {self.source}: no JPEG/PNG frames")
            if fps is None:
                raise DatasetError(f"static clip {self.source}: a frames folder needs an fps in the dataset entry")
            self.num_frames = len(self.frame_files)
            self._video = None
            self.fps = float(fps)
        elif self.source.is_file():
            from gmos_core.io.video import video_info

            info = video_info(self.source)
            self.fps = float(fps or info.fps)
            self.frame_files = None
            self.num_frames = min(info.num_frames or max_frames, max_frames)
            self._video = None
        else:
            raise DatasetError(f"static clip {self.source}: not a frames folder or a video file")
        self.max_frames = max_frames
        self.query_frames = list(range(self.num_frames))

    def _frames(self) -> np.ndarray:
        if self._video is None:
            from gmos_core.io.video import read_video

            self._video = read_video(self.source, 0, self.max_frames)[0]  # decoded once per worker
            self.num_frames = len(self._video)
        return self._video

    def window(self, indices, query_slot):
        if self.frame_files is not None:
            frames = np.stack([_read_rgb(self.frame_files[i]) for i in indices])
        else:
            video = self._frames()
            frames = video[np.clip(indices, 0, len(video) - 1)]
        return frames, np.zeros(frames.shape[1:3], np.uint8), {}


@lru_cache(maxsize=64)
def _cached_scene(seed: int, config_key: str):
    from training import synthetic as syn

    cfg = syn.SyntheticConfig(**json.loads(config_key))
    return syn.sample_scene(seed, cfg)


class SyntheticSequence(SequenceSource):
    """One generator sequence, rendered on demand (only the window's frames)."""

    def __init__(self, seed: int, config) -> None:
        from dataclasses import asdict

        from training import synthetic as syn

        self.seed = int(seed)
        self.config = config
        cfg = asdict(config)
        if cfg.get("texture_videos") is not None:
            cfg["texture_videos"] = [str(p) for p in cfg["texture_videos"]]
        self._key = json.dumps(cfg, sort_keys=True)
        self.name = syn.sequence_name(seed)
        self.fps = float(config.fps)
        self.num_frames = int(config.num_frames)
        self.query_frames = list(range(self.num_frames))

    @property
    def scene(self):
        return _cached_scene(self.seed, self._key)

    def window(self, indices, query_slot):
        from training.synthetic import render_frame

        scene = self.scene
        rendered = {}
        for i in set(list(indices) + [query_slot]):
            rendered[i] = render_frame(scene, int(i))
        frames = np.stack([rendered[i][0] for i in indices])
        labels = rendered[query_slot][1]
        moving_matrix = scene.moving_matrix()
        moving = {k + 1: bool(moving_matrix[query_slot, k]) for k in range(moving_matrix.shape[1])}
        return frames, labels, moving


# ---------------------------------------------------------------------------------------------- datasets


class WindowDataset:
    """Map-style dataset over (sequence, annotated frame) pairs; a torch ``Dataset`` by duck typing.

    Window lengths are drawn from ``numpy.random.default_rng((seed, epoch, index))``: deterministic per
    sample and epoch, different across epochs (call :meth:`set_epoch`)."""

    def __init__(self, sequences: Sequence[SequenceSource], window: WindowSpec, geometry: SampleGeometry,
                 seed: int = 0, query_stride: int = 1) -> None:
        if not sequences:
            raise DatasetError("dataset has no sequences")
        self.sequences = list(sequences)
        self.window = window
        self.geometry = geometry
        self.seed = int(seed)
        self.epoch = 0
        self.items = [(s, q) for s, seq in enumerate(self.sequences)
                      for q in range(0, len(seq.query_frames), max(1, query_stride))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def window_indices(self, index: int) -> tuple[SequenceSource, int, list[int], float]:
        seq_index, slot = self.items[index]
        seq = self.sequences[seq_index]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        seconds = self.window.seconds(rng)
        query = seq.query_frames[slot]
        idx = window_frame_indices(query, seq.num_frames, seq.fps, seconds, self.window.window_size,
                                   self.window.anchor)
        return seq, slot, idx, seconds

    def __getitem__(self, index: int) -> dict:
        seq, slot, idx, seconds = self.window_indices(index)
        frames, labels, moving = seq.window(idx, slot)
        sample = make_sample(frames, labels, moving, self.geometry, self.window.anchor_position, seq.name,
                             seq.query_frames[slot])
        sample["seconds"] = seconds
        return sample


def collate(samples: list[dict]) -> dict:
    import torch

    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise DatasetError(f"cannot batch samples of different sizes for {key!r}: {sorted(shapes)}; set "
                                   "data.frame_size so every clip is resized to one size (or batch_size 1)")
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


# ---------------------------------------------------------------------------------------------- builders


def read_time_annotation_csv(path: Path, dataset: Optional[str] = None, split: Optional[str] = None) -> dict:
    """{seq_name: time_anno dict} of a GMOS-2K CSV, optionally filtered by the dataset / split columns
    (unlike the evaluator, rows with ``{}`` are kept: they are clips where nothing annotated moves)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"time annotation CSV not found: {path}")
    out = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "seq_name" not in reader.fieldnames or "time_anno" not in reader.fieldnames:
            raise DatasetError(f"{path}: expected a GMOS-2K CSV with columns seq_name, time_anno, ...")
        for line, row in enumerate(reader, start=2):
            if dataset and row.get("dataset", dataset) != dataset:
                continue
            if split and row.get("split", split) != split:
                continue
            try:
                anno = ast.literal_eval(row["time_anno"])
            except (ValueError, SyntaxError):
                raise DatasetError(f"{path}:{line}: time_anno {row['time_anno']!r} is not a Python-literal dict") from None
            out[row["seq_name"]] = anno
    return out


def _sequences_from_entry(entry: dict) -> list[SequenceSource]:
    kind = entry.get("kind")
    if kind == "synthetic":
        from training import synthetic as syn

        keys = {f for f in syn.SyntheticConfig.__dataclass_fields__}
        cfg = syn.SyntheticConfig(**{k: v for k, v in entry.items() if k in keys})
        seeds = syn.parse_seeds(str(entry.get("seeds", "0-99")))
        return [SyntheticSequence(s, cfg) for s in seeds]
    if kind in ("gmos2k", "davis", "folder"):
        root = Path(entry["root"]) if entry.get("root") else None
        frames = Path(entry.get("frames") or (root / "JPEGImages" if root else ""))
        annos = Path(entry.get("annotations") or (root / "Annotations" if root else ""))
        csv_path = entry.get("time_annotation") or (root / "time_annotation.csv" if root else None)
        if kind == "davis":
            csv_path = None
        per_seq_fps = {}
        if root is not None and (root / "sequences.json").is_file():
            per_seq_fps = {k: v.get("fps") for k, v in json.loads((root / "sequences.json").read_text())["sequences"].items()}
        fps = entry.get("fps")
        if not annos.is_dir():
            raise DatasetError(f"dataset entry {entry}: annotation folder {annos} not found")
        if not frames.is_dir():
            raise DatasetError(f"dataset entry {entry}: frames folder {frames} not found")
        if csv_path is not None and Path(csv_path).is_file():
            annotations = read_time_annotation_csv(Path(csv_path), entry.get("dataset"), entry.get("split"))
        elif kind == "gmos2k":
            raise DatasetError(f"dataset entry {entry}: time annotation CSV {csv_path} not found")
        else:
            annotations = None
        names = list(annotations) if annotations is not None else sorted(p.name for p in annos.iterdir() if p.is_dir())
        if entry.get("sequences"):
            names = [n for n in names if n in set(entry["sequences"])]
        out = []
        for name in names:
            seq_fps = per_seq_fps.get(name) or fps
            if seq_fps is None:
                raise DatasetError(f"dataset entry {entry}: no fps for sequence {name!r} (add 'fps' to the entry)")
            if not (annos / name).is_dir():
                raise DatasetError(f"dataset entry {entry}: sequence {name!r} of the CSV has no folder in {annos}")
            out.append(FolderSequence(frames / name, annos / name, seq_fps,
                                      None if annotations is None else annotations[name], name))
        return out
    if kind == "static":
        sources = []
        for item in entry.get("videos", []):
            p = Path(item)
            if p.is_dir() and not _image_files(p):
                sources.extend(sorted(q for q in p.iterdir() if q.is_dir() or q.suffix.lower() in (".mp4", ".mov", ".mkv", ".avi")))
            else:
                sources.append(p)
        return [StaticSequence(p, entry.get("fps")) for p in sources]
    raise DatasetError(f"dataset entry kind {kind!r} unknown; expected synthetic, gmos2k, davis, folder or static")


def build_dataset(entries: Sequence[dict], window: WindowSpec, geometry: SampleGeometry, seed: int = 0) -> WindowDataset:
    """One :class:`WindowDataset` over every sequence of the config entries (see docs/training.md)."""
    sequences: list[SequenceSource] = []
    stride = 1
    for entry in entries:
        if not isinstance(entry, dict):
            raise DatasetError(f"dataset entry {entry!r}: expected a mapping with a 'kind' key")
        sequences.extend(_sequences_from_entry(entry))
        stride = max(stride, int(entry.get("query_stride", 1)))
    return WindowDataset(sequences, window, geometry, seed, stride)
