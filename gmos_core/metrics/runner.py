"""Whole-benchmark evaluation from folders: sequences in parallel, progress bar, reports.

:func:`evaluate_mos_i_folders` reproduces ``benchmark_mos_i.py``; :func:`evaluate_davis_folders` the DAVIS 2017
evaluator (``mos``/``uvos``) and its foreground/background variant (``fgbg``).  Sequences are independent, so
they run in a process pool (``workers``); results come back in sequence order.
"""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from gmos_core.metrics.davis import (
    DavisAggregate,
    DavisSequenceResult,
    aggregate_davis,
    evaluate_davis_sequence,
)
from gmos_core.metrics.mos_i import (
    MosIAggregate,
    MosISequenceResult,
    aggregate_mos_i,
    format_mos_i_report,
    frame_table,
    score_mos_i_sequence,
)
from gmos_core.metrics.readers import (
    EvaluationInputError,
    list_frames,
    read_label_png,
)

__all__ = [
    "MosIReport",
    "DavisReport",
    "evaluate_mos_i_sequence_dir",
    "evaluate_mos_i_folders",
    "evaluate_davis_sequence_dir",
    "evaluate_davis_folders",
]

MOTION_SUFFIX = "___motion.npy"


@dataclass
class MosIReport:
    dataset: str
    results: list[MosISequenceResult]
    slhm: MosIAggregate
    flhm: MosIAggregate | None = None
    notes: list[str] = field(default_factory=list)

    def printed(self, verbose: bool = True) -> str:
        return format_mos_i_report(self.dataset, self.results, self.slhm, self.flhm, verbose)

    def to_dict(self) -> dict:
        out = {
            "protocol": "mos-i",
            "dataset": self.dataset,
            "sequences": [r.name for r in self.results],
            "aggregate": {"slhm": self.slhm.summary()},
            "per_sequence": {r.name: r.summary() for r in self.results},
            "notes": list(self.notes),
        }
        if self.flhm is not None:
            out["aggregate"]["flhm"] = self.flhm.summary()
        return out


@dataclass
class DavisReport:
    protocol: str
    dataset: str
    convention: str
    results: list[DavisSequenceResult]
    aggregate: DavisAggregate
    notes: list[str] = field(default_factory=list)

    def printed(self) -> str:
        a = self.aggregate
        head = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
        vals = [a.jf_mean, a.j_mean, a.j_recall, a.j_decay, a.f_mean, a.f_recall, a.f_decay]
        lines = [
            f"Dataset: {self.dataset}, protocol {self.protocol} ({self.convention} convention), "
            f"{len(self.results)} sequences, {a.n_objects} objects",
            "--------------------------- Global results ---------------------------",
            " ".join(f"{h:>9}" for h in head),
            " ".join(f"{v:>9.3f}" for v in vals),
            "",
            "---------------------- Per-object results -----------------------",
            f"{'Sequence':<32} {'J-Mean':>8} {'F-Mean':>8}",
        ]
        for r in self.results:
            for o in r.objects:
                lines.append(f"{r.name + '_' + str(o.object_id):<32} {o.j_stats[0]:>8.3f} {o.f_stats[0]:>8.3f}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "dataset": self.dataset,
            "convention": self.convention,
            "sequences": [r.name for r in self.results],
            "aggregate": self.aggregate.summary(),
            "per_sequence": {r.name: r.summary() for r in self.results},
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------- MOS-I


def evaluate_mos_i_sequence_dir(
    name: str,
    pred_root: str | Path,
    anno_root: str | Path,
    time_anno: Mapping,
    frame_level: bool = False,
    strict_frames: bool = False,
) -> MosISequenceResult:
    """MOS-I of one sequence from ``<anno_root>/<name>/`` and ``<pred_root>/<name>/`` (+ optional motion npy)."""
    pred_root, anno_root = Path(pred_root), Path(anno_root)
    gt_files = list_frames(anno_root / name, f"annotation (sequence {name!r})")
    pred_files = list_frames(pred_root / name, f"prediction (sequence {name!r})")
    if not gt_files:
        raise EvaluationInputError(f"sequence {name!r}: no PNG files in {anno_root / name}")
    if not pred_files:
        raise EvaluationInputError(f"sequence {name!r}: no PNG files in {pred_root / name}")
    if strict_frames and len(gt_files) != len(pred_files):
        raise EvaluationInputError(
            f"sequence {name!r}: {len(gt_files)} annotation PNGs in {anno_root / name} but {len(pred_files)} "
            f"prediction PNGs in {pred_root / name} (--strict-frames; the official script evaluates the first "
            "min(#GT, #pred) frames)"
        )
    n = min(len(gt_files), len(pred_files))
    tables = []
    for i in range(n):
        gt = read_label_png(gt_files[i])
        pred = read_label_png(pred_files[i])
        tables.append(frame_table(gt, pred, f"sequence {name!r} frame {gt_files[i].name}/{pred_files[i].name}"))
    motion_path = pred_root / f"{name}{MOTION_SUFFIX}"
    motion = None
    if motion_path.is_file():
        try:
            motion = np.load(motion_path, allow_pickle=False)
        except ValueError as exc:
            raise EvaluationInputError(f"{motion_path}: not a plain numpy array ({exc})") from None
    return score_mos_i_sequence(
        tables, time_anno, motion, frame_level, name, len(gt_files), len(pred_files)
    )


def _mos_i_job(job: tuple) -> MosISequenceResult:
    return evaluate_mos_i_sequence_dir(*job)


def _run_jobs(fn: Callable, jobs: list[tuple], workers: int, progress: bool, desc: str) -> list:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="seq", disable=not progress, leave=False)
    results = []
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(fn(job))
                bar.update(1)
        else:
            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
            with ctx.Pool(processes=min(workers, len(jobs))) as pool:
                for res in pool.imap(fn, jobs, chunksize=1):
                    results.append(res)
                    bar.update(1)
    finally:
        bar.close()
    return results


