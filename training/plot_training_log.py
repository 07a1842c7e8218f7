"""Plot a default-model training log (``<out-dir>/train_log.csv`` of training/default_train.py, or of
training/refiner_train.py: the refined, head and geometric IoUs side by side).

    python3 -m training.plot_training_log runs/default/train_log.csv docs/images/default_model_training.png
"""
from __future__ import annotations

import argparse
import csv


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log")
    parser.add_argument("out")
    parser.add_argument("--title", default="default model training")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(args.log, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise SystemExit(f"{args.log}: no rows; expected the train_log.csv of a training run")
    step = [int(r["step"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    if "head_iou" in rows[0]:  # the refinement stage's log
        loss_lines = (("loss", "BCE + Dice"),)
        iou_lines = (("train_iou", "refined"), ("head_iou", "GMOS-S head alone"), ("motion_iou", "geometric mode alone"))
        iou_title = "IoU on the training crops with motion"
    elif "train_moving_iou" in rows[0]:  # the instance variant logs other loss terms
        loss_lines = (("loss", "total"), ("mask", "mask (focal + Dice)"), ("motion", "motion BCE"))
        iou_lines = (("train_moving_iou", None),)
        iou_title = "train IoU of the queries matched to moving objects"
    else:
        loss_lines = (("loss", "total"), ("bce", "BCE"), ("dice", "Dice"))
        iou_lines = (("train_fg_iou", None),)
        iou_title = "train IoU (windows with a moving object)"
    for column, label in loss_lines:
        a.plot(step, [float(r[column]) for r in rows], label=label)
    a.set_xlabel("step")
    a.set_title("training loss")
    a.legend()
    for column, label in iou_lines:
        b.plot(step, [float(r[column]) for r in rows], label=label, color=None if label else "tab:green")
    if len(iou_lines) > 1:
        b.legend()
    b.set_xlabel("step")
    b.set_ylim(0, 1)
    b.set_title(iou_title)
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
