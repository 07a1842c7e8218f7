"""Parameters of the GMOS node: one table (``PARAMETER_SPECS``) drives the ROS parameter declarations
(name, default, description, range or choices) and the validation at start (``NodeParams.from_mapping``).

Defaults follow the paper (window of 5 frames, motion threshold 0.5) and the ROS conventions of
docs/ros.md (best-effort depth-1 image subscription, reliable outputs).

When values are checked (docs/ros.md, "Parameters"): rclpy itself checks the type, the numeric range and
step of every parameter when the node declares it (values from the params file and launch arguments) and
on every run-time set; the node turns a refusal at declaration into one error line and an unconfigured
node. Choices, ``device`` and the cross-parameter rules (odd window, queue >= window) are checked here, at
configure.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

MODES = ("gmos_online", "gmos_s", "geometric")
TRACKERS = ("auto", "sam2", "iou")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
QOS_PRESETS = ("SENSOR_DATA", "DEFAULT", "SYSTEM_DEFAULT", "RELIABLE", "BEST_EFFORT")
INPUT_TRANSPORTS = ("raw", "compressed")
INSTANCE_ENCODINGS = ("mono16", "mono8")


class ParameterError(ValueError):
    """A node parameter has a value outside what it accepts; the message names both."""


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: its default and the values it accepts.

    ``value_range`` is (min, max, step) for numbers (step 0 = continuous); ``choices`` for strings.
    """

    name: str
    default: Any
    description: str
    value_range: Optional[tuple[float, float, float]] = None
    choices: Optional[Sequence[str]] = None
    read_only: bool = True  # changing most of them needs a re-configure

    @property
    def type(self) -> type:
        return type(self.default)

    def allowed(self) -> str:
        """What the parameter accepts, in words (for error messages): 'a float in [0.0, 1.0]'."""
        kind = {bool: "a bool", int: "an integer", float: "a float", str: "a string"}[self.type]
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.value_range is not None:
            low, high, step = self.value_range
            text = f"{kind} in [{low}, {high}]"
            return text + (f" in steps of {step} from {low}" if step not in (0, 1) else "")
        return kind

    def validate(self, value: Any) -> Any:
        """Return the value converted to the spec's type, or raise ParameterError naming the problem."""
        expected = self.type
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ParameterError(
                f"parameter {self.name!r} = {value!r} ({type(value).__name__}); expected a {expected.__name__}"
            )
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"parameter {self.name!r} = {value!r}; expected one of {list(self.choices)}")
        if self.value_range is not None:
            low, high, _ = self.value_range
            if not (low <= value <= high):
                raise ParameterError(f"parameter {self.name!r} = {value!r}; expected a value in [{low}, {high}]")
        return value


