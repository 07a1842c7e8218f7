"""Held-out synthetic evaluation of the default model, next to the weight-free geometric mode and two reference
predictions, scored with ``gmos eval --protocol mos-i`` and a static-scene false-positive rate.

    OMP_NUM_THREADS=2 python3 benchmarks/heldout_eval.py --out /tmp/heldout [--weights FILE] \
        [--normal 16 --static-camera 6 --static-scene 6] [--reuse] [--table docs/default_model_heldout.md]

Held-out set (``training/synthetic.py`` at 480x272, 40 frames at 24 fps, textures from the bundled clip AND the
clips of /work/shared/data/videos — training crops the bundled clip only). Seeds 900000+ ("normal": moving camera
and moving objects), 910000+ (static camera) and 920000+ (static-only: the camera moves, nothing else does);
training uses seeds from 1000 to a few thousand, so no held-out scene was seen in training.

Methods (each writes <out>/pred/<method>/<seq>/00000.png ... indexed PNGs):
  default          the model (``--weights``, default: the shipped file), gmos_online + IoU tracker (instances)
  default-fgbg     the same run, all moving pixels as one label (what GMOS-S alone gives)
  geometric        ``--mode geometric`` (weight-free), when this checkout has it
  zeros            all-zero masks (reference)
  all-objects      every annotated object on every frame, whether it moves or not (segmentation without
                   motion reasoning; reference)

Scores: MOS-I (slhm) J_mov, mtIoU and FP count over the sequences with a moving object (all, moving camera,
static camera), and the static-scene FP rate: the fraction of frames of the static-only clips in which more than
0.5 % of the pixels are called moving (MOS-I drops those clips). For the "all-objects" reference on static-only
clips, every object sprite in view (static objects carry no annotation id) counts as called.
"""
from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEED_BASE = {"normal": 900000, "static_camera": 910000, "static_scene": 920000}
# --split validation: the same kinds of clips from other seeds, for choosing settings (tracker thresholds) without
# looking at the held-out set. Training uses seeds from 1000 to a few thousand.
VALIDATION_SEED_BASE = {"normal": 960000, "static_camera": 970000, "static_scene": 980000}
FPS = 24.0
STATIC_FP_PIXEL_FRACTION = 0.005
# "visible-moving": the time annotation marks an object moving only on frames where it is visible
# (training/synthetic.py MIN_VISIBLE_PIXELS); sets rendered before this (every moving frame, visible or not) are
# re-rendered.
ANNOTATION_VERSION = "visible-moving"


# ------------------------------------------------------------------------------------------------ data
def generate(data_dir: Path, counts: dict, frames: int, size: tuple, seed_base: dict = SEED_BASE) -> dict:
    """Render the held-out set (skipped when ``data_dir/sequences.json`` already lists the same set)."""
    from training.synthetic import SyntheticConfig, default_texture_videos, sample_scene, write_sequence

    wanted = {kind: [seed_base[kind] + i for i in range(n)] for kind, n in counts.items()}
    meta_path = data_dir / "sequences.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if (meta.get("wanted") == wanted and meta.get("frames") == frames and meta.get("size") == list(size)
                and meta.get("annotation") == ANNOTATION_VERSION):
            return meta
    cfg = SyntheticConfig(width=size[0], height=size[1], num_frames=frames, fps=FPS,
                          texture_videos=default_texture_videos())
    rows, seqs = [], {}
    t0 = time.perf_counter()
    for kind, seeds in wanted.items():
        for seed in seeds:
            scene = sample_scene(seed, cfg, kind=kind)
            row = write_sequence(scene, data_dir)
            row.update(dataset="synthetic-heldout", split="test")
            rows.append(row)
            seqs[scene.name] = {"seed": seed, "kind": kind, "moving_ids": sorted(ast.literal_eval(row["time_anno"]))}
            if kind == "static_scene":  # what segmentation without motion reasoning would call: every object
                out = data_dir / "AllObjects" / scene.name
                out.mkdir(parents=True, exist_ok=True)
                fractions = []
                for t in range(scene.num_frames):
                    fractions.append(float((_all_object_labels(scene, t) > 0).mean()))
                np.save(out / "object_fraction.npy", np.array(fractions))
    with (data_dir / "time_annotation.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=("seq_name", "time_anno", "ann_frames", "vid_frames", "dataset",
                                                "split"))
        writer.writeheader()
        writer.writerows(rows)
    meta = {"wanted": wanted, "frames": frames, "size": list(size), "sequences": seqs, "annotation": ANNOTATION_VERSION,
            "textures": [str(p) for p in default_texture_videos()]}
    meta_path.write_text(json.dumps(meta, indent=1))
    print(f"held-out set: {len(rows)} sequences rendered in {time.perf_counter() - t0:.0f}s -> {data_dir}",
          flush=True)
    return meta


