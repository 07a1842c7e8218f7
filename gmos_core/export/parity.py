"""ONNX ↔ PyTorch parity of the exported GMOS graphs (onnxruntime on CPU against the PyTorch modules).

    python -m gmos_core.export.parity --size full --out /tmp/gmos_onnx        # official sizes, random weights
    python -m gmos_core.export.parity --size tiny --out /tmp/gmos_onnx_tiny

Exports the Pi3 encoder and decoder, the GMOS-S head and the proposer head (random weights: parity does not
depend on the values), runs each graph with onnxruntime at several input sizes and prints, per graph and
size, the largest absolute difference to PyTorch and the largest |PyTorch output| (the scale it is relative
to). The Pi3 graphs are checked end to end (encoder → decoder against ``Pi3Encoder.forward``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gmos_core.export.onnx_export import (HEAD_OUTPUTS, HeadGraph, export_head, export_pi3_decoder,
                                          export_pi3_encoder, head_sample_inputs, onnx_session, run_session)


def pi3_parity(pi3, encoder_session, decoder_session, sizes, window: int = 5, seed: int = 0) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(seed)
    for hw in sizes:
        images = torch.rand(window, 3, *hw, generator=g)
        t0 = time.perf_counter()
        with torch.no_grad():
            ref = pi3(images[None])[0].numpy()
        t_torch = time.perf_counter() - t0
        t0 = time.perf_counter()
        tokens = run_session(encoder_session, images)[0]
        got = run_session(decoder_session, torch.from_numpy(tokens))[0]
        t_onnx = time.perf_counter() - t0
        if got.shape != ref.shape:
            raise AssertionError(f"Pi3 ONNX output {got.shape} != PyTorch {ref.shape} at {hw}")
        rows.append({"graph": "pi3_encoder+pi3_decoder", "input": f"{window}x3x{hw[0]}x{hw[1]}",
                     "max_abs_diff": float(np.abs(got - ref).max()), "max_abs_ref": float(np.abs(ref).max()),
                     "torch_s": round(t_torch, 2), "onnxruntime_s": round(t_onnx, 2)})
    return rows


def head_parity(head, variant, session, token_sizes, batch: int = 1, seed: int = 0) -> list[dict]:
    rows = []
    for hw in token_sizes:
        args = head_sample_inputs(head, hw, batch=batch, seed=seed)
        with torch.no_grad():
            ref = [t.numpy() for t in HeadGraph(head, variant)(*args)]
        got = run_session(session, *args)
        for name, r, o in zip(HEAD_OUTPUTS[variant], ref, got):
            if r.shape != o.shape:
                raise AssertionError(f"{variant} output {name}: ONNX {o.shape} != PyTorch {r.shape}")
            rows.append({"graph": f"head_{variant}", "output": name, "input": f"token {batch}x{hw[0]}x{hw[1]}",
                         "max_abs_diff": float(np.abs(o - r).max()), "max_abs_ref": float(np.abs(r).max())})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--out", required=True, help="folder for the exported graphs (several GB at full size)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    from gmos_core import models as M

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = Path(args.out)
    pixel_limit = 255000
    pi3 = M.build_pi3_encoder(args.size).eval()
    heads = {"gmos_s": M.build_gmos_s(args.size).eval(), "proposer": M.build_proposer(args.size).eval()}
    # Small Pi3 inputs keep the CPU time down (parity does not depend on the size; dynamic H x W is checked
    # with several); the heads run at the default 27x48 token grid and another one.
    pi3_sizes = [(112, 196), (84, 84), (56, 140)] if args.size == "full" else [(70, 112), (98, 56), (42, 42)]
    token_sizes = [(27, 48), (31, 41)] if args.size == "full" else [(5, 8), (3, 4)]
    timings = {}
    t0 = time.monotonic()
    export_pi3_encoder(pi3, out / "pi3_encoder.onnx", pi3_sizes[0], pixel_limit)
    timings["export pi3_encoder s"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    export_pi3_decoder(pi3, out / "pi3_decoder.onnx", 5, pi3_sizes[0], pixel_limit)
    timings["export pi3_decoder s"] = round(time.monotonic() - t0, 1)
    rows = []
    t0 = time.monotonic()
    enc, dec = onnx_session(out / "pi3_encoder.onnx", args.threads), onnx_session(out / "pi3_decoder.onnx", args.threads)
    timings["onnxruntime load pi3 s"] = round(time.monotonic() - t0, 1)
    rows += pi3_parity(pi3, enc, dec, pi3_sizes)
    del enc, dec
    for variant, head in heads.items():
        t0 = time.monotonic()
        path = export_head(head, out / f"head_{variant}.onnx", token_sizes[0], pixel_limit)
        timings[f"export head_{variant} s"] = round(time.monotonic() - t0, 1)
        rows += head_parity(head, variant, onnx_session(path, args.threads), token_sizes)
    for row in rows:
        print(json.dumps(row), flush=True)
    print(json.dumps(timings), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "rows": rows, "timings": timings}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
