"""GMOS checkpoint metadata: one implementation shared by the training export and the engine.

A trained checkpoint is a safetensors file whose ``metadata`` (all values strings) says what the tensors are
and how the model must be run::

    gmos_format      "1"
    name             e.g. "gmos-default-s3"
    variant          "gmos_s" | "proposer"
    anchor           "center" | "end"     where the segmented frame sits in its window
    window_size      e.g. "5"             frames per window
    window_seconds   e.g. "0.5"           window length at inference
    pi3_config       JSON of Pi3EncoderConfig kwargs
    head_config      JSON of the head's config kwargs (ProposerConfig / GMOSSConfig)
    sam2_config      packaged SAM 2 YAML name or file name
    sam2_image_size  e.g. "1024"          SAM 2 input resolution (head grid = image_size / 16)
    pixel_limit      e.g. "255000"        Pi3 pixel budget
    components       e.g. "pi3,sam2_image_encoder,head" (+ ",refiner" for a model with a refinement stage)
    refiner_config   JSON of MotionRefinerConfig kwargs; only in files with the "refiner" component
    trained_on       free text
    training_command the command that trained it

Keys are prefixed by component (``pi3.``, ``sam2_image_encoder.``, ``head.``, ``refiner.``) when a file holds several
components; a single-component file keeps the official (unprefixed) key names, so the released loaders read it.
``sam2_image_encoder.`` keys carry the ``SAM2VideoPredictor`` names of the image path (``image_encoder.*``,
``sam_mask_decoder.conv_s0/conv_s1.*``, ``no_mem_embed``).

A file without metadata (the official checkpoints, any ``.pt``) reads as ``None``: callers treat it as the
centre-anchored official defaults (:meth:`CheckpointMetadata.official`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping, Optional

FORMAT_VERSION = "1"
VARIANTS = ("gmos_s", "proposer")
ANCHORS = ("center", "end")
COMPONENTS = ("pi3", "sam2_image_encoder", "head")
# Optional components a file may add to the three of a whole model: the default model's refinement stage
# (gmos_core.models.motion_refiner; not part of the official GMOS).
OPTIONAL_COMPONENTS = ("refiner",)
OFFICIAL_PIXEL_LIMIT = 255000
OFFICIAL_SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_l.yaml"

__all__ = [
    "ANCHORS",
    "COMPONENTS",
    "OPTIONAL_COMPONENTS",
    "FORMAT_VERSION",
    "VARIANTS",
    "CheckpointMetadata",
    "CheckpointMetadataError",
    "read_checkpoint",
    "read_checkpoint_metadata",
    "write_checkpoint",
]


class CheckpointMetadataError(ValueError):
    """A checkpoint's metadata or key layout is not what the GMOS format requires."""


