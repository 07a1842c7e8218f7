"""One-shot GPU benchmark of GMOS (random weights of the official sizes, default resolution).

    bash benchmarks/gpu_check.sh                 # on a GPU machine (installs what it needs, then runs this)
    bash benchmarks/gpu_check.sh --cpu-smoke     # a few seconds on CPU with the tiny models (checks the script)

Measures, within an internal time budget (``--budget-s``; each section is skipped once too little is left,
and a failing section records its error and the run goes on):

* environment: GPU, driver, torch/CUDA, sam2, onnxruntime providers, TensorRT / torch-tensorrt presence;
* matmul_peak: a bf16 matrix product, the measured arithmetic ceiling of this card;
* stages: per-stage latency (Pi3 DINOv2 encode of 1 frame, Pi3 decoder over one 5-frame window, SAM 2.1
  Hiera-L image encoder at 1024², GMOS-S head, proposer head) per precision (fp32, bf16, fp16), CUDA events,
  warm-up then the median of repeats, peak GPU memory, achieved TFLOP/s against the FLOP model of
  /work/shared/docs/performance_model.md (§1.2);
* engine: StreamingEngine steady-state latency per output frame and throughput of GMOS-S and online GMOS with
  K = 1, 3, 10 tracked objects (the proposer's outputs are replaced after the head ran, so that exactly K
  confident moving objects are seeded and none is added later), per precision, with the ratio to the
  physical floor (TFLOP per frame / dense peak; performance_model.md §1.3–1.4);
* sdpa: the Pi3 decoder with each scaled-dot-product-attention backend;
* node: NodeCore (the ROS node's logic) on a synthetic real-time-paced stream at 10, 15 and 30 Hz:
  end-to-end latency p50/p95 (source stamp → output, look-ahead included) and skipped windows;
* engine_compiled: the engine with the node's ``torch_compile`` (Pi3 decoder compiled), GMOS-S and K=3;
* compile: torch.compile of the Pi3 decoder (default and CUDA-graph mode) and DINOv2 (in a child process with
  its own timeout).

Writes ``gpu_check.json`` and ``gpu_check.md`` into ``--out`` (default: $OUT if set, else
benchmarks/gpu_results/) after every section, so a run cut short still leaves what it measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# FLOP model (performance_model.md §1.2 / §1.3, GFLOP at the 16:9 default resolution 378x672, Hiera-L).
GFLOP = {"pi3_encode_1": 953.7, "pi3_decode_window": 9637.1, "sam2_encoder": 1822.8,
         "head_gmos_s": 86.9, "head_proposer": 93.5, "propagator_per_object": 620.3}
FRAME_TFLOP = {"gmos_s": 12.50, "gmos_online": lambda k: 12.51 + 0.62 * k}
# Dense datasheet peaks in TFLOP/s (performance_model.md §1.4; the H200 has the H100 SXM's arithmetic).
DATASHEET_PEAKS = {
    "H100": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},
    "H200": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},
    "A6000": {"bf16": 154.8, "fp16": 154.8, "fp32": 38.7},
    "Orin": {"bf16": 42.5, "fp16": 42.5, "fp32": 5.3},
}
SECTION_ESTIMATES_S = {"environment": 5, "matmul_peak": 5, "build": 20, "stages": 30, "engine": 40,
                       "sdpa": 10, "node": 45, "engine_compiled": 35, "compile": 45}


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------- timing
class Timer:
    """Median latency of a callable: CUDA events on a GPU (synchronised), perf_counter on CPU."""

    def __init__(self, torch, device):
        self.torch = torch
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def __call__(self, fn, warmup: int, repeats: int) -> dict:
        torch = self.torch
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(repeats):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append(1000.0 * (time.perf_counter() - t0))
        return {"median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3),
                "repeats": repeats, "warmup": warmup}

    def peak_reset(self):
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def peak_mib(self):
        if self.cuda:
            return round(self.torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        import resource
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # process peak RSS (CPU)


# ----------------------------------------------------------------------------------------------- results
class Results:
    def __init__(self, out_dir: Path, budget_s: float, args):
        self.out_dir = out_dir
        self.t0 = time.monotonic()
        self.budget_s = budget_s
        self.data = {"command": " ".join(sys.argv), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "smoke": bool(args.cpu_smoke), "budget_s": budget_s, "sections": {}}

    def remaining(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def section(self, name: str, fn, *a, estimate_s: float | None = None):
        estimate = SECTION_ESTIMATES_S.get(name, 10) if estimate_s is None else estimate_s
        entry = self.data["sections"].setdefault(name, {})
        if self.remaining() < estimate:
            entry["status"] = f"skipped: {self.remaining():.0f} s of the budget left, needs about {estimate} s"
            log(f"{name}: {entry['status']}")
            self.save()
            return None
        log(f"{name}: start ({self.remaining():.0f} s of budget left)")
        t0 = time.monotonic()
        try:
            value = fn(entry, *a)
            entry.setdefault("status", "ok")
        except Exception as err:  # record and go on: one broken section must not cost the others
            entry["status"] = f"error: {type(err).__name__}: {err}"
            entry["traceback"] = traceback.format_exc(limit=6)[-2000:]
            log(f"{name}: FAILED {type(err).__name__}: {err}")
            value = None
        entry["seconds"] = round(time.monotonic() - t0, 1)
        log(f"{name}: {entry['status']} in {entry['seconds']} s")
        self.save()
        return value

    def save(self):
        self.data["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "gpu_check.json").write_text(json.dumps(self.data, indent=1, default=str))
        (self.out_dir / "gpu_check.md").write_text(render_markdown(self.data))


def _fmt(value, digits=1):
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(data: dict) -> str:
    s = data.get("sections", {})
    env = s.get("environment", {})
    lines = [f"## GMOS GPU check — {env.get('gpu', 'unknown device')}", ""]
    lines.append(f"{'CPU SMOKE RUN (tiny models, numbers mean nothing)' if data.get('smoke') else 'Random weights of the official sizes'}; "
                 f"video {env.get('video_wh', '?')} → Pi3 {env.get('pi3_hw', '?')}, SAM 2 1024², window 5; "
                 f"torch {env.get('torch', '?')}, CUDA {env.get('cuda', '?')}, driver {env.get('driver', '?')}; "
                 f"started {data.get('started_utc')}, {data.get('elapsed_s')} s. Command: `{data.get('command')}`.")
    lines.append("")
    lines.append("| section | status | s |")
    lines.append("|---|---|---|")
    for name, entry in s.items():
        lines.append(f"| {name} | {str(entry.get('status', '?'))[:160]} | {entry.get('seconds', '—')} |")
    mm = s.get("matmul_peak", {})
    if "tflops" in mm:
        lines += ["", f"Measured bf16 matmul ({mm.get('shape')}): **{mm['tflops']} TFLOP/s**; "
                  f"datasheet dense peak used for the floor: {env.get('peak_tflops', '—')}."]
    st = s.get("stages", {}).get("rows", [])
    if st:
        lines += ["", "### Per-stage latency (batch 1, median of repeats after warm-up)", "",
                  "| stage | precision | median ms | min ms | peak GPU MiB | TFLOP/s achieved | % of dense peak |",
                  "|---|---|---|---|---|---|---|"]
        for r in st:
            lines.append(f"| {r['stage']} | {r['precision']} | {_fmt(r.get('median_ms'), 2)} | {_fmt(r.get('min_ms'), 2)} | "
                         f"{_fmt(r.get('peak_mib'), 0)} | {_fmt(r.get('tflops'), 1)} | {_fmt(r.get('pct_of_peak'), 1)} |"
                         + (f" error: {r['error'][:120]}" if r.get("error") else ""))
    en = s.get("engine", {}).get("rows", [])
    if en:
        lines += ["", "### StreamingEngine steady state (batch 1, one output frame per pushed frame)", "",
                  "| pipeline | precision | K tracks held | ms/frame (median) | frames/s | floor ms | speed / floor | "
                  "pi3 enc | pi3 dec | sam2 enc | head | propagator | peak GPU MiB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in en:
            st_ms = r.get("stage_ms", {})
            lines.append(
                f"| {r['pipeline']} | {r['precision']} | {_fmt(r.get('tracks_held'))} | {_fmt(r.get('median_ms'), 1)} | "
                f"{_fmt(r.get('fps'), 2)} | {_fmt(r.get('floor_ms'), 1)} | {_fmt(r.get('fraction_of_floor'), 3)} | "
                + " | ".join(_fmt(st_ms.get(k), 1) for k in ("pi3_encoder", "pi3_decoder", "sam2_encoder", "head",
                                                            "propagator"))
                + f" | {_fmt(r.get('peak_mib'), 0)} |" + (f" error: {r['error'][:120]}" if r.get("error") else ""))
    sd = s.get("sdpa", {}).get("rows", [])
    if sd:
        lines += ["", "### Pi3 decoder (one 5-frame window) per SDPA backend", "",
                  "| backend | precision | median ms | note |", "|---|---|---|---|"]
        for r in sd:
            lines.append(f"| {r['backend']} | {r['precision']} | {_fmt(r.get('median_ms'), 2)} | {r.get('error', '')[:120]} |")
    nd = s.get("node", {}).get("rows", [])
    if nd:
        lines += ["", "### NodeCore on a real-time-paced synthetic stream (worker thread, wall clock)", "",
                  "| pipeline | precision | input Hz | seconds | received | segmented | skipped windows | dropped frames | "
                  "look-ahead ms | latency p50 ms | latency p95 ms | output Hz |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in nd:
            lines.append(f"| {r['pipeline']} | {r['precision']} | {r['rate_hz']} | {_fmt(r.get('seconds'))} | "
                         f"{r.get('received', '—')} | {r.get('segmented', '—')} | {r.get('skipped_windows', '—')} | "
                         f"{r.get('dropped_frames', '—')} | {_fmt(r.get('lookahead_ms'), 0)} | "
                         f"{_fmt(r.get('latency_p50_ms'), 1)} | {_fmt(r.get('latency_p95_ms'), 1)} | "
                         f"{_fmt(r.get('output_hz'), 2)} |" + (f" error: {r['error'][:120]}" if r.get("error") else ""))
    ec = s.get("engine_compiled", {}).get("rows", [])
    if ec:
        lines += ["", f"### StreamingEngine with the node's torch_compile (Pi3 decoder compiled, backend "
                  f"{s['engine_compiled'].get('backend')})", "", "| pipeline | precision | ms/frame (median) | frames/s |",
                  "|---|---|---|---|"]
        for r in ec:
            lines.append(f"| {r['pipeline']} | {r['precision']} | {_fmt(r.get('median_ms'), 1)} | {_fmt(r.get('fps'), 2)} |"
                         + (f" error: {r['error'][:120]}" if r.get("error") else ""))
    cp = s.get("compile", {})
    if cp.get("rows"):
        lines += ["", "### torch.compile (child process)", "", "| module | precision | eager ms | compiled ms | "
                  "compile s | max abs diff |", "|---|---|---|---|---|---|"]
        for r in cp["rows"]:
            lines.append(f"| {r['module']} | {r['precision']} | {_fmt(r.get('eager_ms'), 2)} | {_fmt(r.get('compiled_ms'), 2)} | "
                         f"{_fmt(r.get('compile_s'), 1)} | {_fmt(r.get('max_abs_diff'), 4)} |")
    lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- sections
def section_environment(entry, ctx):
    torch = ctx.torch
    entry["python"] = platform.python_version()
    entry["torch"] = torch.__version__
    entry["cuda"] = torch.version.cuda
    entry["cuda_available"] = torch.cuda.is_available()
    entry["device"] = str(ctx.device)
    entry["video_wh"] = f"{ctx.video_wh[0]}x{ctx.video_wh[1]}"
    entry["pi3_hw"] = f"{ctx.pi3_hw[0]}x{ctx.pi3_hw[1]}"
    entry["model_size"] = ctx.size
    if ctx.device.type == "cuda":
        props = torch.cuda.get_device_properties(ctx.device)
        entry["gpu"] = props.name
        entry["capability"] = f"{props.major}.{props.minor}"
        entry["sm_count"] = props.multi_processor_count
        entry["memory_gib"] = round(props.total_memory / 2 ** 30, 1)
        entry["cudnn"] = torch.backends.cudnn.version()
        entry["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        entry["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=15)
            entry["nvidia_smi"] = smi.stdout.strip()
            entry["driver"] = smi.stdout.split(",")[1].strip() if smi.stdout.count(",") >= 1 else "?"
        except Exception as err:
            entry["nvidia_smi"] = f"unavailable: {err}"
        peak = next((v for k, v in DATASHEET_PEAKS.items() if k in props.name), None)
        entry["peak_tflops"] = peak or "unknown GPU: only the measured matmul ceiling applies"
        ctx.peaks = peak
    else:
        entry["gpu"] = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        entry["driver"] = "n/a"
        ctx.peaks = None
    for name in ("sam2", "hydra", "onnx", "onnxruntime", "tensorrt", "torch_tensorrt", "numpy", "scipy"):
        try:
            module = __import__(name)
            entry[f"{name}_version"] = getattr(module, "__version__", "present")
            if name == "onnxruntime":
                entry["onnxruntime_providers"] = module.get_available_providers()
        except Exception as err:
            entry[f"{name}_version"] = f"absent ({type(err).__name__})"
    try:
        from gmos_core.export import trt_status

        entry["gmos_tensorrt_status"] = trt_status()
    except Exception as err:
        entry["gmos_tensorrt_status"] = f"unavailable: {type(err).__name__}: {err}"
    log(f"environment: {entry.get('gpu')} torch {entry['torch']} cuda {entry['cuda']} sam2 {entry['sam2_version']} "
        f"tensorrt {entry['tensorrt_version']}")


def section_matmul(entry, ctx):
    torch = ctx.torch
    n = 8192 if ctx.device.type == "cuda" else 256
    a = torch.randn(n, n, device=ctx.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=ctx.device, dtype=torch.bfloat16)
    t = ctx.timer(lambda: a @ b, warmup=3, repeats=10)
    entry["shape"] = f"{n}x{n}x{n} bf16"
    entry["median_ms"] = t["median_ms"]
    entry["tflops"] = round(2 * n ** 3 / (t["median_ms"] / 1000) / 1e12, 1)
    ctx.measured_bf16_tflops = entry["tflops"]
    del a, b


def section_build(entry, ctx):
    """Random weights of the official sizes (Pi3 full, SAM 2.1 Hiera-L, both heads), built here rather than by
    build_engine_models so that no default/shipped weight file can be picked up."""
    torch = ctx.torch
    from gmos_core import models as M
    from gmos_core.engine.models import EngineModels
    from gmos_core.models.sam2_features import PACKAGED_L_CONFIG, TINY_CONFIG_PATH

    t0 = time.monotonic()
    sam_config = PACKAGED_L_CONFIG if ctx.size == "full" else str(TINY_CONFIG_PATH)

    def build():
        torch.manual_seed(0)
        pi3 = M.build_pi3_encoder(ctx.size)
        proposer = M.build_proposer(ctx.size)
        head_s = M.build_gmos_s(ctx.size)
        predictor = M.build_sam2_predictor(sam_config, None, device=str(ctx.device))
        return pi3, proposer, head_s, predictor

    try:  # initialise the random weights on the GPU directly (a 1 B-parameter CPU init takes long)
        if ctx.device.type == "cuda":
            with torch.device(ctx.device):
                pi3, proposer, head_s, predictor = build()
        else:
            pi3, proposer, head_s, predictor = build()
    except Exception as err:
        entry["gpu_init_error"] = f"{type(err).__name__}: {err} (built on CPU instead)"
        pi3, proposer, head_s, predictor = build()
    if ctx.device.type == "cpu":
        M.install_memory_dtype_shim(predictor)  # as build_engine_models: fp32 tracking without autocast
    for module in (pi3, proposer, head_s):
        module.to(ctx.device).eval()
        for p in module.parameters():
            p.requires_grad_(False)
    features = M.Sam2Features(predictor)
    common = dict(anchor="center", window_size=5, random_weights=True, device=str(ctx.device), precision="auto")
    online = EngineModels(pi3, proposer, features, mode="gmos_online", description="benchmark proposer", **common)
    gmos_s = EngineModels(pi3, head_s, features, mode="gmos_s", description="benchmark GMOS-S", **common)
    online.description = f"{ctx.size} models, SAM 2 {sam_config}, random weights"
    ctx.models = {"gmos_online": online, "gmos_s": gmos_s}
    count = lambda m: round(sum(p.numel() for p in m.parameters()) / 1e6, 2)
    entry["params_m"] = {"pi3": count(online.pi3), "sam2_image_encoder": count(online.sam.predictor.image_encoder),
                         "sam2_total": count(online.sam.predictor), "proposer": count(online.head),
                         "gmos_s": count(head_s)}
    entry["build_s"] = round(time.monotonic() - t0, 1)
    entry["description"] = online.description
    log(f"build: params {entry['params_m']} in {entry['build_s']} s")


def _autocast(ctx, precision):
    import contextlib

    torch = ctx.torch
    if ctx.device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def _peak_for(ctx, precision):
    if not ctx.peaks:
        return None
    return ctx.peaks.get(precision)


def section_stages(entry, ctx):
    torch = ctx.torch
    online, gmos_s = ctx.models["gmos_online"], ctx.models["gmos_s"]
    pi3, sam = online.pi3, online.sam
    hp, wp = ctx.pi3_hw
    rows = entry.setdefault("rows", [])
    frames = torch.rand(5, 3, hp, wp, device=ctx.device)
    sam_image = torch.randn(1, 3, sam.image_size, sam.image_size, device=ctx.device)
    warm, reps = ctx.warmup, ctx.repeats

    def add(stage, precision, fn, flop_key=None):
        row = {"stage": stage, "precision": precision}
        if ctx.results.remaining() < 5:
            row["error"] = "skipped: budget"
            rows.append(row)
            return
        ctx.timer.peak_reset()
        try:
            row.update(ctx.timer(fn, warm, reps))
            row["peak_mib"] = ctx.timer.peak_mib()
            if flop_key and not ctx.smoke:
                row["tflops"] = round(GFLOP[flop_key] / row["median_ms"], 1)  # GFLOP / ms = TFLOP/s
                peak = _peak_for(ctx, precision)
                if peak:
                    row["pct_of_peak"] = round(100 * row["tflops"] / peak, 1)
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {err}"
        rows.append(row)
        log(f"stages: {stage} {precision}: {row.get('median_ms', row.get('error'))} ms")

    with torch.inference_mode():
        for precision in ctx.precisions:
            with _autocast(ctx, precision):
                hidden = pi3.encode_frames(frames[:1]).expand(5, -1, -1).contiguous()
                add("Pi3 DINOv2 encode, 1 frame", precision, lambda: pi3.encode_frames(frames[:1]), "pi3_encode_1")
                add("Pi3 decoder, 1 window of 5", precision, lambda: pi3.decode(hidden, 5, hp, wp), "pi3_decode_window")
            autocast_arg = {"fp32": False, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
            saved = sam.autocast
            sam.autocast = autocast_arg
            try:
                add("SAM 2 image encoder + head inputs, 1 frame", precision, lambda: sam(sam_image), "sam2_encoder")
            finally:
                sam.autocast = saved
        backbone, sam_btn, high_res = sam(sam_image)
        token = torch.randn(1, hp // ctx.patch, wp // ctx.patch, ctx.pi3_dim, device=ctx.device)
        add("GMOS-S head (fp32, engine policy)", "fp32", lambda: gmos_s.run_head(token, sam_btn, high_res), "head_gmos_s")
        add("proposer head (fp32, engine policy)", "fp32", lambda: online.run_head(token, sam_btn, high_res),
            "head_proposer")
        for precision in [p for p in ctx.precisions if p != "fp32"]:
            with _autocast(ctx, precision):
                add("GMOS-S head under autocast", precision, lambda: gmos_s.head(token, sam_btn, high_res), "head_gmos_s")
                add("proposer head under autocast", precision, lambda: online.head(token, sam_btn, high_res),
                    "head_proposer")
    del frames, hidden, sam_image, backbone


class CraftedProposals:
    """Replaces the proposer's outputs (after the real head ran, so its time counts) with K disjoint square
    blobs: confident and moving on the first call (the propagator seeds exactly K tracks), then moving but
    with a low predicted IoU (not confident), so no new track starts and K stays constant."""

    def __init__(self, models, k: int):
        self.models, self.k, self.calls = models, k, 0
        self.inner = models.run_head

    def __call__(self, token, sam_btn, high_res):
        import torch

        out = dict(self.inner(token, sam_btn, high_res))
        mask = out["mask"]
        b, q, h, w = mask.shape
        new_mask = torch.full_like(mask, -10.0)
        cols = 5 if self.k > 3 else self.k
        side = min(h, w) // 8
        for j in range(self.k):
            r, c = divmod(j, cols)
            y, x = side + r * 2 * side, side + c * int(1.5 * side)
            new_mask[:, j, y:y + side, x:x + side] = 10.0
        motion = torch.full_like(out["motion_logits"], -5.0)
        motion[:, : self.k] = 5.0
        iou = torch.full_like(out["iou_pred"], 0.95 if self.calls == 0 else 0.1)
        self.calls += 1
        out.update(mask=new_mask, motion_logits=motion, iou_pred=iou)
        return out


def _synthetic_frames(np, count, width, height):
    """Frames with a moving square on a textured background (uint8 RGB)."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)),
                     ((xx + yy) % 64) * 4], -1).astype(np.uint8)
    frames = []
    for i in range(count):
        f = base.copy()
        s = max(2, height // 6)
        x0 = (i * max(1, width // 40)) % max(1, width - s)
        f[height // 3: height // 3 + s, x0: x0 + s] = (250, 30, 30)
        frames.append(f)
    return frames


def _make_engine(ctx, pipeline, precision, k=None, fps=30.0, tracker="sam2"):
    from gmos_core.engine.config import EngineConfig
    from gmos_core.engine.streaming import StreamingEngine
    from gmos_core.propagator import PropagatorConfig

    mode = "gmos_s" if pipeline == "gmos_s" else "gmos_online"
    models = ctx.models[mode]
    models.precision = precision
    models.sam.autocast = {"fp32": False, "bf16": ctx.torch.bfloat16, "fp16": ctx.torch.float16}[precision]
    models.__dict__.pop("run_head", None)
    if k:
        models.run_head = CraftedProposals(models, k)
    # The engine's precision option covers the encoders; the propagator keeps the official bf16 autocast on CUDA
    # (PropagatorConfig.cuda_bf16_autocast), as in the node. Tracks are never dropped, so K stays fixed.
    extra = {"propagator_config": PropagatorConfig(max_absent_frames=0)}
    kwargs = dict(mode=mode, fps=fps, device=str(ctx.device), precision=precision, pixel_limit=ctx.pixel_limit,
                  extra=extra)
    if "tracker" in {f.name for f in dataclasses.fields(EngineConfig)}:
        kwargs["tracker"] = tracker  # K tracks are SAM 2 propagator objects (the official tracker)
    config = EngineConfig(**kwargs)
    return StreamingEngine(config, models)


def _restore_models(ctx):
    for models in ctx.models.values():
        models.__dict__.pop("run_head", None)
        models.precision = "auto"
        models.sam.autocast = True


def section_engine(entry, ctx):
    torch, np = ctx.torch, ctx.np
    rows = entry.setdefault("rows", [])
    width, height = ctx.video_wh
    frames = _synthetic_frames(np, 8, width, height)
    entry["protocol"] = (f"{ctx.engine_warmup} pushes of warm-up (window fill, first-call costs, the propagator's "
                         "memory bank filled), then "
                         f"{ctx.engine_frames} timed pushes at 30 fps stamps (stride 3); each timed push yields one "
                         "segmented frame; wall time per push, synchronised")
    entry["note"] = ("precision = the encoders' (Pi3, SAM 2 image encoder); heads fp32; the propagator always "
                     "runs under the official bf16 autocast on CUDA (fp32 on CPU)")
    pipelines = [("gmos_s", None), ("gmos_online", 1), ("gmos_online", 3), ("gmos_online", 10)]
    if ctx.smoke:
        pipelines = pipelines[:3]  # K=10 costs seconds per frame on a CPU
    # fp32 is ~2.5x slower: only GMOS-S and K=3 there, to leave budget for the node and compile sections
    configs = [(p, pipe, k, "sam2") for p in ctx.engine_precisions for pipe, k in pipelines
               if p != "fp32" or ctx.smoke or k in (None, 3)]
    # the shipped default model's tracker (IoU matching instead of SAM 2 memory), at the first precision only
    configs.insert(len(pipelines), (ctx.engine_precisions[0], "gmos_online", 3, "iou"))
    for precision, pipeline, k, tracker in configs:
        name = pipeline if k is None else f"{pipeline} K={k}" + (" (iou tracker)" if tracker == "iou" else "")
        row = {"pipeline": name, "precision": precision}
        rows.append(row)
        need = 4 if precision != "fp32" or ctx.smoke else 12
        if ctx.results.remaining() < need:
            row["error"] = "skipped: budget"
            continue
        try:
            engine = _make_engine(ctx, pipeline, precision, k, tracker=tracker)
            period = int(1e9 / 30)
            times, stage = [], {}
            ctx.timer.peak_reset()
            n_total = ctx.engine_warmup + ctx.engine_frames
            for i in range(n_total):
                ctx.timer.sync()
                t0 = time.perf_counter()
                results = engine.push(frames[i % len(frames)], i * period, "cam")
                ctx.timer.sync()
                dt = 1000.0 * (time.perf_counter() - t0)
                if i >= ctx.engine_warmup:
                    times.append(dt)
                    for r in results:
                        if not r.skipped:
                            for key, value in r.timings_ms.items():
                                stage.setdefault(key, []).append(value)
            row["median_ms"] = round(statistics.median(times), 2)
            row["p95_ms"] = round(float(np.percentile(times, 95)), 2)
            row["fps"] = round(1000.0 / row["median_ms"], 2)
            row["stage_ms"] = {key: round(statistics.median(v), 2) for key, v in stage.items()}
            row["peak_mib"] = ctx.timer.peak_mib()
            prop = getattr(engine._mode, "propagator", None) or getattr(engine._mode, "tracker", None)
            ids = getattr(prop, "track_ids", None)
            row["tracks_held"] = len(ids) if ids is not None else None
            tflop = FRAME_TFLOP["gmos_s"] if pipeline == "gmos_s" else FRAME_TFLOP["gmos_online"](k)
            peak = _peak_for(ctx, precision)
            if peak and not ctx.smoke:
                row["floor_ms"] = round(1000.0 * tflop / peak, 1)
                row["fraction_of_floor"] = round(row["floor_ms"] / row["median_ms"], 3)
            if getattr(ctx, "measured_bf16_tflops", None) and precision != "fp32" and not ctx.smoke:
                row["floor_ms_measured_matmul"] = round(1000.0 * tflop / ctx.measured_bf16_tflops, 1)
            engine.reset()
            del engine
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {err}"
            row["traceback"] = traceback.format_exc(limit=4)[-1200:]
        finally:
            _restore_models(ctx)
        log(f"engine: {name} {precision}: {row.get('median_ms', row.get('error'))} ms/frame "
            f"tracks={row.get('tracks_held')} stages={row.get('stage_ms')}")


def section_sdpa(entry, ctx):
    torch = ctx.torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    pi3 = ctx.models["gmos_online"].pi3
    hp, wp = ctx.pi3_hw
    rows = entry.setdefault("rows", [])
    precision = "bf16" if ctx.device.type == "cuda" else "fp32"
    with torch.inference_mode(), _autocast(ctx, precision):
        hidden = pi3.encode_frames(torch.rand(1, 3, hp, wp, device=ctx.device)).expand(5, -1, -1).contiguous()
        backends = [("default (PyTorch's choice)", None), ("flash", SDPBackend.FLASH_ATTENTION),
                    ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                    ("math", SDPBackend.MATH)]
        for label, backend in backends:
            row = {"backend": label, "precision": precision}
            rows.append(row)
            if ctx.results.remaining() < 5:
                row["error"] = "skipped: budget"
                continue
            try:
                if backend is None:
                    row.update(ctx.timer(lambda: pi3.decode(hidden, 5, hp, wp), 1, ctx.repeats))
                else:
                    with sdpa_kernel([backend]):
                        row.update(ctx.timer(lambda: pi3.decode(hidden, 5, hp, wp), 1, ctx.repeats))
            except Exception as err:
                row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
            log(f"sdpa: {label}: {row.get('median_ms', row.get('error'))}")


def _image_message(np, rgb, stamp_ns):
    height, width = rgb.shape[:2]
    stamp = SimpleNamespace(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp, frame_id="camera"), height=height, width=width,
                           encoding="rgb8", is_bigendian=0, step=width * 3, data=rgb.tobytes())


def _node_params(ctx, pipeline, precision):
    import dataclasses

    from gmos_core.bridge.params import NodeParams

    names = {f.name for f in dataclasses.fields(NodeParams)}
    wanted = {"mode": pipeline, "device": str(ctx.device) if ctx.device.type == "cuda" else "cpu",
              "precision": precision, "fps": 0.0, "tiny_random_model": ctx.smoke}
    if "mode" not in names:  # older NodeParams named it 'model'
        wanted["model"] = wanted.pop("mode")
    return NodeParams(**{k: v for k, v in wanted.items() if k in names})


def section_node(entry, ctx):
    np = ctx.np
    from gmos_core.bridge.core import NodeCore

    rows = entry.setdefault("rows", [])
    width, height = ctx.video_wh
    frames = _synthetic_frames(np, 8, width, height)
    precision = "bf16" if ctx.device.type == "cuda" else "fp32"
    entry["protocol"] = (f"a feeder thread publishes frames at the input rate with wall-clock stamps for "
                         f"{ctx.node_seconds} s; the NodeCore worker thread runs the engine (batch 1, the node's "
                         "overload policy); latency = output time - source stamp (includes the centred window's "
                         "look-ahead); the results still pending at the end are flushed and not counted")
    plan = [("gmos_online", 3, r) for r in (10, 15, 30)] + [("gmos_s", None, 30)]
    if ctx.smoke:
        plan = [("gmos_online", 1, 10), ("gmos_s", None, 30)]
    for pipeline, k, rate in plan:
        name = pipeline if k is None else f"{pipeline} K={k}"
        row = {"pipeline": name, "precision": precision, "rate_hz": rate}
        rows.append(row)
        if ctx.results.remaining() < ctx.node_seconds + 8:
            row["error"] = "skipped: budget"
            continue
        try:
            engine = _make_engine(ctx, pipeline, precision, k, fps=float(rate))
            params = _node_params(ctx, pipeline, precision)
            core = NodeCore(params, engine_factory=lambda _params: engine)
            core.activate()
            # warm-up outside the timed stream: first-call costs (cuDNN/cuBLAS plans) must not count
            for i in range(ctx.engine_warmup):
                engine.push(frames[i % len(frames)], 1 + i * int(1e9 / rate), "camera", key=None)
            engine.flush()
            if isinstance(getattr(engine.models, "run_head", None), CraftedProposals):
                engine.models.run_head.calls = 0  # the flush started a new stream: seed the K tracks again
            records = []
            core.start_worker(records.extend, poll_s=0.005)
            n = int(ctx.node_seconds * rate)
            t_start = time.monotonic()
            for i in range(n):
                target = t_start + i / rate
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                core.on_image(_image_message(np, frames[i % len(frames)], time.time_ns()))
            feed_s = time.monotonic() - t_start
            deadline = time.monotonic() + 10
            while core.queue_length and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.05)
            core.stop_worker()
            lat = [r.latency_ns / 1e6 for r in records]
            c = core.counters
            row.update(seconds=round(feed_s, 1), received=c.received, segmented=len(records),
                       skipped_windows=c.skipped_windows, skipped_frames=c.skipped_frames,
                       dropped_frames=c.dropped_frames, failures=c.failures,
                       lookahead_ms=round(1000.0 * engine.lookahead_frames / rate, 0),
                       latency_p50_ms=round(float(np.percentile(lat, 50)), 1) if lat else None,
                       latency_p95_ms=round(float(np.percentile(lat, 95)), 1) if lat else None,
                       latency_max_ms=round(float(max(lat)), 1) if lat else None,
                       output_hz=round(len(records) / feed_s, 2) if feed_s else None)
            tail = core.flush()
            row["flushed_at_end"] = len(tail)
            core.deactivate()
            del engine, core
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {err}"
            row["traceback"] = traceback.format_exc(limit=4)[-1200:]
        finally:
            _restore_models(ctx)
        log(f"node: {name} {rate} Hz: p50 {row.get('latency_p50_ms')} ms p95 {row.get('latency_p95_ms')} ms "
            f"segmented {row.get('segmented')}/{row.get('received')} skipped windows {row.get('skipped_windows')} "
            f"{row.get('error', '')}")


def section_engine_compiled(entry, ctx):
    """The node's ``torch_compile`` parameter end to end: the engine with its Pi3 decoder compiled
    (gmos_core.export.runtime.compile_pi3_decoder), bf16, after the eager rows (the compile stays in place)."""
    from gmos_core.export.runtime import compile_pi3_decoder

    precision = "bf16" if ctx.device.type == "cuda" else "fp32"
    backend = "inductor" if ctx.device.type == "cuda" else "eager"  # CPU smoke: wiring only, no inductor build
    t0 = time.monotonic()
    compile_pi3_decoder(ctx.models["gmos_online"], backend=backend)
    entry["backend"] = backend
    rows = entry.setdefault("rows", [])
    width, height = ctx.video_wh
    frames = _synthetic_frames(ctx.np, 8, width, height)
    for pipeline, k in (("gmos_s", None), ("gmos_online", 3)):
        name = (pipeline if k is None else f"{pipeline} K={k}") + " + torch_compile"
        row = {"pipeline": name, "precision": precision}
        rows.append(row)
        if ctx.results.remaining() < 8:
            row["error"] = "skipped: budget"
            continue
        try:
            engine = _make_engine(ctx, pipeline, precision, k)
            period, times = int(1e9 / 30), []
            for i in range(ctx.engine_warmup + ctx.engine_frames):
                ctx.timer.sync()
                t1 = time.perf_counter()
                engine.push(frames[i % len(frames)], i * period, "cam")
                ctx.timer.sync()
                if i >= ctx.engine_warmup:
                    times.append(1000.0 * (time.perf_counter() - t1))
            row["median_ms"] = round(statistics.median(times), 2)
            row["fps"] = round(1000.0 / row["median_ms"], 2)
            if "first_row_s_incl_compile" not in entry:
                entry["first_row_s_incl_compile"] = round(time.monotonic() - t0, 1)
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {err}"
        finally:
            _restore_models(ctx)
        log(f"engine_compiled: {name}: {row.get('median_ms', row.get('error'))} ms/frame")


def section_compile(entry, ctx, args):
    timeout = int(max(10, min(ctx.results.remaining() - 10, args.compile_timeout_s)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "compile.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--compile-child", str(out), "--device", str(ctx.device),
               "--repeats", str(ctx.repeats)] + (["--cpu-smoke"] if ctx.smoke else [])
        entry["command"] = " ".join(cmd)
        entry["timeout_s"] = timeout
        try:
            proc = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True)
            entry["child_rc"] = proc.returncode
            if proc.returncode != 0:
                entry["stderr_tail"] = proc.stderr[-1500:]
        except subprocess.TimeoutExpired:
            entry["status"] = f"timed out after {timeout} s (partial rows kept)"
        if out.exists():
            entry["rows"] = json.loads(out.read_text())
        if entry.get("child_rc", 0) != 0 and "status" not in entry:
            entry["status"] = f"error: child exited {entry['child_rc']}"


def compile_child(args):
    """torch.compile of the Pi3 decoder and DINOv2 encoder (bf16 on CUDA), eager vs compiled, rows → JSON."""
    import torch

    from gmos_core import models as M
    from gmos_core.preprocess import pi3_target_size

    device = torch.device(args.device)
    smoke = args.cpu_smoke
    size = "tiny" if smoke else "full"
    hp, wp = pi3_target_size(*((160, 96) if smoke else (854, 480)), pixel_limit=14 * 14 * 40 if smoke else 255000)
    timer = Timer(torch, device)
    rows = []
    out = Path(args.compile_child)
    with (torch.device(device) if device.type == "cuda" else torch.device("cpu")):
        pi3 = M.build_pi3_encoder(size).eval()
    pi3.to(device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    import contextlib
    ac = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    with torch.inference_mode(), ac:
        frames = torch.rand(1, 3, hp, wp, device=device)
        hidden = pi3.encode_frames(frames).expand(5, -1, -1).contiguous()
        for module_name, eager, make in (
            ("Pi3 decoder, 1 window of 5", lambda: pi3.decode(hidden, 5, hp, wp),
             lambda: torch.compile(lambda h: pi3.decode(h, 5, hp, wp), dynamic=False)),
            ("Pi3 decoder, 1 window of 5, CUDA graphs (mode=reduce-overhead)", lambda: pi3.decode(hidden, 5, hp, wp),
             lambda: torch.compile(lambda h: pi3.decode(h, 5, hp, wp), dynamic=False, mode="reduce-overhead")),
            ("Pi3 DINOv2 encode, 1 frame", lambda: pi3.encode_frames(frames),
             lambda: torch.compile(lambda f: pi3.encode_frames(f), dynamic=False)),
        ):
            if "reduce-overhead" in module_name and device.type != "cuda":
                continue  # CUDA graphs only
            row = {"module": module_name, "precision": precision}
            rows.append(row)
            row["eager_ms"] = timer(eager, 1, args.repeats)["median_ms"]
            ref = eager()
            fn = make()
            arg = hidden if "decoder" in module_name else frames
            t0 = time.monotonic()
            got = fn(arg)
            timer.sync()
            row["compile_s"] = round(time.monotonic() - t0, 1)
            row["compiled_ms"] = timer(lambda: fn(arg), 1, args.repeats)["median_ms"]
            row["max_abs_diff"] = float((got.float() - ref.float()).abs().max())
            out.write_text(json.dumps(rows))
            print(f"compile child: {row}", flush=True)
    return 0


# ----------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny models on CPU, a few seconds: checks the script")
    parser.add_argument("--out", default=None, help="results folder (default: $OUT, else benchmarks/gpu_results)")
    parser.add_argument("--budget-s", type=float, default=230.0,
                        help="internal time budget; sections that would not fit are skipped (default 230)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--sections", default=None, help="comma list (default: all; --cpu-smoke leaves out compile, "
                        "which needs a C++ toolchain and minutes on a CPU)")
    parser.add_argument("--precisions", default="bf16,fp16,fp32")
    parser.add_argument("--node-seconds", type=float, default=None)
    parser.add_argument("--compile-timeout-s", type=float, default=90.0)
    parser.add_argument("--quiet-table", action="store_true", help="do not print the Markdown table at the end")
    parser.add_argument("--render-only", action="store_true", help="re-render gpu_check.md from gpu_check.json")
    parser.add_argument("--compile-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    out_dir = Path(args.out or os.environ.get("OUT") or REPO / "benchmarks" / "gpu_results")
    if args.render_only:
        data = json.loads((out_dir / "gpu_check.json").read_text())
        data.setdefault("note", "the run did not finish: rendered from the last saved JSON")
        (out_dir / "gpu_check.md").write_text(render_markdown(data))
        return 0

    import numpy as np
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu"
    if args.compile_child:
        args.repeats = args.repeats or 3
        return compile_child(args)

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(min(4, os.cpu_count() or 1) if not args.cpu_smoke else 1)
    from gmos_core.preprocess import pi3_target_size

    smoke = args.cpu_smoke
    ctx = SimpleNamespace(torch=torch, np=np, device=device, smoke=smoke, size="tiny" if smoke else "full",
                          video_wh=(160, 96) if smoke else (854, 480),
                          pixel_limit=14 * 14 * 40 if smoke else 255000,
                          patch=14, pi3_dim=64 if smoke else 1024,
                          warmup=1 if smoke else 2, repeats=args.repeats or (2 if smoke else 5),
                          engine_warmup=7 if smoke else 16, engine_frames=2 if smoke else 8,
                          node_seconds=args.node_seconds or (1.0 if smoke else 6.0),
                          precisions=[p for p in args.precisions.split(",") if p],
                          peaks=None, models=None)
    ctx.engine_precisions = ctx.precisions if not smoke else ctx.precisions[:1]
    ctx.pi3_hw = tuple(pi3_target_size(*ctx.video_wh, pixel_limit=ctx.pixel_limit))
    ctx.timer = Timer(torch, device)
    results = Results(out_dir, args.budget_s, args)
    ctx.results = results
    if device.type == "cuda" and not torch.cuda.is_available():
        log("CUDA requested but torch.cuda.is_available() is False: nothing to measure on a GPU")
        results.data["error"] = "CUDA not available to torch"
    all_sections = "environment,matmul_peak,build,stages,engine,sdpa,node,engine_compiled,compile"
    sections = (args.sections or (all_sections.replace(",compile", "") if smoke else all_sections)).split(",")
    table = {"environment": (section_environment, ctx), "matmul_peak": (section_matmul, ctx),
             "build": (section_build, ctx), "stages": (section_stages, ctx), "engine": (section_engine, ctx),
             "sdpa": (section_sdpa, ctx), "node": (section_node, ctx),
             "engine_compiled": (section_engine_compiled, ctx), "compile": (section_compile, ctx, args)}
    needs_models = {"stages", "engine", "sdpa", "node", "engine_compiled"}
    for name in sections:
        if name not in table:
            results.data["sections"][name] = {"status": f"error: unknown section; expected one of {list(table)}"}
            continue
        if name in needs_models and ctx.models is None:
            results.data["sections"][name] = {"status": "skipped: the models were not built (see 'build')"}
            results.save()
            continue
        fn, *rest = table[name]
        results.section(name, fn, *rest, estimate_s=3 if smoke else None)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    results.data["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results.save()
    log(f"done in {results.data['elapsed_s']} s; results in {out_dir}/gpu_check.json and gpu_check.md")
    if not args.quiet_table:
        print((out_dir / "gpu_check.md").read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
