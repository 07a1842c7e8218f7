"""Training configuration: validated dataclasses with the paper's defaults, loadable from YAML.

YAML mirrors the dataclasses (``model:``, ``optim:``, ``data:`` and top-level keys); ``overrides`` are
``dotted.key=value`` strings parsed as YAML scalars (``optim.lr=3e-4``, ``model.anchor=end``).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional, Sequence

import yaml

from training.model import ENCODER_NAMES, ModelConfig


@dataclass
class OptimConfig:
    """Paper: AdamW, lr 1e-4, weight decay 0.01, gradient clipping 1.0, cosine schedule with 2,000 warm-up steps,
    effective batch 8 (``batch_size`` per process x processes x accumulation)."""

    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup_steps: int = 2000
    max_steps: int = 20000
    min_lr_ratio: float = 0.0       # cosine floor as a fraction of lr
    effective_batch: int = 8
    batch_size: int = 1             # per process and micro-step

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("optim.weight_decay and optim.grad_clip must be >= 0")
        if self.warmup_steps < 0 or self.max_steps < 1:
            raise ValueError(f"optim.warmup_steps >= 0 and optim.max_steps >= 1 required, got "
                             f"{self.warmup_steps}, {self.max_steps}")
        if self.batch_size < 1 or self.effective_batch < 1:
            raise ValueError("optim.batch_size and optim.effective_batch must be >= 1")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    def accumulation(self, world_size: int) -> int:
        per_step = self.batch_size * world_size
        if self.effective_batch % per_step:
            raise ValueError(f"optim.effective_batch {self.effective_batch} is not a multiple of batch_size "
                             f"{self.batch_size} x {world_size} process(es)")
        return self.effective_batch // per_step


@dataclass
class DataConfig:
    """``train`` / ``val``: lists of dataset entries (training.datasets.build_dataset; see docs/training.md)."""

    train: list = field(default_factory=lambda: [{"kind": "synthetic", "seeds": "0-999"}])
    val: list = field(default_factory=list)
    frame_size: Optional[list] = None          # [W, H]: resize every clip (lets real clips of any size batch)
    window_seconds: list = field(default_factory=lambda: [0.16, 1.0])
    val_window_seconds: float = 0.5
    max_objects: int = 20
    num_workers: int = 2
    feature_cache: Optional[str] = None        # folder written by `gmos cache-features`: train the head from it
    val_max_sequences: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.train, list) or not self.train:
            raise ValueError("data.train must be a non-empty list of dataset entries")
        if len(self.window_seconds) != 2 or not 0 < self.window_seconds[0] <= self.window_seconds[1]:
            raise ValueError(f"data.window_seconds must be [low, high] with 0 < low <= high, got {self.window_seconds}")
        if self.frame_size is not None and (len(self.frame_size) != 2 or min(self.frame_size) < 16):
            raise ValueError(f"data.frame_size must be [W, H] (>= 16), got {self.frame_size}")
        if self.num_workers < 0 or self.max_objects < 1:
            raise ValueError("data.num_workers >= 0 and data.max_objects >= 1 required")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainable_encoders: list = field(default_factory=list)   # paper: [] (frozen); tiny models: both
    pi3_weights: Optional[str] = None       # frozen encoders from official files (the paper's setting)
    sam2_checkpoint: Optional[str] = None
    head_weights: Optional[str] = None      # initialise the head (fine-tuning)
    device: str = "auto"                    # auto | cpu | cuda | cuda:N
    precision: str = "auto"                 # auto (bf16/fp16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    seed: int = 0
    output_dir: str = "runs/gmos"
    name: str = "gmos-trained"
    trained_on: str = ""
    log_every: int = 10
    val_every: int = 0                      # optimizer steps between validations (0: only at the end)
    checkpoint_every: int = 500
    disable_dropout: bool = False           # exact-repeatability checks (DDP vs single process)
    query_init_std: float = 1.0             # re-draw a fresh proposer's object queries N(0, std): see trainer
    threads: int = 0                        # torch CPU threads per process (0: torch's default)

    def __post_init__(self) -> None:
        bad = [e for e in self.trainable_encoders if e not in ENCODER_NAMES]
        if bad:
            raise ValueError(f"trainable_encoders {bad} unknown; expected names from {ENCODER_NAMES}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        for name in ("log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.val_every < 0:
            raise ValueError(f"val_every must be >= 0, got {self.val_every}")
        if self.data.feature_cache and self.trainable_encoders:
            raise ValueError(f"data.feature_cache trains the head on frozen-encoder features; it cannot be combined "
                             f"with trainable_encoders {self.trainable_encoders}")

    def to_dict(self) -> dict:
        return asdict(self)


_SECTIONS = {"model": ModelConfig, "optim": OptimConfig, "data": DataConfig}


def _set_dotted(tree: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted!r}: {key!r} is not a section")
    node[keys[-1]] = value


def config_from_dict(tree: dict) -> TrainConfig:
    tree = copy.deepcopy(tree or {})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(tree) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; expected some of {sorted(known)}")
    kwargs = {}
    for key, value in tree.items():
        if key in _SECTIONS:
            cls = _SECTIONS[key]
            if not isinstance(value, dict):
                raise ValueError(f"config section {key!r} must be a mapping, got {value!r}")
            sub_known = {f.name for f in fields(cls)}
            sub_unknown = sorted(set(value) - sub_known)
            if sub_unknown:
                raise ValueError(f"unknown keys {sub_unknown} in section {key!r}; expected some of {sorted(sub_known)}")
            if key == "optim":
                value = {k: (float(v) if isinstance(v, str) and k in ("lr", "weight_decay", "grad_clip",
                                                                        "min_lr_ratio") else v)
                         for k, v in value.items()}
            kwargs[key] = cls(**value)
        else:
            kwargs[key] = value
    return TrainConfig(**kwargs)


def load_config(path: Optional[str | Path] = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """TrainConfig from a YAML file (optional) plus ``key.sub=value`` overrides."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(tree, dict):
            raise ValueError(f"{path}: expected a YAML mapping at the top level")
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected key.sub=value")
        key, text = item.split("=", 1)
        value = yaml.safe_load(text)
        if isinstance(value, str):  # PyYAML reads "5e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        _set_dotted(tree, key.strip(), value)
    return config_from_dict(tree)


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