def _all_object_labels(scene, t: int) -> np.ndarray:
    """Labels of every object sprite (moving or static) of frame t: re-render with static objects labelled."""
    import copy

    from training.synthetic import render_frame

    clone = copy.copy(scene)
    clone.layers = [copy.copy(layer) for layer in scene.layers]
    for i, layer in enumerate(clone.layers):
        if layer.kind in ("static", "moving"):
            layer.label = 1 + i % 19
    return render_frame(clone, t)[1]


def read_frames(seq_dir: Path) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(seq_dir.glob("*.jpg"))]


# ------------------------------------------------------------------------------------------------ methods
def run_engine(engine_config, models, frames: list[np.ndarray]) -> list:
    from gmos_core.engine.streaming import run_clip

    return run_clip(engine_config, models, frames)


def mos_i_labels(result) -> np.ndarray:
    moving = result.dynamic_mask if result.dynamic_mask is not None else np.zeros(result.labels.shape, bool)
    labels = getattr(result, "labels_mos_i", None)
    if labels is not None:
        return labels
    return np.where(moving, result.labels, 0).astype(np.uint8)


def build_default(weights: str | None, device: str, tracker_config: dict | None = None):
    from gmos_core.engine import EngineConfig
    from gmos_core.engine.models import WeightPaths, build_engine_models
    from gmos_core.weights.default_model import default_model_path
    from gmos_core.weights.metadata import read_checkpoint_metadata

    path = Path(weights or default_model_path())
    info = read_checkpoint_metadata(path)
    if info is None:
        raise ValueError(f"{path}: no GMOS checkpoint metadata; expected a model written by training/")
    config = EngineConfig(mode="gmos_online", fps=FPS, anchor=info.anchor, window_size=info.window_size,
                          pixel_limit=info.pixel_limit, device=device, tracker="iou")
    if tracker_config:
        from gmos_core.tracking import IouTrackerConfig

        config.extra["tracker_config"] = IouTrackerConfig(**tracker_config)
    models = build_engine_models(config, weights=WeightPaths(head=str(path)))
    return config, models, info, path


def build_geometric(device: str):
    """(config, models) of the weight-free geometric mode, or None when this checkout has no such mode."""
    try:
        from gmos_core.engine import EngineConfig
        from gmos_core.engine.config import MODES
    except ImportError:
        return None
    if "geometric" not in MODES:
        return None
    config = EngineConfig(mode="geometric", fps=FPS, device=device)
    try:
        from gmos_core.engine.models import build_engine_models

        models = build_engine_models(config)
    except Exception as exc:  # noqa: BLE001 - reported in the table, the other methods still run
        print(f"geometric mode unavailable: {exc}", file=sys.stderr)
        return None
    return config, models


def code_stamp(package: Path, exclude: tuple[str, ...] = ()) -> str:
    """A digest of every Python file under ``package`` (names and contents), but those under the sub-folders
    named in ``exclude``: part of the stamps that decide whether saved predictions or maps are reused."""
    digest = hashlib.sha1()
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] in exclude:
            continue
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _done(pred_dir: Path, stamp: str) -> bool:
    marker = pred_dir / ".complete"
    return marker.is_file() and marker.read_text() == stamp


def _mark_done(pred_dir: Path, stamp: str) -> None:
    pred_dir.mkdir(parents=True, exist_ok=True)
    (pred_dir / ".complete").write_text(stamp)


def write_prediction(pred_dir: Path, seq: str, labels: list[np.ndarray]) -> None:
    from gmos_core.io.palette import save_indexed_png

    out = pred_dir / seq
    out.mkdir(parents=True, exist_ok=True)
    for t, lab in enumerate(labels):
        save_indexed_png(out / f"{t:05d}.png", np.asarray(lab, np.uint8))