@dataclass(frozen=True)
class CheckpointMetadata:
    """Validated metadata of a GMOS checkpoint (see the module docstring for the on-disk strings)."""

    variant: str
    anchor: str = "center"
    window_size: int = 5
    window_seconds: float = 0.5
    pi3_config: dict = field(default_factory=dict)
    head_config: dict = field(default_factory=dict)
    sam2_config: str = OFFICIAL_SAM2_CONFIG
    sam2_image_size: int = 1024
    pixel_limit: int = OFFICIAL_PIXEL_LIMIT
    components: tuple = ("head",)
    name: str = ""
    trained_on: str = ""
    training_command: str = ""
    refiner_config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        def bad(what: str, got, expected: str):
            raise CheckpointMetadataError(f"checkpoint metadata {what}={got!r}; expected {expected}")

        if self.variant not in VARIANTS:
            bad("variant", self.variant, f"one of {VARIANTS}")
        if self.anchor not in ANCHORS:
            bad("anchor", self.anchor, f"one of {ANCHORS}")
        if not isinstance(self.window_size, int) or self.window_size < 1:
            bad("window_size", self.window_size, "an integer >= 1")
        if not self.window_seconds > 0:
            bad("window_seconds", self.window_seconds, "a number > 0")
        if not isinstance(self.sam2_image_size, int) or self.sam2_image_size < 64 or self.sam2_image_size % 16:
            bad("sam2_image_size", self.sam2_image_size, "a multiple of 16, >= 64")
        if not isinstance(self.pixel_limit, int) or self.pixel_limit < 14 * 14:
            bad("pixel_limit", self.pixel_limit, "an integer >= 196")
        comps = tuple(self.components)
        known = COMPONENTS + OPTIONAL_COMPONENTS
        if not comps or len(set(comps)) != len(comps) or any(c not in known for c in comps):
            bad("components", ",".join(comps), f"a non-empty comma list of distinct names from {known}")
        object.__setattr__(self, "components", comps)
        if ("refiner" in comps) != bool(self.refiner_config):
            bad("refiner_config", self.refiner_config, "a non-empty JSON object exactly when components include "
                "'refiner'")
        for name in ("pi3_config", "head_config", "refiner_config"):
            if not isinstance(getattr(self, name), dict):
                bad(name, getattr(self, name), "a JSON object of config keyword arguments")

    # ------------------------------------------------------------------ conversions
    @classmethod
    def official(cls, variant: str = "proposer") -> "CheckpointMetadata":
        """What a file without metadata (an official checkpoint) means: centre anchor, 5 frames, 0.5 s, full
        configurations, SAM 2.1 Hiera-L at 1024, 255k-pixel Pi3 budget."""
        return cls(variant=variant, name="official", trained_on="official GMOS release",
                   components=("head",))

    def to_strings(self) -> dict[str, str]:
        strings = {
            "gmos_format": FORMAT_VERSION,
            "name": self.name,
            "variant": self.variant,
            "anchor": self.anchor,
            "window_size": str(self.window_size),
            "window_seconds": repr(float(self.window_seconds)),
            "pi3_config": json.dumps(self.pi3_config, sort_keys=True),
            "head_config": json.dumps(self.head_config, sort_keys=True),
            "sam2_config": self.sam2_config,
            "sam2_image_size": str(self.sam2_image_size),
            "pixel_limit": str(self.pixel_limit),
            "components": ",".join(self.components),
            "trained_on": self.trained_on,
            "training_command": self.training_command,
        }
        if self.refiner_config:  # files without a refinement stage keep exactly the keys they always had
            strings["refiner_config"] = json.dumps(self.refiner_config, sort_keys=True)
        return strings

    @classmethod
    def from_strings(cls, meta: Mapping[str, str], where: str = "checkpoint") -> "CheckpointMetadata":
        version = meta.get("gmos_format")
        if version != FORMAT_VERSION:
            raise CheckpointMetadataError(
                f"{where}: gmos_format={version!r}; this version of gmos reads format {FORMAT_VERSION!r}")
        required = ("variant", "anchor", "window_size", "window_seconds", "components")
        missing = [k for k in required if k not in meta]
        if missing:
            raise CheckpointMetadataError(f"{where}: metadata keys {missing} missing (required: {list(required)})")

        def number(key: str, kind):
            try:
                return kind(meta[key])
            except (TypeError, ValueError):
                raise CheckpointMetadataError(f"{where}: metadata {key}={meta.get(key)!r} is not a {kind.__name__}") from None

        def obj(key: str) -> dict:
            text = meta.get(key) or "{}"
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CheckpointMetadataError(f"{where}: metadata {key} is not JSON ({exc})") from None
            if not isinstance(value, dict):
                raise CheckpointMetadataError(f"{where}: metadata {key} must be a JSON object, got {text!r}")
            return value

        try:
            return cls(
                variant=meta["variant"], anchor=meta["anchor"], window_size=number("window_size", int),
                window_seconds=number("window_seconds", float), pi3_config=obj("pi3_config"),
                head_config=obj("head_config"), sam2_config=meta.get("sam2_config") or OFFICIAL_SAM2_CONFIG,
                sam2_image_size=number("sam2_image_size", int) if "sam2_image_size" in meta else 1024,
                pixel_limit=number("pixel_limit", int) if "pixel_limit" in meta else OFFICIAL_PIXEL_LIMIT,
                components=tuple(c.strip() for c in meta["components"].split(",") if c.strip()),
                name=meta.get("name", ""), trained_on=meta.get("trained_on", ""),
                training_command=meta.get("training_command", ""), refiner_config=obj("refiner_config"))
        except CheckpointMetadataError as exc:
            raise CheckpointMetadataError(f"{where}: {exc}") from None

    def with_(self, **changes) -> "CheckpointMetadata":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return CheckpointMetadata(**values)


