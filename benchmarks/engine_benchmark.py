"""Engine benchmark: every mode, one process each (clean peak-memory figures), results as JSON lines.

Usage (from the repository root):
    python3 benchmarks/engine_benchmark.py VIDEO --model-size tiny --frames 7 --stride 1 --out results.jsonl
Other arguments go to ``gmos benchmark`` unchanged (e.g. ``--pixel-limit 65000 --threads 2``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--modes", default="gmos_s,gmos_online,gmos_offline")
    parser.add_argument("--model-size", default="tiny", choices=("tiny", "full", "default"),
                        help="tiny: tiny random test model; full: official architecture (random unless weight flags "
                        "are passed through); default: the shipped default model")
    parser.add_argument("--frames", type=int, default=7)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--out", default=None, help="append one JSON line per mode here")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    rows = []
    for mode in args.modes.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            model_flags = {"tiny": ["--tiny-random-model"], "full": ["--random-full-model"], "default": []}
            cmd = [sys.executable, "-m", "gmos_core", "benchmark", args.video, "--mode", mode,
                   *model_flags[args.model_size], "--frames", str(args.frames), "--stride", str(args.stride), "--json", tmp.name,
                   *extra]
            print("+", " ".join(cmd), file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, stdout=subprocess.DEVNULL)
            if proc.returncode != 0:
                print(f"{mode}: failed with exit code {proc.returncode}", file=sys.stderr)
                continue
            row = json.loads(Path(tmp.name).read_text())
        rows.append(row)
        ms = row["ms_per_frame"]
        print(f"{mode:13s} " + " ".join(f"{k}={v}" for k, v in ms.items())
              + f"  wall/frame={row['wall_ms_per_frame']} ms  peak_rss={row['peak_rss_mb']} MB", flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(json.dumps(row) + "\n")
    return 0 if len(rows) == len(args.modes.split(",")) else 1


if __name__ == "__main__":
    sys.exit(main())