PARAMETER_SPECS: tuple[ParamSpec, ...] = (
    # pipeline
    ParamSpec("mode", "gmos_online", "pipeline: gmos_online (instances + motion, causal tracking), gmos_s "
              "(foreground/background only) or geometric (no learned head)", choices=MODES),
    ParamSpec("model", "", "DEPRECATED alias of 'mode' (one release); empty = unset", choices=("",) + MODES),
    ParamSpec("tracker", "auto", "instance tracker: auto (sam2 for the official weights, iou for the shipped "
              "default model), sam2 or iou", choices=TRACKERS),
    ParamSpec("pi3_weights", "", "Pi3 encoder weights (.safetensors); empty = the model's default location"),
    ParamSpec("head_weights", "", "GMOS proposer or GMOS-S head weights (.safetensors)"),
    ParamSpec("sam2_checkpoint", "", "SAM 2.1 Hiera-L checkpoint (.pt, loaded with weights_only=True)"),
    ParamSpec("sam2_config", "", "SAM 2 config (packaged name or YAML path); empty = the model's own "
              "(SAM 2.1 Hiera-L for the official weights)"),
    ParamSpec("tiny_random_model", False, "use the tiny randomly-initialised test model (no weights; output is "
              "meaningless, for pipeline tests only)"),
    ParamSpec("device", "cuda", "torch device: cuda, cuda:N or cpu"),
    ParamSpec("precision", "auto", "encoder precision: auto = bf16/fp16 autocast on CUDA, fp32 on CPU",
              choices=PRECISIONS),
    # thresholds and window
    ParamSpec("mask_threshold", 0.5, "GMOS-S: a pixel is dynamic when its foreground probability exceeds "
              "this (0.5 = the paper)", value_range=(0.0, 1.0, 0.0), read_only=False),
    ParamSpec("window_size", 5, "frames per window (odd; 5 for the official weights)", value_range=(1, 15, 2)),
    ParamSpec("fps", 0.0, "nominal camera rate (a float: write 30.0); 0 = estimate from the stamps of the first frames",
              value_range=(0.0, 1000.0, 0.0)),
    ParamSpec("stride", 0, "frames between window members; 0 = max(1, int(fps / 8)) as in the paper",
              value_range=(0, 100, 1)),
    ParamSpec("pixel_limit", 0, "Pi3 pixel budget per frame; 0 = the model's own (the paper's 255000 for the "
              "official weights, 30000 for the shipped default model); otherwise at least 196 (one 14x14 patch)",
              value_range=(0, 4_000_000, 1)),
    # inputs
    ParamSpec("input_transport", "raw", "raw: sensor_msgs/Image on 'image'; compressed: "
              "sensor_msgs/CompressedImage on 'image/compressed'", choices=INPUT_TRANSPORTS),
    ParamSpec("use_camera_info", False, "synchronise 'camera_info' with the image and republish it next to "
              "the masks (dynamic_mask/camera_info)"),
    ParamSpec("use_depth", False, "synchronise the registered depth image 'depth' (16UC1/mono16/32FC1)"),
    # message_filters pairs stamps strictly closer than the slop: 0 would never pair, hence the minimum.
    ParamSpec("sync_slop_s", 0.01, "ApproximateTimeSynchronizer slop in seconds (> 0: message_filters pairs "
              "stamps strictly closer than it)", value_range=(0.0001, 1.0, 0.0)),
    ParamSpec("sync_queue_size", 10, "ApproximateTimeSynchronizer queue size", value_range=(1, 100, 1)),
    ParamSpec("image_qos", "SENSOR_DATA", "QoS preset of the input subscriptions", choices=QOS_PRESETS),
    ParamSpec("image_qos_depth", 1, "history depth of the input subscriptions", value_range=(1, 100, 1)),
    ParamSpec("output_qos", "DEFAULT", "QoS preset of the outputs (DEFAULT = reliable)", choices=QOS_PRESETS),
    ParamSpec("output_qos_depth", 10, "history depth of the outputs", value_range=(1, 100, 1)),
    # outputs
    ParamSpec("publish_instance_mask", True, "publish the instance label image on 'instance_mask'"),
    ParamSpec("instance_mask_encoding", "mono16", "encoding of the instance label image (mono8 writes ids "
              "above 254 as 255)", choices=INSTANCE_ENCODINGS),
    ParamSpec("publish_masked_depth", True, "publish 'masked_depth' (dynamic pixels zeroed) when use_depth"),
    ParamSpec("publish_debug_image", True, "publish the overlay on 'debug_image' (only while subscribed)"),
    # overload policy and diagnostics
    ParamSpec("max_queue_frames", 10, "most received frames waiting for the worker; beyond it the oldest "
              "whole window of waiting frames is dropped", value_range=(2, 1000, 1)),
    ParamSpec("skip_backlog_frames", 3, "when this many frames wait at a window boundary, the next window is "
              "pushed as context only (not segmented) to catch up", value_range=(1, 1000, 1)),
    ParamSpec("diagnostics_period_s", 1.0, "period of /diagnostics", value_range=(0.05, 60.0, 0.0)),
    ParamSpec("stats_window", 100, "number of recent frames the rates and timing statistics use",
              value_range=(2, 10000, 1)),
    ParamSpec("enabled", True, "start enabled (see the 'enable' service)", read_only=False),
    ParamSpec("autostart", True, "configure and activate the lifecycle node at start"),
    # GPU deployment (docs/gpu.md)
    ParamSpec("engine_cache_dir", "", "folder of cached TensorRT engines (built from the ONNX export on first "
              "use, keyed by GPU, TensorRT version, input size, precision and weights); empty = PyTorch only"),
    ParamSpec("warmup_frames", 0, "synthetic frames pushed through the engine at activate (first-call costs, "
              "engine builds) before real frames; 0 = none", value_range=(0, 100, 1)),
    ParamSpec("warmup_image_size", "640x480", "WIDTHxHEIGHT of the warm-up frames (use the camera's size)"),
    ParamSpec("torch_compile", False, "CUDA: torch.compile the Pi3 decoder (compiles at the first window or "
              "during warm-up; 1.6x faster decoder on an H200, docs/gpu.md)"),
)
SPECS_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETER_SPECS}


