"""Frozen-encoder feature cache: Pi3 anchor-frame features and SAM 2 head inputs per training sample, in sharded
safetensors files, so the head trains without running the encoders (the paper's setting: encoders frozen).

    gmos cache-features --config cfg.yaml --out cache/ [--passes 2] [--shard-size 256]

Folder layout::

    index.json                 number of samples, shards, model/window/geometry settings the features depend on
    encoders.safetensors       the encoder weights used (GMOS checkpoint format, components pi3,sam2_image_encoder)
    shard_00000.safetensors    token (n,h,w,C), sam_btn (n,C,g,g), s0, s1 (float16 by default), masks (n,M,m,m)
                               uint8, motion (n,M), valid (n,M) uint8, fg (n,1,m,m) uint8, seconds (n,)

Each pass draws new window lengths (``WindowDataset.set_epoch(pass)``), so ``--passes K`` stores K differently
sampled windows per annotated frame.
"""
from __future__ import annotations

import bisect
import json
import sys
from pathlib import Path

import torch

CACHE_VERSION = 1
FEATURE_KEYS = ("token", "sam_btn", "s0", "s1")
# settings the cached features depend on (the head config and variant do not matter)
MODEL_KEYS = ("size", "pi3", "sam2_config", "sam2_image_size", "pixel_limit", "window_size", "anchor")


def _dtype(name: str) -> torch.dtype:
    table = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if name not in table:
        raise ValueError(f"feature dtype {name!r}; expected one of {sorted(table)}")
    return table[name]


