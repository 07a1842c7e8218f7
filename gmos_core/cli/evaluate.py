"""`gmos eval`: score predictions on a benchmark (MOS-I, MOS, UVOS, foreground/background).

Examples::

    gmos eval --protocol mos-i --dataset davis17-im --pred out/ --anno GMOS-2K/annotations/davis/test
    gmos eval --protocol mos --dataset davis17 --pred out/mos_frame --anno DAVIS/Annotations_unsupervised/480p \\
        --out results/ --workers 2

Prints the official-format summary, and with ``--out`` writes ``results.json``, ``per_sequence.csv``,
``aggregate.csv`` (MOS-I also ``per_object.csv``) and plots (``per_sequence.png``; for MOS-I
``timelines/<seq>.png``).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

PROTOCOLS = ("mos-i", "mos", "uvos", "fgbg")
DATASETS = ("davis17-im", "ytvos19-im", "davis17", "ytvos", "custom")
MOS_I_ONLY_DATASETS = ("davis17-im", "ytvos19-im")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS,
                        help="mos-i: the GMOS paper's protocol (official benchmark_mos_i.py); mos / uvos: DAVIS 2017 "
                             "J&F (multi-object, Hungarian-matched by default); fgbg: foreground/background J&F")
    parser.add_argument("--dataset", default=None, choices=DATASETS,
                        help="benchmark name; for mos-i davis17-im / ytvos19-im select the CSV rows as the official "
                             "script (default davis17-im for mos-i, custom otherwise)")
    parser.add_argument("--pred", required=True, type=Path,
                        help="predictions: a `gmos infer` output root (mos-i_frame/, mos_frame/, frame/, prob/) or "
                             "a folder of <sequence>/ sub-folders of indexed PNGs")
    parser.add_argument("--anno", required=True, type=Path, help="annotations: folder of <sequence>/ PNG folders")
    parser.add_argument("--time-anno", type=Path, default=None,
                        help="mos-i: time_annotation.csv (default: the bundled GMOS-2K file)")
    parser.add_argument("--frame-level-match", action="store_true",
                        help="mos-i: also report the frame-level Hungarian matching (flhm)")
    parser.add_argument("--convention", choices=("unsupervised", "semi-supervised"), default="unsupervised",
                        help="mos / uvos: DAVIS 2017 convention (unsupervised: Hungarian matching on (J+F)/2, all "
                             "frames, void excluded, <= 20 ids; semi-supervised: id k = object k, first and last "
                             "frame dropped)")
    parser.add_argument("--sequences", default=None,
                        help="comma-separated sequence names or a text file with one per line (mos/uvos/fgbg; "
                             "default: every sub-folder of --anno)")
    parser.add_argument("--strict-frames", action="store_true",
                        help="mos-i: fail when a sequence has different numbers of annotated and predicted frames "
                             "(the official script silently evaluates the first min(#GT, #pred))")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes evaluating sequences in parallel (default: min(2, CPUs))")
    parser.add_argument("--out", type=Path, default=None, help="write JSON, CSV and plots to this folder")
    parser.add_argument("--no-plots", action="store_true", help="with --out: skip the PNG plots")
    parser.add_argument("--brief", action="store_true", help="print only the aggregate lines")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _sequence_list(arg: str | None, anno: Path) -> list[str]:
    from gmos_core.metrics.readers import list_sequences

    if arg is None:
        return list_sequences(anno)
    path = Path(arg)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if "/" in arg or arg.endswith(".txt"):
        raise ValueError(f"--sequences {arg}: file not found; expected a text file with one sequence name per line, "
                         "or comma-separated names")
    return [s.strip() for s in arg.split(",") if s.strip()]


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    fields: list[str] = []
    for row in rows:
        for key in row:
            if key not in fields:
                fields.append(key)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _write_mos_i(report, out: Path, plots: bool, workers: int) -> list[Path]:
    from gmos_core.metrics.plots import plot_per_sequence_bars

    written = [out / "results.json", out / "per_sequence.csv", out / "aggregate.csv"]
    (out / "results.json").write_text(json.dumps(report.to_dict(), indent=1))
    rows = []
    for r in report.results:
        row = {"sequence": r.name, "n_frames": r.n_frames, "n_gt_frames": r.n_gt_frames,
               "n_pred_frames": r.n_pred_frames, "resized": r.resized, "motion_scores_used": r.motion_scores_used,
               "num_moving_objects": r.num_moving_objects}
        for key in ("slhm", "flhm"):
            s = getattr(r, key)
            if s is not None:
                row.update({f"{key}_j_mov": s.j_mov, f"{key}_mtiou": s.mtiou, f"{key}_fp_count": s.fp_count})
        rows.append(row)
    _write_csv(out / "per_sequence.csv", rows)
    object_rows = []
    for r in report.results:
        flhm = dict(zip(r.flhm.object_ids, r.flhm.j_mov_per_object)) if r.flhm is not None else {}
        for obj, j in zip(r.slhm.object_ids, r.slhm.j_mov_per_object):
            row = {"sequence": r.name, "object_id": obj, "moving_frames": sum(r.slhm.gt_moving[r.slhm.object_ids.index(obj)]),
                   "slhm_j_mov": j}
            if obj in flhm:
                row["flhm_j_mov"] = flhm[obj]
            object_rows.append(row)
    _write_csv(out / "per_object.csv", object_rows)
    written.append(out / "per_object.csv")
    agg_rows = []
    for key in ("slhm", "flhm"):
        a = getattr(report, key)
        if a is not None:
            agg_rows.append({"matching": key, "mtiou": a.mtiou, "j_mov": a.j_mov, "fp_count": a.fp_count,
                             **{f"mtiou@{t:.2f}": v for t, v in zip(_thresholds(), a.mtiou_per_threshold)}})
    _write_csv(out / "aggregate.csv", agg_rows)
    if plots:
        names = [r.name for r in report.results]
        series = {"J_mov (slhm)": [r.slhm.j_mov for r in report.results],
                  "mtIoU (slhm)": [r.slhm.mtiou for r in report.results]}
        if report.flhm is not None:
            series["J_mov (flhm)"] = [r.flhm.j_mov for r in report.results]
        written.append(plot_per_sequence_bars(names, series, out / "per_sequence.png",
                                              f"MOS-I per sequence ({report.dataset})"))
        written += _timelines(report.results, out / "timelines", workers)
    return written


def _thresholds():
    from gmos_core.metrics.mos_i import MOS_I_THRESHOLDS

    return MOS_I_THRESHOLDS


def _timeline_job(job):
    from gmos_core.metrics.plots import plot_mos_i_timeline

    result, path = job
    return plot_mos_i_timeline(result, path)


def _timelines(results, folder: Path, workers: int) -> list[Path]:
    from gmos_core.metrics.runner import _run_jobs

    jobs = [(r, folder / f"{r.name}.png") for r in results]
    return _run_jobs(_timeline_job, jobs, workers, False, "plots")


def _write_davis(report, out: Path, plots: bool) -> list[Path]:
    from gmos_core.metrics.plots import plot_per_sequence_bars

    written = [out / "results.json", out / "per_sequence.csv", out / "aggregate.csv"]
    (out / "results.json").write_text(json.dumps(report.to_dict(), indent=1))
    rows = []
    for r in report.results:
        for o in r.objects:
            rows.append({"sequence": r.name, "object_id": o.object_id, "n_frames": r.n_frames, **o.summary()})
    _write_csv(out / "per_sequence.csv", rows)
    _write_csv(out / "aggregate.csv", [report.aggregate.summary()])
    if plots:
        names = [r.name for r in report.results]
        series = {"J&F": [r.jf_mean for r in report.results], "J": [r.j_mean for r in report.results],
                  "F": [r.f_mean for r in report.results]}
        written.append(plot_per_sequence_bars(names, series, out / "per_sequence.png",
                                              f"{report.protocol} per sequence ({report.dataset})"))
    return written


def run(args: argparse.Namespace) -> int:
    from gmos_core.metrics.readers import EvaluationInputError, load_time_annotations, resolve_prediction_dir
    from gmos_core.metrics.runner import evaluate_davis_folders, evaluate_mos_i_folders

    dataset = args.dataset or ("davis17-im" if args.protocol == "mos-i" else "custom")
    if args.workers < 1:
        print(f"gmos eval: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.protocol != "mos-i" and dataset in MOS_I_ONLY_DATASETS:
        print(f"gmos eval: dataset {dataset} is a MOS-I benchmark; use --protocol mos-i or --dataset "
              "davis17/ytvos/custom", file=sys.stderr)
        return 2
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        print(f"gmos eval: --out {args.out} is an existing file; expected a folder (new or existing) for the "
              "reports", file=sys.stderr)
        return 2
    try:
        pred = resolve_prediction_dir(args.pred, args.protocol)
        if not args.anno.is_dir():
            raise EvaluationInputError(f"annotation folder not found: {args.anno}")
        if args.protocol == "mos-i":
            annos = load_time_annotations(args.time_anno, dataset)
            report = evaluate_mos_i_folders(pred, args.anno, annos, dataset, args.frame_level_match,
                                            args.workers, not args.quiet, args.strict_frames)
            text = report.printed(verbose=not args.brief)
        else:
            sequences = _sequence_list(args.sequences, args.anno)
            report = evaluate_davis_folders(pred, args.anno, sequences, args.protocol, dataset,
                                            args.convention, args.workers, not args.quiet,
                                            objects_from_first_frame=dataset in ("davis17", "ytvos"))
            text = report.printed()
            if args.brief:
                text = "\n".join(text.splitlines()[:4]) + "\n"
    except (EvaluationInputError, ValueError) as exc:
        print(f"gmos eval: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            if args.protocol == "mos-i":
                written = _write_mos_i(report, args.out, not args.no_plots, args.workers)
            else:
                written = _write_davis(report, args.out, not args.no_plots)
        except OSError as exc:  # the results are on stdout already; say why the report files are missing
            print(f"gmos eval: cannot write the report files to --out {args.out} ({exc}); expected a writable "
                  "folder (the results above are complete)", file=sys.stderr)
            return 1
        print(f"wrote {len(written)} files to {args.out}", file=sys.stderr)
    return 0
