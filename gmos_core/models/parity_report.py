"""Visual parity report: our models vs the official-code reference fixtures, as one PNG.

    python -m gmos_core.models.parity_report --fixtures ../shared/fixtures/reference --out parity.png

Panels: the official proposer label maps (PNG written by the official code) next to ours and their
difference, GMOS-S probability (official 8-bit PNG vs ours), and the max-abs errors of each model output.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", required=True, type=Path, help="the shared/fixtures/reference folder")
    parser.add_argument("--out", type=Path, default=Path("parity.png"))
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import load_file

    from gmos_core.models import build_gmos_s, build_proposer
    from gmos_core.postprocess import gmos_s_probability, label_proposals, probability_to_u8, select_top_proposals

    fx = args.fixtures
    if not (fx / "gmos_proposer_full").is_dir():
        print(f"not a reference fixture folder: {fx}", file=sys.stderr)
        return 2
    ref = load_file(str(fx / "gmos_proposer_full" / "gmos_proposer_full.safetensors"))
    ref_s = load_file(str(fx / "gmos_s_full" / "gmos_s_full.safetensors"))
    weights = {k[8:]: v.float() for k, v in ref.items() if k.startswith("weights/")}
    weights_s = {k[8:]: v.float() for k, v in ref_s.items() if k.startswith("weights/")}
    inputs = (ref["inputs/token"].float(), ref["inputs/sam_btn"].float(),
              [ref["inputs/high_res_0"].float(), ref["inputs/high_res_1"].float()])
    proposer = build_proposer("full").eval()
    proposer.load_state_dict(weights)
    gmos_s = build_gmos_s("full").eval()
    gmos_s.load_state_dict({k: weights_s.get(k, weights.get(k)) for k in gmos_s.state_dict()})
    with torch.no_grad():
        out = proposer(*inputs)
        out_s = gmos_s(*inputs)
    labels = label_proposals(select_top_proposals(out, (90, 160))).seq_annos
    prob_u8 = probability_to_u8(gmos_s_probability(out_s["fg_mask"], (90, 160)))
    errors = {
        "proposer mask (::8)": (out["mask"][:, :, ::8, ::8] - ref["outputs/mask_sub8"]).abs().max().item(),
        "motion_logits": (out["motion_logits"] - ref["outputs/motion_logits"]).abs().max().item(),
        "iou_pred": (out["iou_pred"] - ref["outputs/iou_pred"]).abs().max().item(),
        "GMOS-S fg_mask": (out_s["fg_mask"] - ref_s["outputs/fg_mask"]).abs().max().item(),
    }

    fig, axes = plt.subplots(3, 3, figsize=(12, 8))
    for t in range(2):
        official = np.array(Image.open(fx / "gmos_proposer_full" / f"postproc_seq_annos_{t}.png"))
        axes[t, 0].imshow(official, cmap="tab20", vmin=0, vmax=20, interpolation="nearest")
        axes[t, 0].set_title(f"official labels, frame {t}")
        axes[t, 1].imshow(labels[t], cmap="tab20", vmin=0, vmax=20, interpolation="nearest")
        axes[t, 1].set_title(f"gmos_core labels, frame {t}")
        axes[t, 2].imshow(official != labels[t], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[t, 2].set_title(f"differing pixels: {(official != labels[t]).sum()}")
    official_prob = np.array(Image.open(fx / "gmos_s_full" / "official_prob_00000.png"))
    axes[2, 0].imshow(official_prob, cmap="magma", vmin=0, vmax=255)
    axes[2, 0].set_title("GMOS-S official prob (8-bit)")
    axes[2, 1].imshow(prob_u8[0], cmap="magma", vmin=0, vmax=255)
    axes[2, 1].set_title("GMOS-S gmos_core prob (8-bit)")
    axes[2, 2].barh(list(errors), [max(v, 1e-12) for v in errors.values()], color="tab:blue")
    axes[2, 2].axvline(1e-4, color="tab:red", linestyle="--", label="tolerance 1e-4")
    axes[2, 2].set_xscale("log")
    axes[2, 2].set_title("max abs error vs official")
    axes[2, 2].legend(loc="lower right", fontsize=8)
    for ax in axes.flat[:-1]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    for name, value in errors.items():
        print(f"{name:<22} max abs error {value:.2e}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
