"""Readers for the layouts the evaluator accepts.

* DAVIS-style folders: ``<root>/<sequence>/<frame>.png``, palette-indexed ("P") or 8-bit ("L") PNGs whose
  values are object ids (0 background, 255 void in DAVIS annotations).
* GMOS-2K time annotations: ``time_annotation.csv`` (``seq_name, time_anno, ann_frames, vid_frames,
  dataset, split``); the GMOS-2K file is bundled as ``gmos_core/metrics/data/gmos2k_time_annotation.csv``.
* ``gmos infer`` outputs: ``<out>/{mos-i_frame,mos_frame,frame,prob}/<sequence>/NNNNN.png``; the root or
  the sub-folder may be given.
"""
from __future__ import annotations

import ast
import csv
from collections import OrderedDict
from pathlib import Path

import numpy as np

__all__ = [
    "EvaluationInputError",
    "DEFAULT_TIME_ANNOTATION",
    "MOS_I_DATASETS",
    "read_label_png",
    "list_frames",
    "load_time_annotations",
    "resolve_prediction_dir",
    "list_sequences",
]

DEFAULT_TIME_ANNOTATION = Path(__file__).resolve().parent / "data" / "gmos2k_time_annotation.csv"
#: MOS-I benchmark names -> value of the CSV's ``dataset`` column (the split is always ``test``).
MOS_I_DATASETS = {"davis17-im": "davis", "ytvos19-im": "ytvos"}
#: Sub-folders written by ``gmos infer``, per protocol, in order of preference.
PREDICTION_SUBDIRS = {
    "mos-i": ("mos-i_frame",),
    "mos": ("mos_frame",),
    "uvos": ("mos_frame",),
    "fgbg": ("frame", "prob"),
}


class EvaluationInputError(ValueError):
    """Input files or folders that cannot be evaluated (missing, unreadable, inconsistent)."""


def read_label_png(path: str | Path) -> np.ndarray:
    """Read an indexed label PNG as an (H, W) integer array of ids.

    Palette ("P") and grayscale ("L", "I;16", "I") images are accepted; their stored values are the ids.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode not in ("P", "L", "I;16", "I"):
                raise EvaluationInputError(
                    f"{path}: PNG mode {mode!r}; expected a palette-indexed ('P') or single-channel ('L') label "
                    "image whose pixel values are object ids"
                )
            arr = np.asarray(img)
    except FileNotFoundError:
        raise EvaluationInputError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise EvaluationInputError(f"{path}: unreadable PNG ({exc})") from None
    if arr.ndim != 2:
        raise EvaluationInputError(f"{path}: expected a 2-D label image, got shape {arr.shape}")
    return arr


def list_frames(folder: str | Path, what: str = "frames") -> list[Path]:
    """PNG files of a sequence folder, sorted by name (the official order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationInputError(f"missing {what} folder {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())


def load_time_annotations(
    csv_path: str | Path | None = None, dataset: str | None = None
) -> "OrderedDict[str, dict[str, list[list[int]]]]":
    """Sequences to evaluate and their motion intervals, filtered like the official MOS-I script.

    dataset: ``davis17-im`` / ``ytvos19-im`` keep rows of that dataset (when the CSV has a ``dataset``
    column) and of split ``test`` (when it has ``split``); any other name keeps every row.  Rows whose
    annotation is empty (``{}``) are dropped in all cases.  Returns ``{seq_name: {'id': [[s, e], ...]}}``
    in CSV order.
    """
    path = Path(csv_path) if csv_path is not None else DEFAULT_TIME_ANNOTATION
    if not path.is_file():
        raise EvaluationInputError(f"time annotation CSV not found: {path}")
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            for needed in ("seq_name", "time_anno"):
                if needed not in columns:
                    raise EvaluationInputError(f"{path}: column {needed!r} missing (columns: {columns})")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise EvaluationInputError(f"{path}: not a readable CSV ({exc}); expected a UTF-8 CSV with columns "
                                   "seq_name and time_anno") from exc
    wanted = MOS_I_DATASETS.get(dataset or "")
    out: OrderedDict[str, dict] = OrderedDict()
    for line, row in enumerate(rows, start=2):
        if wanted is not None:
            if "dataset" in columns and row["dataset"] != wanted:
                continue
            if "split" in columns and row["split"] != "test":
                continue
        try:
            anno = ast.literal_eval(row["time_anno"])
        except (ValueError, SyntaxError) as exc:
            raise EvaluationInputError(
                f"{path}:{line}: time_anno {row['time_anno']!r} is not a Python-literal dict ({exc})"
            ) from None
        if not isinstance(anno, dict):
            raise EvaluationInputError(f"{path}:{line}: time_anno must be a dict, got {type(anno).__name__}")
        if not anno:
            continue
        out[row["seq_name"]] = {str(k): [list(map(int, r)) for r in v] for k, v in anno.items()}
    return out


def resolve_prediction_dir(pred: str | Path, protocol: str) -> Path:
    """The folder holding ``<sequence>/`` sub-folders: ``pred`` itself or its ``gmos infer`` sub-folder."""
    pred = Path(pred)
    if not pred.is_dir():
        raise EvaluationInputError(f"prediction folder not found: {pred}")
    for sub in PREDICTION_SUBDIRS.get(protocol, ()):
        if (pred / sub).is_dir():
            return pred / sub
    return pred


def list_sequences(root: str | Path) -> list[str]:
    """Sequence sub-folders of an annotation root, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise EvaluationInputError(f"annotation folder not found: {root}")
    return sorted(p.name for p in root.iterdir() if p.is_dir())
