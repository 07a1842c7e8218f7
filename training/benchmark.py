"""Training throughput on this machine: samples/s of the data pipeline, of end-to-end tiny training and of head
training from cached features.

    python -m training.benchmark [--steps 6] [--threads 2] [--image-size 256] [--pixel-limit 20000]

Each figure is measured after one warm-up step, in one process; the data figure is one process rendering and
pre-processing samples (what one DataLoader worker delivers).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch


def _tree(out: str, image_size: int, pixel_limit: int, batch: int, trainable: list, size: tuple) -> dict:
    return {"seed": 0, "model": {"variant": "proposer", "size": "tiny", "sam2_image_size": image_size,
                                 "pixel_limit": pixel_limit},
            "optim": {"lr": 1e-3, "warmup_steps": 1, "max_steps": 10_000, "effective_batch": batch,
                      "batch_size": batch},
            "data": {"train": [{"kind": "synthetic", "seeds": "0-15", "width": size[0], "height": size[1],
                                "num_frames": 24, "fps": 24.0}], "max_objects": 8, "num_workers": 0},
            "trainable_encoders": trainable, "output_dir": out, "log_every": 1000, "checkpoint_every": 100_000}


def _time_steps(trainer, steps: int) -> float:
    from training.datasets import collate

    batches = [collate([trainer.train_set[(s * trainer.cfg.optim.batch_size + i) % len(trainer.train_set)]
                        for i in range(trainer.cfg.optim.batch_size)]) for s in range(steps + 1)]
    trainer.ddp_model.train()
    trainer.micro_step(batches[0], True)
    trainer.optimizer_step()
    start = time.perf_counter()
    for batch in batches[1:]:
        trainer.micro_step(batch, True)
        trainer.optimizer_step()
    return steps * trainer.cfg.optim.batch_size / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--pixel-limit", type=int, default=20000)
    parser.add_argument("--size", default="320x180", help="rendered frame size WxH")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from training.config import config_from_dict
    from training.features import cache_features
    from training.synthetic import parse_size
    from training.trainer import Trainer

    size = parse_size(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        tree = _tree(tmp + "/e2e", args.image_size, args.pixel_limit, args.batch, ["pi3", "sam2_image_encoder"], size)
        trainer = Trainer(config_from_dict(tree), resume=False, progress=False)
        ds = trainer.train_set
        ds[0]
        start = time.perf_counter()
        n = 3 * args.batch
        for i in range(1, n + 1):
            ds[i % len(ds)]
        data_rate = n / (time.perf_counter() - start)
        e2e = _time_steps(trainer, args.steps)
        frozen_tree = _tree(tmp + "/frozen", args.image_size, args.pixel_limit, args.batch, [], size)
        frozen = _time_steps(Trainer(config_from_dict(frozen_tree), resume=False, progress=False), args.steps)
        frozen_tree["data"]["train"][0]["seeds"] = "0-1"
        cache_features(config_from_dict(frozen_tree), tmp + "/cache", progress=False)
        frozen_tree["data"]["feature_cache"] = tmp + "/cache"
        frozen_tree["output_dir"] = tmp + "/cached"
        cached = _time_steps(Trainer(config_from_dict(frozen_tree), resume=False, progress=False), args.steps)
    print(f"tiny proposer, SAM 2 input {args.image_size}, Pi3 budget {args.pixel_limit} px, frames {args.size}, "
          f"batch {args.batch}, {args.threads} torch threads")
    print(f"  data pipeline (1 process):           {data_rate:7.2f} samples/s")
    print(f"  end to end (encoders trained):       {e2e:7.2f} samples/s")
    print(f"  frozen encoders, from raw frames:    {frozen:7.2f} samples/s (data excluded)")
    print(f"  head from cached features:           {cached:7.2f} samples/s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
