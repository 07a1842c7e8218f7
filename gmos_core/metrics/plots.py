"""Plots of evaluation results (matplotlib, Agg backend, imported lazily)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from gmos_core.metrics.mos_i import MosISequenceResult

__all__ = ["plot_per_sequence_bars", "plot_mos_i_timeline"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_per_sequence_bars(
    names: Sequence[str], series: dict[str, Sequence[float]], path: str | Path, title: str
) -> Path:
    """Grouped horizontal bar chart: one row per sequence, one bar per metric (values in [0, 1])."""
    plt = _pyplot()
    path = Path(path)
    n = len(names)
    k = max(1, len(series))
    height = max(2.5, 0.22 * n * max(1, k / 2) + 1.2)
    fig, ax = plt.subplots(figsize=(9.5, min(height, 200)))
    y = np.arange(n)
    bar_h = 0.8 / k
    for i, (label, values) in enumerate(series.items()):
        vals = np.asarray(values, dtype=float)
        ax.barh(y + (i - (k - 1) / 2) * bar_h, np.nan_to_num(vals), height=bar_h, label=label)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=7 if n > 40 else 9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """(start, length) of the True runs, for broken_barh."""
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i - start))
            start = None
    return out


def plot_mos_i_timeline(result: MosISequenceResult, path: str | Path, variant: str = "slhm") -> Path:
    """Per moving object: GT moving interval (grey) versus the matched prediction's presence (coloured by
    IoU with the GT on that frame), one lane per object."""
    plt = _pyplot()
    scores = getattr(result, variant)
    if scores is None:
        raise ValueError(f"{result.name}: no {variant} results to plot")
    path = Path(path)
    n_obj = len(scores.object_ids)
    fig, ax = plt.subplots(figsize=(max(6, min(18, result.n_frames * 0.12 + 3)), 0.7 * max(1, n_obj) + 1.4))
    cmap = plt.get_cmap("RdYlGn")
    for lane, obj in enumerate(scores.object_ids):
        y = n_obj - 1 - lane
        ax.broken_barh(_runs(scores.gt_moving[lane]), (y + 0.5, 0.35), facecolors="0.55")
        ious = scores.iou[lane]
        frames = [f for f, present in enumerate(scores.pred_present[lane]) if present]
        if frames:  # one collection per lane: per-frame artists make large sequences slow to draw
            ax.broken_barh([(f, 1) for f in frames], (y + 0.1, 0.35),
                           facecolors=[cmap(float(ious[f])) for f in frames])
    ax.set_yticks([n_obj - 1 - i + 0.5 for i in range(n_obj)])
    ax.set_yticklabels(
        [f"id {o}\nJ_mov {j:.2f}" for o, j in zip(scores.object_ids, scores.j_mov_per_object)], fontsize=8
    )
    ax.set_xlim(0, result.n_frames)
    ax.set_ylim(0, max(1, n_obj))
    ax.set_xlabel("annotated frame")
    ax.set_title(f"{result.name} ({variant}): grey = GT moving, coloured = matched prediction by IoU", fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, fraction=0.03, pad=0.01, label="IoU")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
