"""Train the default model's refinement stage (gmos_core.models.motion_refiner) on top of a base default model, and
write a whole default-model file (the base file's components + ``refiner``).

    python3 -m training.refiner_train --config training/configs/default_refiner.yaml --out-dir runs/refiner \
        [--base FILE] [--steps N | --time-budget-min M] [--threads 2] [--resume]

Stages (each resumable):
1. data (training/refiner_data.py): render the refiner's clips (seeds 300000+), run the base model (its own
   refinement stage off) and the geometric mode over them through the engine, cache the refiner's inputs and
   targets per clip in ``<out-dir>/cache``;
2. training: random crops of single frames (mirror, colour gain), BCE (positive weight) + batch soft Dice on
   the refined logits, AdamW with warm-up and cosine decay; ``<out-dir>/state.pt`` (read back with
   ``weights_only=True``) every ``checkpoint_every`` steps, ``<out-dir>/train_log.csv`` every ``log_every``;
3. export: ``<out-dir>/gmos_default.safetensors`` = the base file's Pi3, SAM 2 and head tensors unchanged +
   ``refiner.*`` (a refiner already in the base, e.g. the shipped file's, is replaced), with the checkpoint
   metadata (``refiner_config``, name, lineage, ``base_model``, the command).

The logged ``train_iou`` / ``head_iou`` / ``motion_iou`` are the IoUs (prob > 0.5) of the refined, the head's and the
geometric probability with the target over the batch's frames that have a moving object: the refiner should
beat both inputs within a few hundred steps.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

DEFAULT_BASE = Path(__file__).resolve().parents[1] / "gmos_core" / "data" / "default_model" / "gmos_default.safetensors"


@dataclass
class RefinerTrainConfig:
    seed: int = 0
    name: str = "gmos-default-s4"
    clips_normal: int = 250
    clips_static_camera: int = 75
    clips_static_scene: int = 75
    frames: int = 40  # per clip, 480x272 at 24 fps (the held-out set's clip settings)
    channels: tuple = (8, 16, 32, 48)
    pixels: int = 240 * 136
    steps: int = 3000
    batch_size: int = 12
    crop: tuple = (112, 192)  # (h, w) random crops of the 136x240 working frames
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    pos_weight: float = 2.0
    dice_weight: float = 1.0
    colour_gain: float = 0.15
    # Small-object weighting (0 = off): BCE weight of a target component of area fraction a (of the whole working
    # frame) = clip(sqrt(small_object_area / a), 1, small_object_weight). Objects under ~0.5 % of the frame are most
    # of what the model misses (docs/default_model.md, "Where the score goes"); unweighted, a 60-pixel object is
    # 0.2 % of a frame's loss.
    small_object_weight: float = 0.0
    small_object_area: float = 0.01
    log_every: int = 25
    checkpoint_every: int = 200

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "RefinerTrainConfig":
        import yaml

        values = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; expected some of {sorted(known)}")
        for key in ("channels", "crop"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "log_every", "checkpoint_every", "frames"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"refiner config {key}={getattr(self, key)}; expected an integer >= 1")
        if len(self.crop) != 2 or min(self.crop) < 16:
            raise ValueError(f"refiner config crop={self.crop}; expected [h, w], each >= 16")
        if not self.lr > 0:
            raise ValueError(f"refiner config lr={self.lr}; expected > 0")
        if not (self.small_object_weight == 0 or self.small_object_weight >= 1):
            raise ValueError(f"refiner config small_object_weight={self.small_object_weight}; expected 0 (off) or "
                             ">= 1 (the largest weight)")
        if not 0 < self.small_object_area <= 1:
            raise ValueError(f"refiner config small_object_area={self.small_object_area}; expected a fraction in "
                             "(0, 1]")


def small_object_weights(target: np.ndarray, cfg: RefinerTrainConfig) -> np.ndarray:
    """(h, w) float32 BCE weights of one whole working frame: 1 on the background and on large objects, up to
    ``small_object_weight`` on small ones (components of target > 0.5, 8-connected, measured on the whole frame so
    a crop does not make a large object look small)."""
    from scipy import ndimage

    weights = np.ones(target.shape, np.float32)
    labels, count = ndimage.label(target > 0.5, structure=np.ones((3, 3), bool))
    if count:
        fractions = np.bincount(labels.ravel(), minlength=count + 1)[1:] / float(target.size)
        per_label = np.concatenate([[1.0], np.clip(np.sqrt(cfg.small_object_area / fractions), 1.0,
                                                    cfg.small_object_weight)]).astype(np.float32)
        weights = per_label[labels]
    return weights


def sample_batch(data: dict, cfg: RefinerTrainConfig, rng: np.random.Generator):
    """(rgb (B,3,h,w) [0,1], head, motion, target (B,1,h,w), weight (B,1,h,w) or None) float tensors: random
    frames, crops, mirror, gain; the BCE weights only with small-object weighting on (it draws no random
    numbers: the batches are the same either way)."""
    import torch

    n, _, height, width = data["rgb"].shape
    ch, cw = min(cfg.crop[0], height), min(cfg.crop[1], width)
    idx = rng.integers(0, n, cfg.batch_size)
    ys = rng.integers(0, height - ch + 1, cfg.batch_size)
    xs = rng.integers(0, width - cw + 1, cfg.batch_size)
    flips = rng.random(cfg.batch_size) < 0.5
    gains = 1.0 + cfg.colour_gain * rng.uniform(-1, 1, (cfg.batch_size, 3, 1, 1))

    def crop(key, i, y, x, flip):
        a = data[key][i][..., y:y + ch, x:x + cw]
        return a[..., ::-1] if flip else a

    rgb = np.stack([crop("rgb", i, y, x, f) for i, y, x, f in zip(idx, ys, xs, flips)]).astype(np.float32) / 255.0
    rgb = np.clip(rgb * gains, 0.0, 1.0)
    maps = [np.stack([crop(k, i, y, x, f) for i, y, x, f in zip(idx, ys, xs, flips)]).astype(np.float32)[:, None]
            for k in ("head", "motion", "target")]
    weight = None
    if cfg.small_object_weight > 0:
        whole = [small_object_weights(data["target"][i].astype(np.float32), cfg) for i in idx]
        tiles = [w[y:y + ch, x:x + cw] for w, y, x in zip(whole, ys, xs)]
        weight = np.stack([t[:, ::-1] if f else t for t, f in zip(tiles, flips)])[:, None]
        weight = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
    return (torch.from_numpy(rgb), *(torch.from_numpy(np.ascontiguousarray(m)) for m in maps), weight)


def loss_fn(logits, target, cfg: RefinerTrainConfig, pixel_weight=None):
    import torch
    import torch.nn.functional as F

    weight = torch.tensor(cfg.pos_weight, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=pixel_weight, pos_weight=weight)
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    dice = 1.0 - (2 * inter + 1.0) / (prob.sum() + target.sum() + 1.0)
    return bce + cfg.dice_weight * dice


def batch_iou(prob, target) -> float:
    """IoU (prob > 0.5 vs target > 0.5) pooled over the batch's crops that have a moving object; nan if none."""
    has = target.flatten(1).amax(1) > 0.5
    if not bool(has.any()):
        return float("nan")
    p, t = prob[has] > 0.5, target[has] > 0.5
    return float((p & t).sum()) / max(1.0, float((p | t).sum()))


