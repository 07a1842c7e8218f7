"""Training of the default model (``training/default_model.py``) from scratch on synthetic clips.

    python3 -m training.default_train --config training/configs/default.yaml --out-dir runs/default \
        [--device cuda --workers 14] [--time-budget-min M] [--steps N] [--resume] [--init-from FILE]

Seeded and resumable: ``<out-dir>/state.pt`` (model + optimiser + step; read with ``weights_only=True``) is written
every ``checkpoint_every`` steps and at the end; ``--resume`` continues from it. ``<out-dir>/train_log.csv`` logs
every ``log_every`` steps. At the end the run validates on ``val_clips`` clips (seeds 950000+) and picks the
decision-threshold offset (``training.default_calibrate``): ``<out-dir>/gmos_default.safetensors`` is the
calibrated, shippable file (checkpoint metadata contract, docs/default_model.md), ``gmos_default_uncalibrated``
the raw one, ``validation.json`` the scores.

Data (``training/default_bank.py``): rendered clips (``training/default_data.py``; training seeds from
``data_seed`` up, never the held-out ones of ``benchmarks/heldout_eval.py`` (900000+) or the validation ones
(950000+)) are prepared once and kept in a bank of ``pool_clips`` on the training device; ``refresh_clips`` per
``refresh_every`` steps are replaced by new scenes. Each sample is one 5-frame window (random stride, time
reversal, mirror, colour gain) of one clip, target = union of the objects moving at the anchor (centre) frame.
Loss: BCE (positive weight) + batch soft Dice on the 64x64 fg logits, + MSE of the IoU head. The logged
train_fg_iou is the IoU (prob > 0.5) over the samples that have a moving object.

``variant: proposer`` (experimental; ``training/configs/default_proposer.yaml``) trains the instance variant: the
GMOSProposer head (object queries, one mask + motion state each) with the paper's proposer loss
(``training.losses.proposer_loss``: Hungarian matching, focal + Dice, motion BCE, IoU, confidence) on per-object
targets of the anchor frame. Its logged train_moving_iou is the mean IoU of the queries matched to moving objects. Its end-of-run
validation scores the union of its moving queries' masks like GMOS-S's fg map (no calibration: the offset is a
GMOS-S bias), and ``--init-from`` a GMOS-S file starts it from that file's Pi3 and SAM 2 weights (head fresh).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch.utils.data as tud

from training import default_model as DM


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 6000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    dice_weight: float = 1.0
    pos_weight: float = 2.0
    iou_weight: float = 0.1
    # data
    data_seed: int = 1000
    pool_clips: int = 256
    refresh_every: int = 200
    refresh_clips: int = 32
    clip_frames: int = 24
    render_width: int = 320
    render_height: int = 180
    strides: tuple = (1, 2, 3, 4)
    static_clip_fraction: float = 0.2
    static_camera_fraction: float = 0.25
    # model: head variant (gmos_s | proposer) and sizes (None: those of training/default_model.py); written into
    # the file's metadata, with ``name`` (None: training/default_model.py's NAME)
    variant: str = DM.VARIANT
    name: str | None = None
    max_objects: int = 4  # proposer: instance targets per frame (the generator's ids 1..4; it moves at most 3)
    # proposer: weight of an extra batch soft Dice over the masks of the queries matched to MOVING objects (0 = the
    # paper's loss alone). Why: with the paper's weighting (focal alpha 0.25, Dice 1/20) a fresh head on objects of
    # ~2 % of the map collapsed to empty masks in 975 CPU steps; GMOS-S escaped the same collapse with batch Dice.
    proposer_dice_weight: float = 0.0
    pixel_limit: int = DM.PIXEL_LIMIT
    pi3_config: dict | None = None
    head_config: dict | None = None
    # end of run: validation windows (seeds 950000+, never trained on) and the decision-threshold offset
    val_clips: int = 36
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    # bookkeeping
    log_every: int = 50
    checkpoint_every: int = 500
    threads: int = 2

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "TrainConfig":
        import yaml

        with open(path) as f:
            raw = yaml.safe_load(f) or {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown training keys {unknown}; expected some of {sorted(known)}")
        if "strides" in raw:
            raw["strides"] = tuple(int(s) for s in raw["strides"])
        cfg = cls(**raw)
        for name in ("pi3_config", "head_config"):
            if getattr(cfg, name) is not None and not isinstance(getattr(cfg, name), dict):
                raise ValueError(f"{path}: {name} must be a mapping of sizes, got {getattr(cfg, name)!r}")
        for name in ("steps", "batch_size", "pool_clips", "clip_frames", "log_every", "checkpoint_every"):
            if int(getattr(cfg, name)) < 1:
                raise ValueError(f"{path}: {name} must be >= 1, got {getattr(cfg, name)}")
        if cfg.clip_frames < (DM.WINDOW_SIZE - 1) * max(cfg.strides) + 1:
            raise ValueError(f"{path}: clip_frames {cfg.clip_frames} shorter than a window at stride "
                             f"{max(cfg.strides)}")
        if cfg.val_clips < 0:
            raise ValueError(f"{path}: val_clips must be >= 0, got {cfg.val_clips}")
        if cfg.variant not in DM.VARIANTS:
            raise ValueError(f"{path}: variant {cfg.variant!r}; expected one of {list(DM.VARIANTS)}")
        if cfg.variant == "proposer" and int(cfg.max_objects) < 1:
            raise ValueError(f"{path}: max_objects must be >= 1 for the proposer, got {cfg.max_objects}")
        return cfg

    def model_sizes(self) -> tuple[int, dict, dict]:
        return (int(self.pixel_limit), dict(self.pi3_config or DM.PI3_CONFIG),
                dict(self.head_config or DM.default_head_config(self.variant)))

    @property
    def model_name(self) -> str:
        return self.name or DM.NAME


# ---------------------------------------------------------------------------------------------- loss
def losses(out: dict, target, cfg: TrainConfig):
    """BCE with positive weight + soft Dice over the whole batch, + MSE of the IoU head.

    Why not per-sample Dice: most windows hold a small moving object or none (static scenes, stopped objects);
    a smoothed per-sample Dice rewards an all-background answer on every empty sample, and a first GMOS-S run
    with it collapsed to "nothing moves" (logits about -10 everywhere). Batch Dice counts only the moving pixels
    the batch has; ``pos_weight`` (moving pixels are ~2 % of a frame) keeps the BCE from favouring background.
    """
    import torch
    import torch.nn.functional as F

    logits = out["fg_mask"][:, 0]
    pos_weight = torch.tensor(cfg.pos_weight, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    denom = prob.sum() + target.sum()
    dice = 1 - (2 * inter + 1) / (denom + 1)
    with torch.no_grad():
        hard = (prob > 0.5).float()
        tgt = (target > 0.5).float()
        i = (hard * tgt).sum(dim=(1, 2))
        u = ((hard + tgt) > 0).float().sum(dim=(1, 2))
        iou = torch.where(u > 0, i / u.clamp(min=1), torch.ones_like(u))
        has_fg = tgt.sum(dim=(1, 2)) > 0
        fg_iou = (iou * has_fg).sum() / has_fg.sum().clamp(min=1)
    iou_loss = F.mse_loss(out["iou_pred"][:, 0], iou)
    total = bce + cfg.dice_weight * dice + cfg.iou_weight * iou_loss
    # tensors, not floats: no device sync per step (converted when logged)
    return total, {"bce": bce.detach(), "dice": dice.detach(), "iou_mse": iou_loss.detach(), "iou": fg_iou}


def proposer_losses(out: dict, inst: dict, dice_weight: float = 0.0):
    """The paper's proposer loss (training.losses.proposer_loss) on the bank's instance targets, plus
    ``dice_weight`` x batch soft Dice over the queries matched to moving objects, with the terms named for the log:
    mask, motion, iou_mse and iou (the mean IoU of the queries matched to MOVING objects, 0 when there is none;
    the paper's matched_iou also counts static targets, whose empty masks score 1 when predicted empty)."""
    import torch

    from training.losses import assign_targets, proposer_loss

    tgt_masks, tgt_motion, matched = assignment = assign_targets(out, inst["masks"], inst["motion"], inst["valid"])
    total, terms = proposer_loss(out, inst, assignment=assignment)
    moving = matched & (tgt_motion > 0.5)
    logits = out["mask"].float().flatten(2)[moving]
    target = tgt_masks[moving]
    with torch.no_grad():
        pred = (logits > 0).float()
        inter = (pred * target).sum(-1)
        union = pred.sum(-1) + target.sum(-1) - inter
        moving_iou = (inter / union.clamp_min(1.0)).mean() if len(target) else logits.new_zeros(())
    if dice_weight > 0 and len(target):
        prob = torch.sigmoid(logits)
        dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
        total = total + dice_weight * dice
    return total, {"mask": terms["mask"], "motion": terms["motion"], "iou_mse": terms["iou"],
                   "iou": moving_iou.detach()}


# per variant: the loss terms logged, and their train_log.csv column names
LOG_TERMS = {"gmos_s": (("bce", "bce"), ("dice", "dice"), ("iou_mse", "iou_mse"), ("iou", "train_fg_iou")),
             "proposer": (("mask", "mask"), ("motion", "motion"), ("iou_mse", "iou_mse"),
                          ("iou", "train_moving_iou"))}


def lr_at(step: int, cfg: TrainConfig) -> float:
    # warm-up is at most a tenth of the run: a run fitted to a short time budget (a few hundred steps on a CPU)
    # would otherwise spend all of it warming up (the shipped GPU run: 3012 steps, warm-up 300 either way)
    warmup = max(1, min(cfg.warmup_steps, cfg.steps // 10))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# ---------------------------------------------------------------------------------------------- export
def export(model, path: str | os.PathLike, training_command: str, cfg: TrainConfig, steps_done: int,
           calibration: dict | None = None) -> None:
    """Write the safetensors file with the checkpoint metadata contract (gmos_core.weights.metadata), plus two
    informative keys readers ignore: training_steps and license."""
    from safetensors.torch import save_file

    from gmos_core.weights.metadata import CheckpointMetadata

    pixel_limit, pi3_config, head_config = cfg.model_sizes()
    meta = CheckpointMetadata(
        variant=cfg.variant, anchor=DM.ANCHOR, window_size=DM.WINDOW_SIZE, window_seconds=DM.WINDOW_SECONDS,
        pi3_config=pi3_config, head_config=head_config, sam2_config=DM.SAM2_CONFIG_NAME,
        sam2_image_size=DM.SAM2_IMAGE_SIZE, pixel_limit=pixel_limit,
        components=("pi3", "sam2_image_encoder", "head"), name=cfg.model_name,
        trained_on="synthetic data only (procedural layered scenes of training/synthetic.py)",
        training_command=training_command)
    strings = meta.to_strings()
    strings.update(training_steps=str(steps_done), training_seed=str(cfg.seed),
                   license="Apache-2.0 (the project's licence)")
    tensors = {}
    for component, sd in model.component_state_dicts().items():
        for k, v in sd.items():
            tensors[f"{component}.{k}"] = v.detach().float().cpu().contiguous()
    if calibration is not None and cfg.variant == "gmos_s":  # the decision-threshold offset, folded into the bias
        tensors["head.fg_out.bias"] = tensors["head.fg_out.bias"] + float(calibration["head.fg_out.bias offset"])
        strings["calibration"] = json.dumps(calibration, sort_keys=True)
    tmp = str(path) + ".tmp"
    save_file(tensors, tmp, metadata=strings)
    os.replace(tmp, path)


def _one_thread(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)  # data workers: one core each, no oversubscription


# ---------------------------------------------------------------------------------------------- validation
def moving_logits(out: dict):
    """(B, h, w) logits of "moving" from either head: GMOS-S's fg map, or for the proposer the per-pixel max over
    the queries whose motion probability is above 0.5 (what the engine keeps: masks where the logit > 0, moving
    where the query's motion is), -20 where no query moves."""
    import torch

    if "fg_mask" in out:
        return out["fg_mask"][:, 0]
    moving = torch.sigmoid(out["motion_logits"][..., 0]) > 0.5  # (B, Q)
    masked = torch.where(moving[..., None, None], out["mask"], torch.full_like(out["mask"], -20.0))
    return masked.amax(dim=1)


def validation_windows(model, cfg: TrainConfig, device, pi3_hw, amp: bool = False) -> list:
    """The model's fg logits on ``val_clips`` validation clips (seeds 950000+, one third each normal /
    static-camera / static-only; 4 windows per clip at stride 3, unaugmented): [(kind, logits, target bool)]."""
    import torch

    from training.default_bank import ClipBank, prepare_clip
    from training.default_calibrate import VAL_SEED
    from training.default_data import Clip, synthetic_config
    from training.synthetic import render_sequence, sample_scene

    kinds = ("normal", "static_camera", "static_scene")
    scfg = synthetic_config(cfg)
    clips, clip_kinds = [], []
    for i in range(cfg.val_clips):
        scene = sample_scene(VAL_SEED + i, scfg, kind=kinds[i % 3])
        frames, labels = render_sequence(scene)
        clips.append(prepare_clip(Clip(frames, labels, scene.moving_matrix(), scene.kind), pi3_hw,
                                  DM.SAM2_IMAGE_SIZE))
        clip_kinds.append(kinds[i % 3])
    # the official stride at 24 fps (fps / 8 = 3), or the largest that fits very short clips (smoke runs)
    stride = max(1, min(3, (cfg.clip_frames - 1) // (DM.WINDOW_SIZE - 1)))
    bank = ClipBank(clips, device, DM.WINDOW_SIZE, (stride,), seed=0)
    span = (DM.WINDOW_SIZE - 1) * stride
    starts = np.linspace(0, bank.frames - 1 - span, 4).astype(int).tolist()
    windows = []
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        for c in range(bank.size):
            pi3, sam, tgt = bank.windows(c, starts, stride)
            logits = moving_logits(model(pi3, sam)).float().cpu().numpy()
            for logit, target in zip(logits, tgt.cpu().numpy()):
                windows.append((clip_kinds[c], logit, target > 0.5))
    model.train(was_training)
    return windows


def validate_and_calibrate(model, cfg: TrainConfig, device, pi3_hw, amp: bool) -> dict | None:
    """Score the model on the validation windows and pick the decision-threshold offset of
    ``training.default_calibrate`` (the same score). Returns the calibration record, or None when val_clips is 0."""
    from training.default_calibrate import VAL_SEED, choose_offset, score

    if cfg.val_clips <= 0:
        return None
    windows = validation_windows(model, cfg, device, pi3_hw, amp)
    if cfg.variant != "gmos_s":
        at_zero = score(windows, 0.0)  # the offset is folded into GMOS-S's output bias; the proposer has none
        print(f"validation ({cfg.val_clips} clips, {len(windows)} windows): score {at_zero['score']:.3f} "
              f"fg IoU {at_zero['fg_iou']:.3f} static flagged {at_zero['static_flagged']:.3f} (moving queries' "
              f"union; not calibrated)", flush=True)
        return {"head.fg_out.bias offset": 0.0, "validation": at_zero, "validation_at_offset_0": at_zero,
                "command": f"validation at the end of training.default_train ({cfg.val_clips} clips, seeds "
                           f"{VAL_SEED}+; proposer: not calibrated)"}
    best, table = choose_offset(windows)
    at_zero = next(r for r in table if r["offset"] == 0.0)
    print(f"validation ({cfg.val_clips} clips, {len(windows)} windows): offset 0: score {at_zero['score']:.3f} "
          f"fg IoU {at_zero['fg_iou']:.3f} static flagged {at_zero['static_flagged']:.3f}; chosen offset "
          f"{best['offset']:+.1f}: score {best['score']:.3f} fg IoU {best['fg_iou']:.3f} static flagged "
          f"{best['static_flagged']:.3f}", flush=True)
    return {"head.fg_out.bias offset": best["offset"], "validation": best, "validation_at_offset_0": at_zero,
            "command": f"validation at the end of training.default_train ({cfg.val_clips} clips, seeds "
                       f"{VAL_SEED}+)"}


def init_weights(model, path: str, pi3_config: dict, head_config: dict, variant: str = DM.VARIANT) -> bool:
    """Load a default-model file into ``model`` (same sizes required), undoing its calibration offset so that
    training continues from the raw logits. A file of the other head variant (a GMOS-S file for a proposer run)
    gives only its Pi3 and SAM 2 weights (backbone transfer) and the head starts fresh. Returns whether the head
    was loaded. A refinement stage in the file (the shipped gmos-default-s4) is left out.
    """
    from gmos_core.weights.metadata import read_checkpoint

    meta, parts = read_checkpoint(path)
    if meta is not None and parts.pop("refiner", None) is not None:
        print(f"--init-from {path}: its refinement stage is not carried over (it learned on this file's head "
              f"probabilities): retrain it on the new file with training.refiner_train --base", flush=True)
    if meta is None or set(parts) != {"pi3", "sam2_image_encoder", "head"}:
        raise ValueError(f"--init-from {path}: expected a default-model file (GMOS metadata, components pi3, "
                         f"sam2_image_encoder, head), got components {sorted(parts)}")
    same_head = meta.variant == variant
    checks = [("pi3_config", meta.pi3_config, pi3_config)]
    if same_head:
        checks.append(("head_config", meta.head_config, head_config))
    for name, theirs, ours in checks:
        if theirs != ours:
            raise ValueError(f"--init-from {path}: its {name} {theirs} differs from the config's {ours}; expected a "
                             "file of the same sizes")
    model.pi3.load_state_dict(parts["pi3"])
    DM.load_sam2_image_state_dict(model.sam2, parts["sam2_image_encoder"])
    if same_head:
        if variant == "gmos_s":
            parts["head"]["fg_out.bias"] = parts["head"]["fg_out.bias"] - DM.calibration_offset(path)
        model.head.load_state_dict(parts["head"])
    return same_head


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="training/configs/default.yaml")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="override the config's steps")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="override the config's batch_size (e.g. 64 on a GPU for a config written for 2 CPU cores)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: the config's; 1 is faster on a machine shared with other jobs)")
    parser.add_argument("--resume", action="store_true", help="continue from <out-dir>/state.pt")
    parser.add_argument("--init-from", default=None, metavar="FILE",
                        help="start from the weights of a default-model file of the same sizes (e.g. the shipped one, "
                             "to add GPU time to it; its calibration offset is undone first), with a fresh optimiser "
                             "and schedule")
    parser.add_argument("--workers", type=int, default=0,
                        help="data worker processes rendering clips (0: in the training process, right for 2 cores)")
    parser.add_argument("--time-budget-min", type=float, default=None,
                        help="after min(100, steps/10) steps (refitted at 4x and 10x that), set the step count (and so "
                             "the LR schedule) to what fits in this many minutes of training; the log says the steps used")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop (checkpoint + export) after this wall time; --resume continues")
    args = parser.parse_args(argv)

    import torch

    from gmos_core.preprocess import pi3_target_size
    from training.default_bank import ClipBank, ClipSource

    cfg = TrainConfig.from_yaml(args.config)
    if args.steps is not None:
        cfg.steps = args.steps
    if args.batch_size is not None:
        if args.batch_size < 1:
            print(f"error: --batch-size {args.batch_size}; expected an integer >= 1", file=sys.stderr)
            return 2
        cfg.batch_size = args.batch_size
    if args.threads is not None:
        cfg.threads = args.threads
    torch.set_num_threads(cfg.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    amp = bool(cfg.amp and device.type == "cuda")
    command = "python3 -m training.default_train " + " ".join(sys.argv[1:] if argv is None else argv)

    torch.manual_seed(cfg.seed)
    pixel_limit, pi3_config, head_config = cfg.model_sizes()
    model = DM.DefaultGMOS(pi3_config=pi3_config, head_config=head_config, variant=cfg.variant).to(device)
    instances = cfg.variant == "proposer"
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    state_path = out_dir / "state.pt"
    if args.init_from and not (args.resume and state_path.exists()):
        with_head = init_weights(model, args.init_from, pi3_config, head_config, cfg.variant)
        print(f"initialised from {args.init_from}" + ("" if with_head else " (Pi3 + SAM 2 only; the head starts "
                                                      f"fresh: the file has another head variant)"), flush=True)
    if args.resume and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        print(f"resumed from {state_path} at step {step}", flush=True)
    pi3_hw = pi3_target_size(cfg.render_width, cfg.render_height, pixel_limit)
    per_step = cfg.refresh_clips / cfg.refresh_every  # new scenes per optimiser step
    # a resumed run draws scenes after those the first part used (it is not bit-identical to an uninterrupted run)
    first_index = 0 if step == 0 else cfg.pool_clips + int(step * per_step)
    source = ClipSource(cfg, pi3_hw, DM.SAM2_IMAGE_SIZE, first_index, cfg.max_objects if instances else 0)
    t0 = time.perf_counter()
    if args.workers > 0:
        clips = iter(tud.DataLoader(source, batch_size=None, num_workers=args.workers, prefetch_factor=8,
                                    persistent_workers=True, worker_init_fn=_one_thread))
    else:
        clips = iter(source)
    bank = ClipBank([next(clips) for _ in range(cfg.pool_clips)], device, DM.WINDOW_SIZE, cfg.strides,
                    seed=cfg.seed * 1_000_003 + step)
    print(f"data ready in {time.perf_counter() - t0:.1f}s ({cfg.pool_clips} clips of {bank.frames} frames, "
          f"Pi3 {pi3_hw[0]}x{pi3_hw[1]}, {args.workers} workers)", flush=True)

    log_path = out_dir / "train_log.csv"
    new_log = not (args.resume and log_path.exists())
    log_file = open(log_path, "w" if new_log else "a", newline="")
    log = csv.writer(log_file)
    if new_log:
        log.writerow(["step", "wall_s", "lr", "loss"] + [column for _, column in LOG_TERMS[cfg.variant]]
                     + ["samples_per_s"])
    model.train()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    start_wall = time.perf_counter()
    first_step = step
    budget_s = 60 * args.time_budget_min if args.time_budget_min else None
    probe = min(100, max(5, cfg.steps // 10))
    budget_probe_steps = [step + probe, step + 4 * probe, step + 10 * probe]
    probe_times: dict = {}
    requested_steps = cfg.steps
    acc, acc_n, t_log = {}, 0, time.perf_counter()
    owed = 0.0
    while step < cfg.steps:
        owed += per_step
        while owed >= 1.0:  # new scenes replace random ones
            bank.replace(bank.random_slot(), next(clips))
            owed -= 1.0
        pi3, sam, tgt, *inst = bank.batch(cfg.batch_size, instances=instances)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = model(pi3, sam)
        out = {k: v.float() for k, v in out.items()}
        loss, parts = (proposer_losses(out, inst[0], cfg.proposer_dice_weight) if instances
                       else losses(out, tgt, cfg))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
        parts["loss"] = loss.detach()
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + v
        acc_n += 1
        if budget_s is not None and step in budget_probe_steps:  # fit the schedule to the time budget
            now = time.perf_counter()
            probe_times[step] = now
            if len(probe_times) == 1:  # first probe: rate since the start (includes warm-up: pessimistic)
                rate = (step - first_step) / (now - start_wall)
            else:  # later probes: rate since the first probe (steady state)
                rate = (step - budget_probe_steps[0]) / (now - probe_times[budget_probe_steps[0]])
            fit = step + int(rate * (budget_s - (now - start_wall)) * 0.98)
            fit = min(fit, requested_steps)
            fit = max(step + 1, fit)  # at least one more step (the log shows the count applied)
            if fit != cfg.steps:
                print(f"time budget {args.time_budget_min} min: {rate:.1f} steps/s, steps {cfg.steps} -> {fit}",
                      flush=True)
                cfg.steps = fit
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            m = {k: float(v) / acc_n for k, v in acc.items()}
            log.writerow([step, f"{now - start_wall:.1f}", f"{lr_at(step - 1, cfg):.2e}", f"{m['loss']:.4f}"]
                         + [f"{m[term]:.4f}" for term, _ in LOG_TERMS[cfg.variant]]
                         + [f"{acc_n * cfg.batch_size / (now - t_log):.1f}"])
            log_file.flush()
            shown = " ".join(f"{column} {m[term]:.3f}" for term, column in LOG_TERMS[cfg.variant])
            print(f"step {step}/{cfg.steps} loss {m['loss']:.4f} {shown} ({now - start_wall:.0f}s)", flush=True)
            acc, acc_n, t_log = {}, 0, now
        done = step == cfg.steps
        over_time = args.max_minutes is not None and time.perf_counter() - start_wall > 60 * args.max_minutes
        if done or over_time or step % cfg.checkpoint_every == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step},
                       str(state_path) + ".tmp")
            os.replace(str(state_path) + ".tmp", state_path)
            if not done:
                export(model, out_dir / "gmos_default.safetensors", command, cfg, step)
        if over_time and not done:
            print(f"stopped at step {step} after {args.max_minutes} min; rerun with --resume", flush=True)
            break
    log_file.close()
    if step == cfg.steps:
        t_val = time.perf_counter()
        calibration = validate_and_calibrate(model, cfg, device, pi3_hw, amp)
        export(model, out_dir / "gmos_default_uncalibrated.safetensors", command, cfg, step)
        export(model, out_dir / "gmos_default.safetensors", command, cfg, step, calibration)
        if calibration is not None:
            (out_dir / "validation.json").write_text(json.dumps(calibration, indent=1, sort_keys=True))
            print(f"validation + calibration in {time.perf_counter() - t_val:.0f}s", flush=True)
    print(f"wrote {out_dir / 'gmos_default.safetensors'} (step {step}, "
          f"{time.perf_counter() - t0:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