# ---------------------------------------------------------------------------------------------- files


def write_checkpoint(path: str | Path, tensors_by_component: Mapping[str, Mapping[str, "object"]],
                     metadata: CheckpointMetadata | Mapping[str, str]) -> Path:
    """Write ``{component: state_dict}`` as one safetensors file with the GMOS metadata.

    The components written must be exactly ``metadata.components``; tensors are saved contiguous on the CPU.
    """
    from safetensors.torch import save_file

    meta = metadata if isinstance(metadata, CheckpointMetadata) else CheckpointMetadata.from_strings(metadata)
    given = tuple(tensors_by_component)
    if set(given) != set(meta.components):
        raise CheckpointMetadataError(
            f"write_checkpoint: tensors for components {list(given)} but metadata.components = "
            f"{list(meta.components)}; they must be the same")
    prefixed = len(meta.components) > 1
    flat = {}
    for comp in meta.components:
        state = tensors_by_component[comp]
        if not state:
            raise CheckpointMetadataError(f"write_checkpoint: component {comp!r} has no tensors")
        for key, tensor in state.items():
            flat[f"{comp}.{key}" if prefixed else key] = tensor.detach().to("cpu").contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(flat, str(path), metadata=meta.to_strings())
    return path


def read_checkpoint_metadata(path: str | Path) -> Optional[CheckpointMetadata]:
    """The validated metadata of ``path``, or None for a file without GMOS metadata (official checkpoints,
    ``.pt`` pickles): treat None as :meth:`CheckpointMetadata.official`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with path.open("rb") as fh:
        head = fh.read(8)
    if len(head) < 8:
        raise CheckpointMetadataError(f"{path}: truncated file ({len(head)} bytes)")
    header_len = int.from_bytes(head, "little")
    if header_len <= 0 or header_len > 100_000_000 or header_len + 8 > path.stat().st_size:
        return None  # not a safetensors file (e.g. a torch.save pickle): no GMOS metadata
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointMetadataError(f"{path}: unreadable safetensors header ({exc})") from None
    if "gmos_format" not in meta:
        return None
    return CheckpointMetadata.from_strings(meta, where=str(path))


def read_checkpoint(path: str | Path, device: str = "cpu") -> tuple[Optional[CheckpointMetadata], dict]:
    """(metadata or None, ``{component: state_dict}``).  A file without metadata comes back as
    ``(None, {"": state_dict})``: which model it belongs to is the caller's decision (official files)."""
    from safetensors.torch import load_file

    meta = read_checkpoint_metadata(path)
    if meta is None:
        from gmos_core.weights.loading import load_state_dict_file

        return None, {"": load_state_dict_file(str(path))}
    flat = load_file(str(path), device=device)
    if len(meta.components) == 1:
        comp = meta.components[0]
        prefix = comp + "."
        if flat and all(k.startswith(prefix) for k in flat):  # tolerate a prefixed single-component file
            flat = {k[len(prefix):]: v for k, v in flat.items()}
        return meta, {comp: flat}
    out: dict = {c: {} for c in meta.components}
    stray = []
    for key, tensor in flat.items():
        comp, _, rest = key.partition(".")
        if comp in out and rest:
            out[comp][rest] = tensor
        else:
            stray.append(key)
    if stray:
        raise CheckpointMetadataError(
            f"{path}: keys {stray[:5]} carry no component prefix of {list(meta.components)} (a multi-component "
            "file prefixes every key)")
    empty = [c for c, sd in out.items() if not sd]
    if empty:
        raise CheckpointMetadataError(f"{path}: metadata lists components {empty} but the file has no keys for them")
    return meta, out