# ---------------------------------------------------------------------------------------------- export
def export(refiner, base: Path, path: Path, cfg: RefinerTrainConfig, command: str, steps_done: int,
           scores: dict) -> Path:
    """The base file's network tensors unchanged + ``refiner.*`` (a refiner already in the base is replaced);
    metadata: the base's, with the refiner added, and ``base_model`` recording where the rest came from."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from gmos_core.weights.metadata import CheckpointMetadata

    with safe_open(str(base), framework="pt") as handle:
        base_strings = dict(handle.metadata() or {})
    base_meta = CheckpointMetadata.from_strings(base_strings, where=str(base))
    core = tuple(c for c in base_meta.components if c != "refiner")
    meta = base_meta.with_(components=core + ("refiner",), refiner_config=refiner.config.to_dict(), name=cfg.name,
                           training_command=command)
    if "base_model" in base_strings:  # the base had a refinement stage: its own record of the rest
        base_model = base_strings["base_model"]
    else:
        base_model = json.dumps({key: base_strings[key] for key in (
            "name", "lineage", "training_command", "training_steps", "training_steps_total", "training_seed")
            if key in base_strings}, sort_keys=True)
    strings = {k: v for k, v in base_strings.items() if k not in (
        "lineage", "training_steps", "training_steps_total", "training_seed", "name_note", "refiner_training")}
    strings.update(meta.to_strings())
    strings["base_model"] = base_model
    strings["lineage"] = (f"Pi3, SAM 2 image encoder and GMOS-S head: {json.loads(base_model).get('name', base.stem)} "
                          f"unchanged (base_model); refinement stage: training_command")
    strings["refiner_training"] = json.dumps({"steps": steps_done, "seed": cfg.seed, **scores}, sort_keys=True)
    tensors = {k: v for k, v in load_file(str(base)).items() if not k.startswith("refiner.")}
    for key, value in refiner.state_dict().items():
        tensors[f"refiner.{key}"] = value.detach().float().cpu().contiguous()
    tmp = Path(str(path) + ".tmp")
    save_file(tensors, str(tmp), metadata=strings)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=None, help="YAML of RefinerTrainConfig fields "
                        "(training/configs/default_refiner.yaml)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE,
                        help="the GMOS-S default-model file the refiner is trained on (default: the shipped "
                             "file; a refiner already in it is replaced)")
    parser.add_argument("--steps", type=int, default=None, help="override the config's steps")
    parser.add_argument("--time-budget-min", type=float, default=None,
                        help="fit the number of steps to this many minutes of training (measured on the first "
                             "steps; data preparation not counted)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue from <out-dir>/state.pt")
    args = parser.parse_args(argv)
    import torch

    from gmos_core.models.motion_refiner import MotionRefiner
    from training import refiner_data as RD
    from training.default_train import lr_at  # same warm-up (at most a tenth of the run) + cosine to 5 %

    cfg = RefinerTrainConfig.from_yaml(args.config) if args.config else RefinerTrainConfig()
    if args.steps is not None:
        if args.steps < 1:
            print(f"error: --steps {args.steps}; expected an integer >= 1", file=sys.stderr)
            return 2
        cfg.steps = args.steps
    if not args.base.is_file():
        print(f"error: --base {args.base}: no such file", file=sys.stderr)
        return 2
    from gmos_core.weights.metadata import read_checkpoint_metadata

    base_meta = read_checkpoint_metadata(args.base)
    if base_meta is None or base_meta.variant != "gmos_s":
        got = "no GMOS metadata" if base_meta is None else f"variant {base_meta.variant}"
        print(f"error: --base {args.base}: expected a GMOS-format default-model file with a GMOS-S head ({got})",
              file=sys.stderr)
        return 2
    if "refiner" in base_meta.components:
        print(f"--base {args.base} has a refinement stage: it is replaced (the refiner learns on the base's GMOS-S "
              f"probabilities; its other tensors are kept unchanged)", flush=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    command = "python3 -m training.refiner_train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))

    t0 = time.perf_counter()
    counts = {"normal": cfg.clips_normal, "static_camera": cfg.clips_static_camera,
              "static_scene": cfg.clips_static_scene}
    rows = RD.render_clips(args.out_dir / "data", counts, frames=cfg.frames)
    paths = RD.prepare_cache(args.out_dir / "data", args.out_dir / "cache", rows, str(args.base), cfg.pixels)
    data = RD.load_cache(paths)
    print(f"refiner data: {len(data['head'])} frames of {len(paths)} clips at {data['rgb'].shape[-1]}x"
          f"{data['rgb'].shape[-2]} ({time.perf_counter() - t0:.0f} s)", flush=True)

    refiner = MotionRefiner(channels=cfg.channels, pixels=cfg.pixels)
    opt = torch.optim.AdamW(refiner.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state_path = args.out_dir / "state.pt"
    step = 0
    if args.resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        refiner.load_state_dict(state["refiner"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        cfg.steps = int(state["steps"])
        rng = np.random.default_rng([cfg.seed, step])
        print(f"resumed from {state_path} at step {step} of {cfg.steps}", flush=True)
    elif args.resume:
        print(f"--resume: no {state_path}; starting at step 0", flush=True)

    def save_state():
        tmp = Path(str(state_path) + ".tmp")
        torch.save({"refiner": refiner.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "steps": cfg.steps}, tmp)
        os.replace(tmp, state_path)

    log_path = args.out_dir / "train_log.csv"
    log_fields = ("step", "lr", "loss", "train_iou", "head_iou", "motion_iou", "s_per_step", "elapsed_s")
    if not (args.resume and log_path.is_file()):
        with log_path.open("w", newline="") as fh:
            csv.writer(fh).writerow(log_fields)
    refiner.train()
    window, t_start, fitted = [], time.perf_counter(), args.time_budget_min is None
    while step < cfg.steps:
        t_step = time.perf_counter()
        rgb, head, motion, target, pixel_weight = sample_batch(data, cfg, rng)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        logits = refiner(rgb, head, motion)
        loss = loss_fn(logits, target, cfg, pixel_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        with torch.no_grad():
            window.append((float(loss), batch_iou(torch.sigmoid(logits), target), batch_iou(head, target),
                           batch_iou(motion, target), time.perf_counter() - t_step))
        if not fitted and step == 20:
            per_step = float(np.median([w[-1] for w in window]))
            cfg.steps = max(step + 1, int(args.time_budget_min * 60 / per_step))
            fitted = True
            print(f"time budget {args.time_budget_min} min at {per_step:.2f} s/step: {cfg.steps} steps", flush=True)
        if step % cfg.log_every == 0 or step == cfg.steps:
            arr = np.array(window, dtype=np.float64)
            row = (step, lr_at(step - 1, cfg), *np.nanmean(arr[:, :4], axis=0), arr[:, 4].mean(),
                   time.perf_counter() - t_start)
            with log_path.open("a", newline="") as fh:
                csv.writer(fh).writerow([f"{v:.5g}" if isinstance(v, float) else v for v in row])
            eta = (cfg.steps - step) * arr[:, 4].mean() / 60
            print(f"step {step}/{cfg.steps} loss {row[2]:.4f} iou refined {row[3]:.3f} head {row[4]:.3f} "
                  f"geometric {row[5]:.3f} ({row[6]:.2f} s/step, eta {eta:.1f} min)", flush=True)
            window = []
        if step % cfg.checkpoint_every == 0:
            save_state()
    save_state()
    refiner.eval()
    scores = final_scores(refiner, data, cfg)
    (args.out_dir / "train_scores.json").write_text(json.dumps(scores, indent=1))
    print("training frames, whole 240x136 frames, pooled IoU: " + json.dumps(scores), flush=True)
    out = export(refiner, args.base, args.out_dir / "gmos_default.safetensors", cfg, command, step, scores)
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s in all)", flush=True)
    return 0


def final_scores(refiner, data: dict, cfg: RefinerTrainConfig, frames: int = 400) -> dict:
    """Pooled IoU (prob > 0.5) of refined / head / geometric on ``frames`` whole training frames with motion."""
    import torch

    rng = np.random.default_rng(cfg.seed + 1)
    has = np.flatnonzero(data["target"].reshape(len(data["target"]), -1).max(1) > 0.5)
    pick = rng.choice(has, min(frames, len(has)), replace=False)
    inter = {"refined": 0.0, "head": 0.0, "geometric": 0.0}
    union = dict.fromkeys(inter, 0.0)
    with torch.inference_mode():
        for chunk in np.array_split(pick, max(1, len(pick) // 16)):
            rgb = torch.from_numpy(data["rgb"][chunk].astype(np.float32) / 255.0)
            head = torch.from_numpy(data["head"][chunk].astype(np.float32))[:, None]
            motion = torch.from_numpy(data["motion"][chunk].astype(np.float32))[:, None]
            target = torch.from_numpy(data["target"][chunk].astype(np.float32))[:, None] > 0.5
            refined = torch.sigmoid(refiner(rgb, head, motion))
            for name, prob in (("refined", refined), ("head", head), ("geometric", motion)):
                inter[name] += float(((prob > 0.5) & target).sum())
                union[name] += float(((prob > 0.5) | target).sum())
    return {f"{k}_iou": round(inter[k] / max(1.0, union[k]), 4) for k in inter}


if __name__ == "__main__":
    sys.exit(main())