@torch.inference_mode()
def cache_features(cfg, out_dir: str | Path, passes: int = 1, shard_size: int = 256, batch_size: int = 4,
                   dtype: str = "float16", progress: bool = True) -> Path:
    """Write the cache for ``cfg.data.train`` (training.config.TrainConfig) into ``out_dir``."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from gmos_core.weights.metadata import CheckpointMetadata, write_checkpoint
    from training.datasets import WindowSpec, build_dataset, collate
    from training.trainer import Trainer, _worker_init, autocast_dtype, resolve_device, seed_everything

    if passes < 1 or shard_size < 1 or batch_size < 1:
        raise ValueError("passes, shard_size and batch_size must be >= 1")
    store = _dtype(dtype)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)  # same random encoder init as a Trainer with this config
    model = Trainer._build_model_static(cfg, use_cache=False).to(device).eval()
    amp = autocast_dtype(device, cfg.precision)
    window = WindowSpec(cfg.model.window_size, cfg.model.anchor, tuple(cfg.data.window_seconds))
    geometry = Trainer.geometry_for(cfg)
    dataset = build_dataset(cfg.data.train, window, geometry, cfg.seed)
    shards, buffer, count = [], {}, 0

    def flush():
        nonlocal buffer
        if not buffer:
            return
        from safetensors.torch import save_file

        name = f"shard_{len(shards):05d}.safetensors"
        tensors = {k: torch.cat(v).contiguous() for k, v in buffer.items()}
        save_file(tensors, str(out / name))
        shards.append({"file": name, "count": int(tensors["token"].shape[0])})
        buffer = {}

    total = len(dataset) * passes
    bar = tqdm(total=total, desc="cache-features", unit="sample", disable=not progress)
    for p in range(passes):
        dataset.set_epoch(p)
        workers = cfg.data.num_workers
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=workers,
                            worker_init_fn=_worker_init if workers else None)
        for batch in loader:
            pi3 = batch["pi3"].to(device).float().div_(255)
            with (torch.autocast(device.type, dtype=amp) if amp is not None else torch.autocast("cpu", enabled=False)):
                token, sam_btn, high_res = model.encoder_features(pi3, batch["sam"].to(device))
            parts = {"token": token, "sam_btn": sam_btn, "s0": high_res[0], "s1": high_res[1]}
            for key, value in parts.items():
                buffer.setdefault(key, []).append(value.float().to("cpu", store))
            for key in ("masks", "valid", "fg"):
                buffer.setdefault(key, []).append(batch[key].to(torch.uint8))
            buffer.setdefault("motion", []).append(batch["motion"].float())
            buffer.setdefault("seconds", []).append(torch.as_tensor(batch["seconds"], dtype=torch.float32))
            count += batch["pi3"].shape[0]
            bar.update(batch["pi3"].shape[0])
            if sum(t.shape[0] for t in buffer["token"]) >= shard_size:
                flush()
    flush()
    bar.close()
    meta = CheckpointMetadata(variant=cfg.model.variant, anchor=cfg.model.anchor, window_size=cfg.model.window_size,
                              pi3_config=model.pi3.config.to_dict(), head_config={},
                              sam2_config=str(cfg.model.sam2_config_path()), sam2_image_size=cfg.model.image_size,
                              pixel_limit=cfg.model.pixel_limit, components=("pi3", "sam2_image_encoder"),
                              name="feature-cache encoders", trained_on="", training_command=" ".join(sys.argv))
    states = model.component_state_dicts()
    write_checkpoint(out / "encoders.safetensors", {c: states[c] for c in ("pi3", "sam2_image_encoder")}, meta)
    model_dict = cfg.model.to_dict()
    index = {"version": CACHE_VERSION, "num_samples": count, "shards": shards, "dtype": dtype, "passes": passes,
             "model": {k: model_dict[k] for k in MODEL_KEYS}, "window_seconds": list(cfg.data.window_seconds),
             "geometry": {"image_size": geometry.image_size, "pixel_limit": geometry.pixel_limit,
                          "frame_size": list(geometry.frame_size) if geometry.frame_size else None,
                          "max_objects": geometry.max_objects},
             "data": cfg.data.train}
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return out


def _read_index(folder: Path) -> dict:
    path = folder / "index.json"
    if not path.is_file():
        raise ValueError(f"feature cache {folder}: index.json missing; expected a folder written by "
                         "`gmos cache-features`")
    index = json.loads(path.read_text())
    if index.get("version") != CACHE_VERSION:
        raise ValueError(f"feature cache {folder}: version {index.get('version')!r}, expected {CACHE_VERSION}")
    return index


class CachedFeatureDataset:
    """Samples of a feature cache (torch Dataset by duck typing); shards are opened lazily per process."""

    def __init__(self, folder: str | Path, expect_model=None) -> None:
        self.folder = Path(folder)
        self.index = _read_index(self.folder)
        if expect_model is not None:
            wanted = expect_model.to_dict()
            diff = [k for k in MODEL_KEYS if self.index["model"].get(k) != wanted.get(k)]
            if diff:
                raise ValueError(f"feature cache {self.folder} was computed with different model settings "
                                 f"{ {k: self.index['model'].get(k) for k in diff} } than the config "
                                 f"{ {k: wanted.get(k) for k in diff} }; re-run `gmos cache-features`")
        self.starts, total = [], 0
        for shard in self.index["shards"]:
            self.starts.append(total)
            total += shard["count"]
        self.total = total
        self._handles: dict = {}

    def __len__(self) -> int:
        return self.total

    def _handle(self, shard: int):
        from safetensors import safe_open

        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.folder / self.index["shards"][shard]["file"]), framework="pt")
        return self._handles[shard]

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.total:
            raise IndexError(i)
        shard = bisect.bisect_right(self.starts, i) - 1
        j = i - self.starts[shard]
        handle = self._handle(shard)
        out = {}
        for key in handle.keys():
            value = handle.get_slice(key)[j:j + 1][0]
            if key in FEATURE_KEYS:
                value = value.float()
            elif key in ("masks", "fg"):
                value = value.float()
            elif key == "valid":
                value = value.bool()
            out[key] = value
        return out

    def __getstate__(self):  # DataLoader workers reopen the shards themselves
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state


def load_cache_encoders(model, folder: str | Path) -> None:
    """Load the encoder weights a cache was computed with (so exports and validation use the same encoders)."""
    from gmos_core.weights.metadata import read_checkpoint

    path = Path(folder) / "encoders.safetensors"
    if not path.is_file():
        raise ValueError(f"feature cache {folder}: encoders.safetensors missing")
    _, parts = read_checkpoint(path)
    model.pi3.load_state_dict(parts["pi3"])
    model.sam2_image_encoder.load_state_dict(parts["sam2_image_encoder"])
