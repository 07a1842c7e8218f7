"""Are the default model's GMOS-S probability and the geometric mode's motion probability complementary? Fixed
(untrained) ways of combining them, scored like benchmarks/heldout_eval.py: the measurement behind the default
model's refinement stage (docs/default_model.md, "The refinement stage").

    python3 benchmarks/late_fusion_probe.py --out /tmp/val --split validation [--weights FILE]

For every clip of the split: the model in gmos_s mode with its own refinement stage switched off (the head's
probability) and the geometric mode (its motion probability), each through the engine; then each rule below
-> the default model's post-processing (components of prob > 0.5 -> IoU tracker) -> MOS-I (gmos eval) and the
static-scene FP rate. Probabilities are cached in ``<out>/fusion_probs``.

  head       the model's head alone (= the GMOS-S part of the shipped model, s3)
  geometric  the geometric probability alone (through the model's post-processing, not the mode's own)
  mean       (head + geometric) / 2          logit_sum  sigmoid(logit(head) + logit(geometric))
  max        the larger of the two           gmean      sqrt(head x geometric)
  grow       head > 0.5, plus every geometric component (> 0.5) it touches
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.heldout_eval import (FPS, SEED_BASE, VALIDATION_SEED_BASE, generate, mos_i_scores,  # noqa: E402
                                     read_frames, run_engine, static_fp_rate, write_prediction)
from benchmarks.heldout_oracles import track_foreground  # noqa: E402


def _logit(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _grow(head, geo):
    import scipy.ndimage as ndi

    seeds = head > 0.5
    lab, _ = ndi.label(geo > 0.5)
    keep = np.unique(lab[seeds & (lab > 0)])
    return (seeds | np.isin(lab, keep)).astype(np.float32)


RULES = {
    "head": lambda h, g: h, "geometric": lambda h, g: g, "mean": lambda h, g: (h + g) / 2,
    "logit_sum": lambda h, g: 1 / (1 + np.exp(-(_logit(h) + _logit(g)))), "max": np.maximum,
    "gmean": lambda h, g: np.sqrt(h * g), "grow": _grow,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", choices=("heldout", "validation"), default="validation")
    parser.add_argument("--weights", default=None, help="GMOS-format GMOS-S file (default: the shipped model)")
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    from gmos_core.engine import EngineConfig
    from gmos_core.engine.models import WeightPaths, build_engine_models
    from gmos_core.weights.default_model import default_model_path
    from gmos_core.weights.metadata import read_checkpoint_metadata

    torch.set_num_threads(args.threads)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        parser.error(f"--rules {unknown}: expected some of {list(RULES)}")
    seed_base = SEED_BASE if args.split == "heldout" else VALIDATION_SEED_BASE
    meta = generate(args.out / "data", {"normal": 16, "static_camera": 6, "static_scene": 6}, 40, (480, 272),
                    seed_base)
    seqs = meta["sequences"]
    weights = Path(args.weights or default_model_path())
    info = read_checkpoint_metadata(weights)
    head_cfg = EngineConfig(mode="gmos_s", fps=FPS, anchor=info.anchor, window_size=info.window_size,
                            pixel_limit=info.pixel_limit, device="cpu")
    head_models = build_engine_models(head_cfg, weights=WeightPaths(head=str(weights)))
    head_models.refiner = None
    geo_cfg = EngineConfig(mode="geometric", fps=FPS, device="cpu")
    geo_models = build_engine_models(geo_cfg)
    cache = args.out / "fusion_probs"
    cache.mkdir(parents=True, exist_ok=True)
    for i, seq in enumerate(seqs):
        path = cache / f"{seq}.npz"
        if path.is_file():
            continue
        frames = read_frames(args.out / "data" / "JPEGImages" / seq)
        head = np.stack([r.fg_prob for r in run_engine(head_cfg, head_models, frames)]).astype(np.float16)
        geo = np.stack([r.motion_prob for r in run_engine(geo_cfg, geo_models, frames)]).astype(np.float16)
        np.savez(path, head=head, geometric=geo)
        print(f"[probabilities] {i + 1}/{len(seqs)} {seq}", flush=True)
    moving = [s for s, m in seqs.items() if m["moving_ids"]]
    static = [s for s, m in seqs.items() if m["kind"] == "static_scene"]
    print("| rule | mtIoU | J_mov | FP count | static-scene FP rate |\n|---|---|---|---|---|")
    results = {}
    for rule in rules:
        pred = args.out / "fusion_pred" / rule
        for seq in seqs:
            with np.load(cache / f"{seq}.npz") as data:
                head, geo = data["head"].astype(np.float32), data["geometric"].astype(np.float32)
            write_prediction(pred, seq, track_foreground([RULES[rule](h, g) for h, g in zip(head, geo)]))
        scores = mos_i_scores(pred, args.out / "data", moving, args.out / "fusion_eval" / rule)
        fp_rate, _ = static_fp_rate(pred, static)
        results[rule] = {**scores, "static_fp_rate": fp_rate}
        print(f"| {rule} | {scores['mtiou']:.3f} | {scores['j_mov']:.3f} | {scores['fp_count']:.2f} | {fp_rate:.3f} |",
              flush=True)
    (args.out / "fusion_scores.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
