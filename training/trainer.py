"""The training loop: AdamW + cosine/warm-up, gradient accumulation, AMP on CUDA, DDP through ``torchrun``,
resumable checkpoints, progress bar, CSV (+ TensorBoard when installed) logs, periodic MOS-I validation.

    torchrun --nproc_per_node 2 -m training.trainer --config cfg.yaml    # or: gmos train --config cfg.yaml

Checkpoints (``<output_dir>/checkpoints/last.pt``, also ``step_NNNNNN.pt``) hold the trainable model parts (and
encoders that no weight file can rebuild), optimizer, scheduler, step, epoch, AMP scaler and every RNG state;
they contain only tensors / numbers / strings and are read back with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import csv
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from training.config import TrainConfig, dump_config
from training.model import ENCODER_NAMES, GMOSTrainModel


# ---------------------------------------------------------------------------------------------- helpers


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available; use --device cpu")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def autocast_dtype(device: torch.device, precision: str) -> Optional[torch.dtype]:
    """None = fp32.  auto: bf16 on CUDA cc >= 8, fp16 below, fp32 on CPU."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16


def cosine_with_warmup(step: int, warmup: int, total: int, floor: float = 0.0) -> float:
    """LR multiplier: linear warm-up from 0 over ``warmup`` steps, then cosine to ``floor`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_version": random.getstate()[0], "python_gauss": str(random.getstate()[2]),
             "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
             "numpy_has_gauss": int(np_state[3]), "numpy_gauss": float(np_state[4])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    gauss = state["python_gauss"]
    random.setstate((state["python_version"], tuple(state["python"]), None if gauss == "None" else float(gauss)))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)  # data workers must not fight the training process for the 2 cores
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


class _Logger:
    """CSV always; TensorBoard when the package is installed (else one log line saying so)."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.csv_path = out_dir / "train_log.csv"
        self.val_path = out_dir / "val_log.csv"
        self.tb = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"))
        except (ImportError, ModuleNotFoundError):
            print("training: TensorBoard not installed (pip install tensorboard); logging to CSV only", file=sys.stderr)

    def _append(self, path: Path, row: dict) -> None:
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def log(self, row: dict, validation: bool = False) -> None:
        if not self.enabled:
            return
        self._append(self.val_path if validation else self.csv_path, row)
        if self.tb is not None:
            prefix = "val/" if validation else "train/"
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(prefix + key, value, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------------------------------- trainer


class Trainer:
    """One training run (one process of a DDP group when launched by ``torchrun``)."""

    def __init__(self, cfg: TrainConfig, resume: bool = True, progress: bool = True,
                 command: str = "") -> None:
        self.cfg = cfg
        self.command = command or " ".join(sys.argv)
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(cfg.device, self.local_rank)
        self.distributed = self.world_size > 1
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if self.distributed and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group(backend=backend)
        self.is_main = self.rank == 0
        self.progress = progress and self.is_main
        self.out_dir = Path(cfg.output_dir)
        if self.is_main:
            (self.out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(dump_config(cfg))
        self.amp_dtype = autocast_dtype(self.device, cfg.precision)
        seed_everything(cfg.seed)  # identical model init on every rank
        self.model = self._build_model().to(self.device)
        if cfg.disable_dropout:
            for module in self.model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        o = cfg.optim
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: cosine_with_warmup(s, o.warmup_steps, o.max_steps, o.min_lr_ratio))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ddp_model = self.model
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.accumulation = o.accumulation(self.world_size)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.train_set = self._build_train_set()
        self.logger = _Logger(self.out_dir, self.is_main)
        seed_everything(cfg.seed + 1000 * self.rank)  # per-rank streams for dropout etc.
        if resume and (self.out_dir / "checkpoints" / "last.pt").is_file():
            self.load_checkpoint(self.out_dir / "checkpoints" / "last.pt")

    # ------------------------------------------------------------------ building
    def _build_model(self) -> GMOSTrainModel:
        return self._build_model_static(self.cfg, use_cache=True)

    @staticmethod
    def _build_model_static(cfg: TrainConfig, use_cache: bool = True) -> GMOSTrainModel:
        """The model of ``cfg``: random init (seed set by the caller), official encoder files when given, the head
        initialised from ``head_weights``, encoders of the feature cache when training from one."""
        model = GMOSTrainModel(cfg.model, tuple(cfg.trainable_encoders))
        if cfg.pi3_weights:
            from gmos_core.weights import load_pi3_encoder

            load_pi3_encoder(model.pi3, cfg.pi3_weights)
        if cfg.sam2_checkpoint:
            from gmos_core.weights import load_sam2_predictor_weights
            from training.model import Sam2ImageEncoder, build_sam2_image_predictor

            predictor = build_sam2_image_predictor(cfg.model)
            load_sam2_predictor_weights(predictor, cfg.sam2_checkpoint)
            model.sam2_image_encoder = Sam2ImageEncoder(predictor)
            trainable = "sam2_image_encoder" in model.trainable
            model.sam2_image_encoder.requires_grad_(trainable)
            if not trainable:
                model.sam2_image_encoder.eval()
        if cfg.head_weights:
            from training.export import load_head_weights

            load_head_weights(model, cfg.head_weights)
        elif cfg.query_init_std > 0 and hasattr(model.head, "obj_token"):
            # The official init draws the object queries from N(0, 1e-6): all queries are identical to 1e-6, get
            # identical outputs, and Hungarian matching then gives one of them the positive target and all the
            # others negatives -- from scratch, every query learns "nothing moves".  DETR-style N(0, 1) queries
            # break the symmetry (measured: matched IoU stays 0 with the official init on the tiny overfit set).
            with torch.no_grad():
                model.head.obj_token.normal_(0.0, cfg.query_init_std)
        if use_cache and cfg.data.feature_cache:
            from training.features import load_cache_encoders

            load_cache_encoders(model, cfg.data.feature_cache)
        return model

    def saved_components(self) -> tuple:
        """Components a checkpoint/export must carry: the head, trainable encoders and encoders that no weight
        file can rebuild (random initialisation)."""
        comps = ["head"]
        for name in ENCODER_NAMES:
            from_file = (name == "pi3" and self.cfg.pi3_weights) or (name == "sam2_image_encoder" and self.cfg.sam2_checkpoint)
            if name in self.cfg.trainable_encoders or not from_file:
                comps.append(name)
        order = ("pi3", "sam2_image_encoder", "head")
        return tuple(c for c in order if c in comps)

    def geometry(self):
        return self.geometry_for(self.cfg)

    @staticmethod
    def geometry_for(cfg: TrainConfig):
        from training.datasets import SampleGeometry

        d = cfg.data
        return SampleGeometry(image_size=cfg.model.image_size, pixel_limit=cfg.model.pixel_limit,
                              frame_size=tuple(d.frame_size) if d.frame_size else None, max_objects=d.max_objects)

    def _build_train_set(self):
        cfg = self.cfg
        if cfg.data.feature_cache:
            from training.features import CachedFeatureDataset

            return CachedFeatureDataset(cfg.data.feature_cache, expect_model=cfg.model)
        from training.datasets import WindowSpec, build_dataset

        window = WindowSpec(cfg.model.window_size, cfg.model.anchor, tuple(cfg.data.window_seconds))
        return build_dataset(cfg.data.train, window, self.geometry(), cfg.seed)

    def _loader(self, epoch: int):
        from torch.utils.data import DataLoader
        from torch.utils.data.distributed import DistributedSampler

        from training.datasets import collate

        if len(self.train_set) < self.cfg.optim.batch_size * self.world_size:
            raise ValueError(f"training set has {len(self.train_set)} samples, fewer than one batch "
                             f"({self.cfg.optim.batch_size} x {self.world_size} processes)")
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        sampler = DistributedSampler(self.train_set, num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                     seed=self.cfg.seed, drop_last=True)
        sampler.set_epoch(epoch)
        workers = self.cfg.data.num_workers
        return DataLoader(self.train_set, batch_size=self.cfg.optim.batch_size, sampler=sampler, collate_fn=collate,
                          num_workers=workers, worker_init_fn=_worker_init if workers else None,
                          persistent_workers=False, pin_memory=self.device.type == "cuda", drop_last=True,
                          prefetch_factor=4 if workers else None)

    # ------------------------------------------------------------------ steps
    def _to_device(self, batch: dict) -> dict:
        return {k: (v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def micro_step(self, batch: dict, sync: bool) -> dict:
        from training.losses import compute_loss

        batch = self._to_device(batch)
        ctx = self.ddp_model.no_sync() if (self.distributed and not sync) else nullcontext()
        with ctx:
            with self._autocast():
                outputs = self.ddp_model(batch)
            loss, terms = compute_loss(self.cfg.model.variant, outputs, batch)
            self.scaler.scale(loss / self.accumulation).backward()
        return terms

    def optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip) if self.cfg.optim.grad_clip > 0 else \
            torch.tensor(0.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return float(norm)

    def train(self, max_steps: Optional[int] = None) -> dict:
        """Run until ``optim.max_steps`` (or ``max_steps`` more steps); returns a summary dict."""
        from tqdm import tqdm

        target = self.cfg.optim.max_steps if max_steps is None else min(self.cfg.optim.max_steps, self.step + max_steps)
        bar = tqdm(total=target, initial=self.step, desc="train", unit="step", disable=not self.progress,
                   dynamic_ncols=True)
        self.ddp_model.train()
        history = []
        t_start, samples_done = time.perf_counter(), 0
        window_start, window_samples = time.perf_counter(), 0
        running: dict = {}
        micro = 0
        first_loss = None
        while self.step < target:
            loader = self._loader(self.epoch)
            for index, batch in enumerate(loader):
                if index < self.batch_in_epoch:
                    continue  # resumed mid-epoch: skip the batches already consumed
                self.batch_in_epoch = index + 1
                micro += 1
                terms = self.micro_step(batch, sync=micro % self.accumulation == 0)
                n = batch["masks"].shape[0] * self.world_size
                samples_done += n
                window_samples += n
                for k, v in terms.items():
                    running.setdefault(k, []).append(float(v))
                if micro % self.accumulation:
                    continue
                grad_norm = self.optimizer_step()
                row = {k: float(np.nanmean(v)) if not all(math.isnan(x) for x in v) else float("nan")
                       for k, v in running.items()}
                running = {}
                if first_loss is None:
                    first_loss = row["loss"]
                history.append(row["loss"])
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                if self.step % self.cfg.log_every == 0 or self.step == target:
                    now = time.perf_counter()
                    self.logger.log({"step": self.step, **row, "grad_norm": grad_norm,
                                     "lr": self.scheduler.get_last_lr()[0],
                                     "samples_per_s": window_samples / max(now - window_start, 1e-9)})
                    window_start, window_samples = now, 0
                if self.cfg.val_every and self.step % self.cfg.val_every == 0 and self.cfg.data.val:
                    self.validate()
                    self.ddp_model.train()
                if self.step % self.cfg.checkpoint_every == 0 or self.step == target:
                    self.save_checkpoint()
                if self.step >= target:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
                continue
            break
        bar.close()
        elapsed = time.perf_counter() - t_start
        summary = {"steps": self.step, "first_loss": first_loss, "last_loss": history[-1] if history else None,
                   "losses": history, "samples_per_s": samples_done / max(elapsed, 1e-9), "seconds": elapsed}
        if self.cfg.data.val and self.cfg.val_every == 0:
            summary["val"] = self.validate()
        return summary

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> Optional[dict]:
        """Proposer-only / GMOS-S MOS-I on the ``data.val`` sequences (rank 0; 0.5 s windows, no propagator)."""
        if not self.is_main or not self.cfg.data.val:
            return None
        from training.evaluation import evaluate_sequences
        from training.datasets import WindowSpec, build_dataset

        window = WindowSpec(self.cfg.model.window_size, self.cfg.model.anchor,
                            fixed_seconds=self.cfg.data.val_window_seconds)
        val = build_dataset(self.cfg.data.val, window, self.geometry(), self.cfg.seed)
        report = evaluate_sequences(self.model, val, self.device, max_sequences=self.cfg.data.val_max_sequences,
                                    autocast=self._autocast)
        self.logger.log({"step": self.step, **{k: v for k, v in report.items() if isinstance(v, float)}},
                        validation=True)
        if self.progress:
            print(f"validation @ step {self.step}: " + "  ".join(
                f"{k} {v:.4f}" for k, v in report.items() if isinstance(v, float)), file=sys.stderr)
        return report

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict:
        comps = self.model.component_state_dicts()
        return {"model": {c: comps[c] for c in self.saved_components()},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "rng": rng_state(), "config": dump_config(self.cfg)}

    def save_checkpoint(self) -> Optional[Path]:
        if not self.is_main:
            return None
        folder = self.out_dir / "checkpoints"
        state = self.checkpoint_state()
        path = folder / f"step_{self.step:07d}.pt"
        tmp = folder / "last.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, folder / "last.pt")  # atomic: an interrupted save never leaves a broken last.pt
        torch.save(state, path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for comp, sd in state["model"].items():
            getattr(self.model, comp).load_state_dict(sd)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        set_rng_state(state["rng"])
        if self.is_main and self.progress:
            print(f"training: resumed from {path} at step {self.step}", file=sys.stderr)

    def export(self, path: str | Path) -> Optional[Path]:
        if not self.is_main:
            return None
        from training.export import export_model

        return export_model(self.model, self.cfg, path, components=self.saved_components(),
                            training_command=self.command)

    def close(self) -> None:
        self.logger.close()
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def main(argv: Optional[list] = None) -> int:
    """``python -m training.trainer`` / ``torchrun ... -m training.trainer``: same options as ``gmos train``."""
    import argparse

    from gmos_core.cli import train as cli

    parser = argparse.ArgumentParser(prog="python -m training.trainer")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
