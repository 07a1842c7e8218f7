"""TensorRT engines built from the ONNX export on first use, cached on disk.

An engine is only valid for the GPU model, TensorRT version, input shapes, precision and weights it was built
for, so the cache key holds exactly those (``EngineKey``); its digest names the file, and a JSON sidecar
next to each engine repeats the full key. A lookup reuses an engine only when the sidecar equals the key
asked for: any difference (another GPU, a TensorRT upgrade, a new camera size, retrained weights, a changed
export) means a rebuild, never a silent reuse.

Layout of ``engine_cache_dir``::

    <graph>-<digest[:20]>.engine        serialized TensorRT engine
    <graph>-<digest[:20]>.json          its EngineKey (what it was built for) and build time
    onnx/<weights_sha256[:16]>/...      the ONNX export the engines were built from (gmos export layout)

Where TensorRT (or CUDA) is absent, ``select_backend`` says so once and the PyTorch path runs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

PRECISIONS = ("fp32", "fp16", "bf16")
GRAPHS = ("pi3_encoder", "pi3_decoder", "head")
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gmos" / "engines"
KEY_VERSION = 1

_log = logging.getLogger("gmos.export")
_said_once: set[str] = set()


class TensorRTUnavailable(RuntimeError):
    """TensorRT (or CUDA) is not usable here; the message says what is missing."""


class EngineCacheError(RuntimeError):
    """The engine cache cannot be used (bad folder, unreadable entry)."""


def _module_version(name: str) -> Optional[str]:
    try:
        module = __import__(name)
    except Exception:
        return None
    return str(getattr(module, "__version__", "unknown"))


def trt_status() -> dict:
    """What the TensorRT path can use here. Never raises; ``usable`` is False with a ``reason`` otherwise."""
    status: dict[str, Any] = {"tensorrt": _module_version("tensorrt"),
                              "torch_tensorrt": _module_version("torch_tensorrt"),
                              "cuda": False, "gpu": None, "usable": False, "reason": ""}
    try:
        import torch

        status["cuda"] = bool(torch.cuda.is_available())
        if status["cuda"]:
            status["gpu"] = torch.cuda.get_device_name(0)
    except Exception as exc:  # torch missing or broken: the PyTorch path cannot run either
        status["reason"] = f"torch unavailable ({type(exc).__name__})"
        return status
    if status["tensorrt"] is None:
        status["reason"] = "TensorRT is not installed (the 'tensorrt' Python package)"
    elif not status["cuda"]:
        status["reason"] = "no CUDA device"
    else:
        status["usable"] = True
        status["reason"] = f"TensorRT {status['tensorrt']} on {status['gpu']}"
    return status


def say_once(key: str, message: str, logger: Any = None, level: str = "warning") -> bool:
    """Log ``message`` the first time ``key`` is seen in this process (the node says things once)."""
    if key in _said_once:
        return False
    _said_once.add(key)
    getattr(logger or _log, level)(message)
    return True


def select_backend(device: str, engine_cache_dir: str = "", logger: Any = None) -> tuple[str, str]:
    """("tensorrt" | "pytorch", why). TensorRT is chosen only on CUDA, with an ``engine_cache_dir`` set and
    TensorRT installed; a missing TensorRT is reported once (warning), then the PyTorch path runs."""
    if not engine_cache_dir:
        return "pytorch", "engine_cache_dir is empty (TensorRT engines off)"
    if not str(device).startswith("cuda"):
        return "pytorch", f"device {device!r} is not CUDA (TensorRT needs an NVIDIA GPU)"
    status = trt_status()
    if not status["usable"]:
        why = f"{status['reason']}: running the PyTorch path"
        say_once("tensorrt-absent", f"GMOS: {why}", logger)
        return "pytorch", why
    return "tensorrt", status["reason"]


# ---------------------------------------------------------------------------------------------- the key
def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"EngineKey.{name}={value!r}; expected a non-empty string")
    return value


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on.

    graph:             which exported graph (pi3_encoder, pi3_decoder, head)
    gpu:               GPU model name (torch.cuda.get_device_name), engines are not portable across models
    compute_capability: "major.minor"
    tensorrt_version:  TensorRT's version string (engines are not portable across versions)
    input_shapes:      ((input name, (dims...)), ...) the fixed shapes the engine was built for
    precision:         fp32, fp16 or bf16
    weights_sha256:    hash of the weights the graph holds (onnx_export.state_dict_sha256)
    onnx_sha256:       hash of the ONNX file it was built from (a re-export with another opset or exporter)
    """

    graph: str
    gpu: str
    compute_capability: str
    tensorrt_version: str
    input_shapes: tuple
    precision: str
    weights_sha256: str
    onnx_sha256: str
    key_version: int = KEY_VERSION

    def __post_init__(self) -> None:
        for name in ("graph", "gpu", "compute_capability", "tensorrt_version", "weights_sha256", "onnx_sha256"):
            _check_text(name, getattr(self, name))
        if self.graph not in GRAPHS:
            raise ValueError(f"EngineKey.graph={self.graph!r}; expected one of {GRAPHS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"EngineKey.precision={self.precision!r}; expected one of {PRECISIONS}")
        shapes = []
        for item in self.input_shapes:
            try:
                name, dims = item
                dims = tuple(int(d) for d in dims)
            except (TypeError, ValueError):
                raise ValueError(f"EngineKey.input_shapes item {item!r}; expected (input name, (dims...))") from None
            if not isinstance(name, str) or not name or not dims or any(d < 1 for d in dims):
                raise ValueError(f"EngineKey.input_shapes item {item!r}; expected a name and positive dims")
            shapes.append((name, dims))
        if not shapes:
            raise ValueError("EngineKey.input_shapes is empty; expected the engine's input shapes")
        object.__setattr__(self, "input_shapes", tuple(sorted(shapes)))

    def to_json(self) -> dict:
        data = asdict(self)
        data["input_shapes"] = [[name, list(dims)] for name, dims in self.input_shapes]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "EngineKey":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"engine key has unknown fields {unknown}")
        values = dict(data)
        values["input_shapes"] = tuple((n, tuple(d)) for n, d in data.get("input_shapes", ()))
        return cls(**values)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    @property
    def stem(self) -> str:
        return f"{self.graph}-{self.digest()[:20]}"

    def differences(self, other: "EngineKey") -> list[str]:
        """Names of the fields that differ (what made an engine stale)."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def gpu_identity(device_index: int = 0) -> tuple[str, str]:
    """(GPU model name, "major.minor") of a CUDA device; TensorRTUnavailable without CUDA."""
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable("no CUDA device: TensorRT engines need an NVIDIA GPU")
    major, minor = torch.cuda.get_device_capability(device_index)
    return torch.cuda.get_device_name(device_index), f"{major}.{minor}"


def tensorrt_version() -> str:
    version = _module_version("tensorrt")
    if version is None:
        raise TensorRTUnavailable("TensorRT is not installed (the 'tensorrt' Python package)")
    return version


def key_for(graph: str, onnx_path: str | Path, weights_sha256: str, input_shapes: Sequence, precision: str,
            device_index: int = 0, onnx_sha256: Optional[str] = None) -> EngineKey:
    """The key of the engine for ``graph`` on this machine (reads GPU model and TensorRT version here)."""
    from gmos_core.export.onnx_export import sha256_file

    gpu, capability = gpu_identity(device_index)
    return EngineKey(graph=graph, gpu=gpu, compute_capability=capability, tensorrt_version=tensorrt_version(),
                     input_shapes=tuple(input_shapes), precision=precision, weights_sha256=weights_sha256,
                     onnx_sha256=onnx_sha256 or sha256_file(onnx_path))


# ---------------------------------------------------------------------------------------------- the cache
class EngineCache:
    """Serialized engines on disk, one file per EngineKey (see the module docstring)."""

    def __init__(self, directory: str | Path, logger: Any = None) -> None:
        directory = Path(directory).expanduser()
        if directory.exists() and not directory.is_dir():
            raise EngineCacheError(f"engine_cache_dir {str(directory)!r} is a file; expected a folder")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineCacheError(f"engine_cache_dir {str(directory)!r} cannot be created ({exc.strerror}); "
                                   "expected a writable folder") from None
        if not os.access(directory, os.W_OK):
            raise EngineCacheError(f"engine_cache_dir {str(directory)!r} is not writable; expected a writable folder")
        self.directory = directory
        self.log = logger or _log

    def engine_path(self, key: EngineKey) -> Path:
        return self.directory / f"{key.stem}.engine"

    def sidecar_path(self, key: EngineKey) -> Path:
        return self.directory / f"{key.stem}.json"

    def lookup(self, key: EngineKey) -> Optional[Path]:
        """The cached engine built for exactly ``key``, or None (missing, or its sidecar disagrees: removed)."""
        engine, sidecar = self.engine_path(key), self.sidecar_path(key)
        if not engine.is_file():
            return None
        try:
            stored = EngineKey.from_json(json.loads(sidecar.read_text())["key"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.log.warning(f"GMOS: engine {engine.name} has no readable key ({type(exc).__name__}); rebuilding it")
            self._remove(key)
            return None
        if stored != key:
            self.log.warning(f"GMOS: engine {engine.name} was built for another "
                             f"{', '.join(stored.differences(key))}; rebuilding it")
            self._remove(key)
            return None
        return engine

    def store(self, key: EngineKey, engine_bytes: bytes, build_seconds: float = 0.0) -> Path:
        """Write the engine and its sidecar atomically (a crash never leaves a half-written engine in use)."""
        if not engine_bytes:
            raise EngineCacheError(f"refusing to cache an empty engine for {key.graph}")
        engine = self.engine_path(key)
        self._atomic_write(engine, engine_bytes)
        record = {"key": key.to_json(), "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "build_seconds": round(build_seconds, 1), "bytes": len(engine_bytes)}
        self._atomic_write(self.sidecar_path(key), json.dumps(record, indent=1).encode())
        return engine

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes]) -> tuple[Path, bool]:
        """(engine path, built now?). ``build()`` returns the serialized engine; it runs only on a miss."""
        hit = self.lookup(key)
        if hit is not None:
            return hit, False
        self.log.info(f"GMOS: building TensorRT engine {key.stem} ({key.graph}, {key.precision}, "
                      f"{dict(key.input_shapes)}) on {key.gpu}; cached in {self.directory}")
        t0 = time.monotonic()
        data = build()
        return self.store(key, data, time.monotonic() - t0), True

    def entries(self) -> list[EngineKey]:
        keys = []
        for sidecar in sorted(self.directory.glob("*.json")):
            try:
                keys.append(EngineKey.from_json(json.loads(sidecar.read_text())["key"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return keys

    def _remove(self, key: EngineKey) -> None:
        for path in (self.engine_path(key), self.sidecar_path(key)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _atomic_write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


# ---------------------------------------------------------------------------------------------- TensorRT
def build_engine_bytes(onnx_path: str | Path, input_shapes: Sequence, precision: str,
                       workspace_gib: float = 8.0) -> bytes:
    """Build a serialized TensorRT engine from an ONNX file for fixed ``input_shapes`` (TensorRT >= 10 API)."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable("TensorRT is not installed (the 'tensorrt' Python package)") from None
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; expected one of {PRECISIONS}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT < 10 needs it; 10 ignores it
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads external data next to the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2 ** 30))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        if not hasattr(trt.BuilderFlag, "BF16"):
            raise TensorRTUnavailable(f"TensorRT {trt.__version__} has no bf16 support; use fp16 or fp32")
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    for name, dims in input_shapes:
        profile.set_shape(name, tuple(dims), tuple(dims), tuple(dims))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    return bytes(serialized)


class TrtGraph:
    """Runs one cached engine on torch CUDA tensors: ``graph(*inputs) -> tuple of outputs``."""

    def __init__(self, engine_path: str | Path) -> None:
        import tensorrt as trt
        import torch

        self.torch = torch
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not load {engine_path} (built by another version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {n: _torch_dtype(torch, trt, self.engine.get_tensor_dtype(n)) for n in names}

    def __call__(self, *inputs):
        torch = self.torch
        if len(inputs) != len(self.inputs):
            raise ValueError(f"engine takes inputs {self.inputs}; got {len(inputs)} tensors")
        keep = []
        for name, tensor in zip(self.inputs, inputs):
            tensor = tensor.to(device="cuda", dtype=self._dtypes[name]).contiguous()
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outs = []
        for name in self.outputs:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtypes[name], device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return tuple(outs)


def _torch_dtype(torch, trt, dtype):
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int64: torch.int64, trt.bool: torch.bool}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if dtype not in table:
        raise TypeError(f"TensorRT tensor type {dtype} has no torch equivalent here")
    return table[dtype]
