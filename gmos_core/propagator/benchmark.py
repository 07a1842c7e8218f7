"""Memory/speed benchmark of the streaming propagator: ``python -m gmos_core.propagator.benchmark``.

Runs :class:`OnlinePropagator` for many steps with one frame's SAM 2 features reused (a static scene whose
track re-finds itself, so Case-1 prompts keep arriving — stored as conditioning frames to stress the caps)
and reports the retained SAM 2 state and the process RSS at checkpoints plus the mean step time. The SAM 2
model is the fixture's tiny random one (``--config``/``--weights``) at a small image size by default:
the point is the *retained state*, which does not depend on the model size.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def main(argv=None) -> int:
    default_dir = Path(os.environ.get("GMOS_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    default_dir = default_dir / "fixtures" / "reference" / "propagator_tiny"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--image-size", type=int, default=64, help="SAM 2 image size (weights are size-agnostic)")
    ap.add_argument("--config", type=Path, default=default_dir / "sam2_tiny_gmos_fixture.yaml")
    ap.add_argument("--weights", type=Path, default=default_dir / "sam2_tiny_weights.safetensors")
    ap.add_argument("--max-objects", type=int, default=2)
    ap.add_argument("--max-cond-frames-in-attn", type=int, default=3)
    ap.add_argument("--max-kept-cond-frames", type=int, default=3)
    ap.add_argument("--no-prune", action="store_true", help="keep everything (shows the unbounded growth)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", type=Path, default=None, help="write a PNG of retained state / RSS vs step")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from tqdm import tqdm

    from . import PropagatorConfig, encode_video_features, load_sam2_video_predictor
    from .online import FrameProposals, OnlinePropagator

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r"(?s).*post-processing")
    predictor = load_sam2_video_predictor(args.config, args.weights, "cpu",
                                          overrides=[f"++model.image_size={args.image_size}"])
    predictor.add_all_frames_to_correct_as_cond = True
    H, W = 48, 64
    rng = np.random.default_rng(0)
    img = rng.integers(0, 50, (H, W, 3)).astype(np.uint8)
    square = np.zeros((H, W), bool)
    square[4:20, 8:24] = True
    img[square] = (230, 30, 30)
    features = encode_video_features(predictor, [img])[0]
    cfg = PropagatorConfig(max_objects=args.max_objects, max_cond_frames_in_attn=args.max_cond_frames_in_attn,
                           max_kept_cond_frames=args.max_kept_cond_frames)
    prop = OnlinePropagator(predictor, cfg, (H, W), keep_logits=True, prune=not args.no_prune)
    checkpoints = sorted({10, 100, 500, 1000, args.steps} & set(range(1, args.steps + 1)))
    import sys

    shown = sys.argv[1:] if argv is None else list(argv)
    report = {"command": "python -m gmos_core.propagator.benchmark " + " ".join(shown),
              "steps": args.steps, "image_size": args.image_size, "prune": not args.no_prune,
              "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg(), "checkpoints": []}
    prev, reinforced, t0, c0 = None, 0, time.perf_counter(), time.process_time()
    series = []  # (step, retained_state_size, rss) every few steps for the plot
    plot_every = max(1, args.steps // 200)
    for t in tqdm(range(args.steps), desc="online steps"):
        mask = square if prev is None else prev
        out = prop.step(t, features, FrameProposals(mask[None], np.array([0.9]), np.array([0.9])))
        reinforced += len(out.reinforced_track_ids)
        prev = out.logits[0] > 0 if out.track_ids else None
        if args.plot is not None and (t + 1) % plot_every == 0:
            series.append((t + 1, prop.retained_state_size(), _rss_mib()))
        if t + 1 in checkpoints:
            report["checkpoints"].append({"step": t + 1, "rss_mib": round(_rss_mib(), 1),
                                          "elapsed_s": round(time.perf_counter() - t0, 1),
                                          "cpu_s": round(time.process_time() - c0, 1),
                                          **prop.retained_state_size()})
    report["mean_step_ms"] = round(1000 * (time.perf_counter() - t0) / args.steps, 2)
    # CPU time per step is the figure to compare on a shared machine (wall time includes waiting).
    report["mean_step_cpu_ms"] = round(1000 * (time.process_time() - c0) / args.steps, 2)
    report["reinforcements"] = reinforced
    report["load_avg_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))
    if args.plot is not None:
        _plot(series, args.plot, "pruned" if not args.no_prune else "not pruned")
    return 0


def _plot(series, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s, _, _ in series]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("cached_features", "cond_outputs", "non_cond_outputs", "non_cond_full_outputs", "mask_inputs"):
        ax1.plot(steps, [sz[key] for _, sz, _ in series], label=key)
    ax1.set_xlabel("step")
    ax1.set_ylabel("entries in the SAM 2 state")
    ax1.set_title(f"retained state ({title})")
    ax1.legend(fontsize=8)
    ax2.plot(steps, [r for _, _, r in series])
    ax2.set_xlabel("step")
    ax2.set_ylabel("process RSS (MiB)")
    ax2.set_title("memory")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