def evaluate_mos_i_folders(
    pred_dir: str | Path,
    anno_dir: str | Path,
    time_annotations: Mapping[str, Mapping],
    dataset: str = "custom",
    frame_level: bool = False,
    workers: int = 1,
    progress: bool = True,
    strict_frames: bool = False,
) -> MosIReport:
    """Evaluate every sequence of ``time_annotations`` (CSV order) like ``benchmark_mos_i.py``."""
    pred_dir, anno_dir = Path(pred_dir), Path(anno_dir)
    if not time_annotations:
        raise EvaluationInputError(
            f"no sequences to evaluate: the time annotation has no non-empty rows for dataset {dataset!r}"
        )
    missing = [s for s in time_annotations if not (pred_dir / s).is_dir()]
    if missing:
        raise EvaluationInputError(
            f"{len(missing)} sequence folder(s) of the time annotation missing under the predictions {pred_dir}: "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    missing = [s for s in time_annotations if not (anno_dir / s).is_dir()]
    if missing:
        raise EvaluationInputError(
            f"{len(missing)} sequence folder(s) of the time annotation missing under the annotations {anno_dir}: "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    jobs = [(s, pred_dir, anno_dir, dict(a), frame_level, strict_frames) for s, a in time_annotations.items()]
    results = _run_jobs(_mos_i_job, jobs, workers, progress, "MOS-I")
    notes = [
        f"{r.name}: {r.n_gt_frames} annotated vs {r.n_pred_frames} predicted frames, evaluated the first {r.n_frames}"
        for r in results
        if r.n_gt_frames != r.n_pred_frames
    ]
    slhm = aggregate_mos_i(r.slhm for r in results)
    flhm = aggregate_mos_i(r.flhm for r in results) if frame_level else None
    return MosIReport(dataset, results, slhm, flhm, notes)


# --------------------------------------------------------------------------------------- DAVIS-style


def _fgbg_map(arr: np.ndarray, is_prob: bool) -> np.ndarray:
    if is_prob:
        # prob PNGs store uint8(prob * 255) truncated: prob > 0.5 <=> value >= 128 except for values
        # 127.5/255 < prob < 128/255, which truncate to 127 and are therefore read as background.
        return (arr >= 128).astype(np.uint8)
    return (arr > 0).astype(np.uint8)


def evaluate_davis_sequence_dir(
    name: str,
    pred_root: str | Path,
    anno_root: str | Path,
    convention: str = "unsupervised",
    fgbg: bool = False,
    objects_from_first_frame: bool = True,
) -> DavisSequenceResult:
    """J/F of one sequence; frames are paired by file name (every annotated frame needs a prediction)."""
    pred_root, anno_root = Path(pred_root), Path(anno_root)
    gt_files = list_frames(anno_root / name, f"annotation (sequence {name!r})")
    if not gt_files:
        raise EvaluationInputError(f"sequence {name!r}: no PNG files in {anno_root / name}")
    pred_dir = pred_root / name
    pred_names = {p.name for p in list_frames(pred_dir, f"prediction (sequence {name!r})")}
    missing = [p.name for p in gt_files if p.name not in pred_names]
    if missing:
        raise EvaluationInputError(
            f"sequence {name!r}: {len(missing)} of the {len(gt_files)} annotated frames have no prediction with the "
            f"same file name in {pred_dir} ({len(pred_names)} PNGs there; first missing: {missing[:3]})"
        )
    is_prob = pred_root.name == "prob"
    gts, preds = [], []
    for g in gt_files:
        gt = read_label_png(g)
        pred = read_label_png(pred_dir / g.name)
        if fgbg:
            gt = ((gt > 0) & (gt != 255)).astype(np.uint8)
            pred = _fgbg_map(pred, is_prob)
        gts.append(gt)
        preds.append(pred)
    return evaluate_davis_sequence(
        gts, preds, convention, name, objects_from_first_frame=objects_from_first_frame and not fgbg
    )


def _davis_job(job: tuple) -> DavisSequenceResult:
    return evaluate_davis_sequence_dir(*job)


def evaluate_davis_folders(
    pred_dir: str | Path,
    anno_dir: str | Path,
    sequences: Sequence[str],
    protocol: str = "mos",
    dataset: str = "custom",
    convention: str = "unsupervised",
    workers: int = 1,
    progress: bool = True,
    objects_from_first_frame: bool = True,
) -> DavisReport:
    """DAVIS 2017 J/F over ``sequences`` (``protocol`` ``mos``/``uvos``: multi-object; ``fgbg``: union of
    objects vs predicted foreground, one object per sequence)."""
    pred_dir, anno_dir = Path(pred_dir), Path(anno_dir)
    if not sequences:
        raise EvaluationInputError(f"no sequences to evaluate under {anno_dir}")
    missing = [s for s in sequences if not (pred_dir / s).is_dir()]
    if missing:
        raise EvaluationInputError(
            f"{len(missing)} sequence folder(s) missing under the predictions {pred_dir}: {missing[:5]}"
        )
    fgbg = protocol == "fgbg"
    jobs = [(s, pred_dir, anno_dir, convention, fgbg, objects_from_first_frame) for s in sequences]
    results = _run_jobs(_davis_job, jobs, workers, progress, protocol.upper())
    return DavisReport(protocol, dataset, convention, results, aggregate_davis(results))