# ------------------------------------------------------------------------------------------------ scoring
def mos_i_scores(pred_dir: Path, data_dir: Path, seqs: list[str], out: Path) -> dict:
    """gmos eval --protocol mos-i on the given sequences (time annotation restricted to them)."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "time_annotation.csv"
    with (data_dir / "time_annotation.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["seq_name"] in seqs]
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    cmd = [sys.executable, "-m", "gmos_core", "eval", "--protocol", "mos-i", "--dataset", "custom",
           "--pred", str(pred_dir), "--anno", str(data_dir / "Annotations"), "--time-anno", str(csv_path),
           "--out", str(out), "--no-plots", "--brief", "--quiet", "--workers", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO))
    if proc.returncode != 0:
        raise RuntimeError(f"gmos eval failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    with (out / "aggregate.csv").open(newline="") as fh:
        agg = {r["matching"]: r for r in csv.DictReader(fh)}["slhm"]
    return {"j_mov": float(agg["j_mov"]), "mtiou": float(agg["mtiou"]), "fp_count": float(agg["fp_count"]),
            "n": len(rows)}


def static_fp_rate(pred_dir: Path, seqs: list[str]) -> tuple[float, int]:
    from gmos_core.io.palette import read_indexed_png

    flagged = total = 0
    for seq in seqs:
        for p in sorted((pred_dir / seq).glob("*.png")):
            lab = read_indexed_png(p)
            flagged += int((lab > 0).mean() > STATIC_FP_PIXEL_FRACTION)
            total += 1
    return (flagged / total if total else float("nan")), total


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="working folder (data, predictions, reports)")
    parser.add_argument("--weights", default=None, help="GMOS-format checkpoint (default: the shipped model)")
    parser.add_argument("--normal", type=int, default=16, help="clips with moving camera and moving objects")
    parser.add_argument("--static-camera", type=int, default=6, help="clips with a static camera")
    parser.add_argument("--static-scene", type=int, default=6, help="static-only clips (only the camera moves)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="480x272")
    parser.add_argument("--methods", default="default,default-fgbg,geometric,zeros,all-objects")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the predictions of a method already run on the same set (and same weights file)")
    parser.add_argument("--table", type=Path, default=None, help="also write the Markdown table here")
    parser.add_argument("--split", choices=("heldout", "validation"), default="heldout",
                        help="heldout (seeds 900000+, for reporting) or validation (seeds 960000+, for choosing "
                             "settings such as --tracker-config)")
    parser.add_argument("--tracker-config", default=None, metavar="JSON",
                        help='IoU tracker thresholds for the default model, e.g. \'{"match_iou": 0.1}\' '
                             "(gmos_core.tracking.IouTrackerConfig fields)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    data_dir = args.out / "data"
    seed_base = SEED_BASE if args.split == "heldout" else VALIDATION_SEED_BASE
    tracker_config = json.loads(args.tracker_config) if args.tracker_config else None
    meta = generate(data_dir, {"normal": args.normal, "static_camera": args.static_camera,
                               "static_scene": args.static_scene}, args.frames, (w, h), seed_base)
    seqs = meta["sequences"]
    by_kind = {k: [s for s, m in seqs.items() if m["kind"] == k] for k in SEED_BASE}
    moving_seqs = [s for s, m in seqs.items() if m["moving_ids"]]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    pred_root = args.out / "pred"
    notes, timing = [], {}

    model_name = None
    from gmos_core.tracking import IouTrackerConfig

    # the effective tracker settings (defaults included) are part of every stamp, and so is gmos_core's code (a
    # change of the tracker's, the refinement stage's or the geometric mode's logic leaves every setting unchanged):
    # --reuse must not keep predictions made otherwise
    effective_tracker = IouTrackerConfig(**(tracker_config or {})).to_dict()
    set_stamp = (json.dumps(meta["wanted"]) + f" frames={args.frames} size={w}x{h}"
                 + f" tracker_defaults={json.dumps(IouTrackerConfig().to_dict(), sort_keys=True)}"
                 + f" code={code_stamp(REPO / 'gmos_core')}")
    if "default" in methods or "default-fgbg" in methods:
        config, models, info, wpath = build_default(args.weights, args.device, tracker_config)
        model_name = info.name
        st = wpath.stat()
        stamp = (f"{set_stamp} weights={wpath.resolve()} size={st.st_size} mtime={st.st_mtime_ns} "
                 f"tracker={json.dumps(effective_tracker, sort_keys=True)}")
    if ("default" in methods or "default-fgbg" in methods) and not (
            args.reuse and _done(pred_root / "default", stamp) and _done(pred_root / "default-fgbg", stamp)):
        t0, n_frames = time.perf_counter(), 0
        for i, seq in enumerate(seqs):
            frames = read_frames(data_dir / "JPEGImages" / seq)
            results = run_engine(config, models, frames)
            n_frames += len(frames)
            labels = [mos_i_labels(r) for r in results]
            write_prediction(pred_root / "default", seq, labels)
            write_prediction(pred_root / "default-fgbg", seq, [(lab > 0).astype(np.uint8) for lab in labels])
            print(f"[default] {i + 1}/{len(seqs)} {seq}", flush=True)
        timing["default"] = n_frames / (time.perf_counter() - t0)
        _mark_done(pred_root / "default", stamp)
        _mark_done(pred_root / "default-fgbg", stamp)
    if "geometric" in methods and args.reuse and _done(pred_root / "geometric", set_stamp):
        pass
    elif "geometric" in methods:
        built = build_geometric(args.device)
        if built is None:
            notes.append("geometric: not available in this checkout (no `geometric` engine mode)")
            methods.remove("geometric")
        else:
            config, models = built
            t0, n_frames = time.perf_counter(), 0
            for i, seq in enumerate(seqs):
                frames = read_frames(data_dir / "JPEGImages" / seq)
                results = run_engine(config, models, frames)
                n_frames += len(frames)
                write_prediction(pred_root / "geometric", seq, [mos_i_labels(r) for r in results])
                print(f"[geometric] {i + 1}/{len(seqs)} {seq}", flush=True)
            timing["geometric"] = n_frames / (time.perf_counter() - t0)
            _mark_done(pred_root / "geometric", set_stamp)
    if "zeros" in methods or "all-objects" in methods:
        from gmos_core.io.palette import read_indexed_png

        for seq in seqs:
            anns = [read_indexed_png(p) for p in sorted((data_dir / "Annotations" / seq).glob("*.png"))]
            if "zeros" in methods:
                write_prediction(pred_root / "zeros", seq, [np.zeros_like(a) for a in anns])
            if "all-objects" in methods:
                write_prediction(pred_root / "all-objects", seq, anns)

    subsets = {"all": moving_seqs,
               "moving camera": [s for s in moving_seqs if seqs[s]["kind"] == "normal"],
               "static camera": [s for s in moving_seqs if seqs[s]["kind"] == "static_camera"]}
    table = {}
    for method in methods:
        row = {}
        for subset, names in subsets.items():
            if names:
                row[subset] = mos_i_scores(pred_root / method, data_dir, names,
                                           args.out / "eval" / method / subset.replace(" ", "_"))
        if method == "all-objects":
            fr = [np.load(data_dir / "AllObjects" / s / "object_fraction.npy") for s in by_kind["static_scene"]]
            allf = np.concatenate(fr) if fr else np.zeros(0)
            row["static_fp"] = (float((allf > STATIC_FP_PIXEL_FRACTION).mean()) if allf.size else float("nan"),
                                int(allf.size))
        else:
            row["static_fp"] = static_fp_rate(pred_root / method, by_kind["static_scene"])
        table[method] = row

    label = {"default": f"{model_name} (gmos_online + IoU tracker)", "default-fgbg": f"{model_name} fg/bg only",
             "geometric": "geometric mode (weight-free)", "zeros": "reference: all-zero masks",
             "all-objects": "reference: every annotated object on every frame"}
    set_name = "Held-out synthetic set" if args.split == "heldout" else "VALIDATION synthetic set (not held-out)"
    lines = [f"{set_name}: {len(subsets['all'])} clips with moving objects "
             f"({len(subsets['moving camera'])} moving camera, {len(subsets['static camera'])} static camera) "
             f"+ {len(by_kind['static_scene'])} static-only clips, {args.frames} frames at {w}x{h}, "
             f"{FPS:g} fps; seeds {', '.join(f'{k} {v}+' for k, v in seed_base.items())}"
             + (f"; tracker {json.dumps(tracker_config, sort_keys=True)}" if tracker_config else "") + ".",
             "",
             "| method | mtIoU | J_mov | FP count | mtIoU moving cam. | mtIoU static cam. | static-scene FP rate |",
             "|---|---|---|---|---|---|---|"]
    for method, row in table.items():
        a = row.get("all", {})
        mc, sc = row.get("moving camera", {}), row.get("static camera", {})
        fp, n_fp = row["static_fp"]
        lines.append(f"| {label.get(method, method)} | {a.get('mtiou', float('nan')):.3f} | "
                     f"{a.get('j_mov', float('nan')):.3f} | {a.get('fp_count', float('nan')):.2f} | "
                     f"{mc.get('mtiou', float('nan')):.3f} | {sc.get('mtiou', float('nan')):.3f} | "
                     f"{fp:.3f} ({n_fp} frames) |")
    if timing:
        lines += ["", "Throughput of the evaluation runs (frames/s, this machine, loaded; not a speed benchmark): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in timing.items())]
    lines += [f"", f"Command: `OMP_NUM_THREADS={args.threads} python3 benchmarks/heldout_eval.py "
              + " ".join(sys.argv[1:] if argv is None else argv) + "`"]
    lines += [f"note: {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    (args.out / "heldout_table.md").write_text(text)
    (args.out / "heldout_scores.json").write_text(json.dumps(table, indent=1))
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