@dataclass(frozen=True)
class NodeParams:
    """Validated node parameters (see PARAMETER_SPECS for meaning and ranges)."""

    mode: str = "gmos_online"
    model: str = ""
    tracker: str = "auto"
    pi3_weights: str = ""
    head_weights: str = ""
    sam2_checkpoint: str = ""
    sam2_config: str = ""
    tiny_random_model: bool = False
    device: str = "cuda"
    precision: str = "auto"
    mask_threshold: float = 0.5
    window_size: int = 5
    fps: float = 0.0
    stride: int = 0
    pixel_limit: int = 0
    input_transport: str = "raw"
    use_camera_info: bool = False
    use_depth: bool = False
    sync_slop_s: float = 0.01
    sync_queue_size: int = 10
    image_qos: str = "SENSOR_DATA"
    image_qos_depth: int = 1
    output_qos: str = "DEFAULT"
    output_qos_depth: int = 10
    publish_instance_mask: bool = True
    instance_mask_encoding: str = "mono16"
    publish_masked_depth: bool = True
    publish_debug_image: bool = True
    max_queue_frames: int = 10
    skip_backlog_frames: int = 3
    diagnostics_period_s: float = 1.0
    stats_window: int = 100
    enabled: bool = True
    autostart: bool = True
    engine_cache_dir: str = ""
    warmup_frames: int = 0
    warmup_image_size: str = "640x480"
    torch_compile: bool = False

    def __post_init__(self) -> None:
        for spec in PARAMETER_SPECS:
            object.__setattr__(self, spec.name, spec.validate(getattr(self, spec.name)))
        if 0 < self.pixel_limit < 196:
            raise ParameterError(f"parameter 'pixel_limit' = {self.pixel_limit}; expected 0 (the model's own "
                                 "budget) or at least 196 (one 14x14 Pi3 patch)")
        if self.model:  # the deprecated alias: honoured, with a warning, unless 'mode' says otherwise
            if self.mode not in (self.model, SPECS_BY_NAME["mode"].default):
                raise ParameterError(f"parameter 'model' = {self.model!r} (deprecated) contradicts 'mode' = "
                                     f"{self.mode!r}; expected only 'mode'")
            warnings.warn(f"parameter 'model' is deprecated; use 'mode: {self.model}' (read as mode)",
                          DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "mode", self.model)
            object.__setattr__(self, "model", "")  # consumed: replace() must not warn again
        from gmos_core.export.runtime import parse_image_size

        try:
            parse_image_size(self.warmup_image_size)
        except ValueError as exc:
            raise ParameterError(f"parameter 'warmup_image_size': {exc}") from None
        device = self.device
        if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ParameterError(f"parameter 'device' = {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")
        if self.window_size % 2 == 0:
            raise ParameterError(f"parameter 'window_size' = {self.window_size}; expected an odd number (the "
                                 "segmented frame sits in the middle of its window)")
        if self.max_queue_frames < self.window_size:
            raise ParameterError(
                f"parameter 'max_queue_frames' = {self.max_queue_frames} is smaller than 'window_size' = "
                f"{self.window_size}; expected at least one window of frames"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "NodeParams":
        """Build from a {name: value} mapping (e.g. ROS parameters); unknown names are an error."""
        unknown = sorted(set(values) - set(SPECS_BY_NAME))
        if unknown:
            raise ParameterError(f"unknown parameter(s) {unknown}; expected names from {sorted(SPECS_BY_NAME)}")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> "NodeParams":
        return dataclasses.replace(self, **changes)


# The dataclass and the table must not drift apart.
assert [f.name for f in dataclasses.fields(NodeParams)] == [s.name for s in PARAMETER_SPECS]
assert all(getattr(NodeParams, s.name) == s.default for s in PARAMETER_SPECS)
