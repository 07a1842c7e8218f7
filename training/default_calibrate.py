"""Decision-threshold calibration of a trained default model on a synthetic VALIDATION split.

    OMP_NUM_THREADS=1 python3 -m training.default_calibrate IN.safetensors OUT.safetensors [--clips 36]

The engine calls a pixel moving where the GMOS-S probability exceeds 0.5. A model trained with a
positive-weighted BCE (training/default_train.py) is biased towards "moving"; this picks one logit offset,
added to the bias of the head's output convolution (``head.fg_out.bias``: the same as moving the threshold),
that maximises the mean per-window score on validation clips: IoU with the moving-object mask for windows
that have a moving object, and for windows without one 1 if at most 0.5 % of the pixels are called moving
else 0. Validation seeds are 950000+ (training uses 1000..~5000, benchmarks/heldout_eval.py 900000..92xxxx),
one third each normal / static-camera / static-only clips, 4 windows per clip at stride 3.
The chosen offset and the scores are written into the metadata (``calibration``).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

VAL_SEED = 950_000
OFFSETS = tuple(float(x) for x in np.arange(-8.0, 2.01, 0.5))


def window_logits(path: str, clips: int) -> list:
    """[(kind, logits, target)] of the model in ``path`` on the validation windows of the end of training
    (``training.default_train.validation_windows``), on the CPU."""
    from gmos_core.preprocess import pi3_target_size
    from training import default_model as DM
    from training.default_train import TrainConfig, validation_windows

    cfg = TrainConfig(val_clips=clips)
    model, meta = DM.load_checkpoint(path)
    hw = pi3_target_size(cfg.render_width, cfg.render_height, meta.pixel_limit)
    return validation_windows(model, cfg, "cpu", hw)


def score(windows, offset: float) -> dict:
    per, fg, static_flagged = [], [], []
    for kind, logit, target in windows:
        pred = logit + offset > 0
        if target.sum() == 0:
            ok = float(pred.mean() <= 0.005)
            per.append(ok)
            if kind == "static_scene":
                static_flagged.append(1.0 - ok)
        else:
            iou = float((pred & target).sum() / max(1, (pred | target).sum()))
            per.append(iou)
            fg.append(iou)
    return {"offset": offset, "score": float(np.mean(per)), "fg_iou": float(np.mean(fg)),
            "static_flagged": float(np.mean(static_flagged))}


def choose_offset(windows) -> tuple[dict, list]:
    """(the best row, every row) of ``score`` over OFFSETS; ties go to the smaller offset."""
    table = [score(windows, off) for off in OFFSETS]
    return max(table, key=lambda r: (r["score"], -abs(r["offset"]))), table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--clips", type=int, default=36)
    args = parser.parse_args(argv)

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(1)
    windows = window_logits(args.checkpoint, args.clips)
    best, table = choose_offset(windows)
    for row in table:
        print(f"offset {row['offset']:+.1f}: score {row['score']:.3f}  fg IoU {row['fg_iou']:.3f}  "
              f"static-only windows flagged {row['static_flagged']:.3f}")
    print(f"chosen offset {best['offset']:+.1f}")
    with safe_open(args.checkpoint, framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    state = load_file(args.checkpoint)
    state["head.fg_out.bias"] = state["head.fg_out.bias"] + best["offset"]
    metadata["calibration"] = json.dumps({"head.fg_out.bias offset": best["offset"], "validation": best,
                                         "command": "python3 -m training.default_calibrate IN OUT --clips "
                                                    f"{args.clips}"}, sort_keys=True)
    save_file(state, args.out, metadata=metadata)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
