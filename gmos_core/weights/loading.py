"""Reading official checkpoint files into ``gmos_core.models``.

Supported forms: ``.safetensors``; ``torch.save`` files holding a bare state_dict or a dict wrapping it
under ``model_state_dict`` (GMOS heads), ``model`` (SAM 2) or ``state_dict``; DataParallel/DDP ``module.``
prefixes; CUDA-saved tensors (always mapped to CPU first).
"""
from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Iterable, Mapping, Optional

import torch
from torch import nn

WRAPPER_KEYS = ("model_state_dict", "model", "state_dict")
# Upstream Pi3's model.safetensors carries its heads too; the encoder ignores them (official strict=False).
PI3_IGNORED_PREFIXES = ("point_decoder.", "conf_decoder.", "camera_decoder.", "point_head.", "conf_head.",
                        "camera_head.")


class WeightLoadError(ValueError):
    """A checkpoint does not fit the model: missing, unexpected or misshaped keys, or an unreadable file."""


class UnsafeCheckpointError(WeightLoadError):
    """A pickle checkpoint needs full unpickling (arbitrary code execution) and that was not allowed."""


def _looks_like_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def extract_state_dict(obj, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap ``{model_state_dict|model|state_dict: sd}`` and strip ``module.`` prefixes."""
    if not isinstance(obj, Mapping):
        raise WeightLoadError(f"{source}: expected a state_dict or a dict wrapping one, got {type(obj).__name__}")
    if not _looks_like_state_dict(obj):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        else:
            raise WeightLoadError(
                f"{source}: no state_dict found (top-level keys {sorted(map(str, obj))[:10]}; expected tensors or "
                f"one of the wrappers {WRAPPER_KEYS})")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue  # e.g. training metadata stored next to tensors
        state[str(key)] = value
    if not state:
        raise WeightLoadError(f"{source}: the state_dict holds no tensors")
    if any(k.startswith("module.") for k in state):
        # Same rule as the official loader: strip a leading DataParallel/DDP prefix.
        state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    return state


def _is_pickle_file(path: Path) -> bool:
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"  # pickle protocol >= 2 (legacy torch.save format)


def _pickle_reason(exc: Exception) -> str:
    """The informative line of torch's weights_only error (names the refused global)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "global" in ln.lower() or "unsupported" in ln.lower():
            return ln
    return lines[0] if lines else type(exc).__name__


def load_state_dict_file(path: str | os.PathLike, allow_pickle: bool = False, *,
                         allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a weight file into a flat CPU state_dict (wrappers and ``module.`` prefixes removed).

    safetensors files are read directly. ``torch.save`` pickles are read with ``weights_only=True``
    (tensors and plain containers only; nothing is executed), mapped to CPU (CUDA-saved files load on
    CPU-only machines). A pickle that needs full unpickling is refused with :class:`UnsafeCheckpointError`
    unless ``allow_pickle=True`` / ``allow_unsafe_pickle=True`` (synonyms; trusted files only).
    """
    allow_unsafe_pickle = allow_unsafe_pickle or allow_pickle
    path = Path(path)
    if path.is_dir():
        raise WeightLoadError(f"{path} is a directory; expected a weight file (.safetensors, or a torch.save "
                              ".pt/.pth file)")
    if not path.is_file():
        raise WeightLoadError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return extract_state_dict(load_file(str(path), device="cpu"), str(path))
        except Exception as exc:  # noqa: BLE001 - re-raised with the file name
            if isinstance(exc, WeightLoadError):
                raise
            raise WeightLoadError(f"{path}: not a readable safetensors file ({exc})") from exc
    if not _is_pickle_file(path):
        raise WeightLoadError(f"{path}: neither safetensors (by extension) nor a torch.save file (truncated, or not "
                              "a checkpoint?); expected a .safetensors file or a complete torch.save .pt/.pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not allow_unsafe_pickle:
            raise UnsafeCheckpointError(
                f"{path}: refusing to unpickle: the file contains objects beyond tensors and plain containers, "
                f"and unpickling them could execute arbitrary code ({_pickle_reason(exc)}). "
                "Pass allow_unsafe_pickle=True (CLI: --allow-unsafe-pickle) only for files you trust.") from exc
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise WeightLoadError(f"{path}: could not read the torch.save file ({exc})") from exc
    return extract_state_dict(obj, str(path))


# One key that only a given official file has: tells which model a state_dict is for.
CHECKPOINT_SIGNATURES = (("pi3", "register_token"), ("gmos", "obj_token"), ("gmos-s", "fg_out.weight"),
                         ("sam2", "image_encoder.trunk.pos_embed"))
_KIND_OF_MODEL = {"Pi3Encoder": "pi3", "GMOSProposer": "gmos", "GMOSS": "gmos-s"}


def guess_checkpoint_kind(state: Mapping[str, object]) -> Optional[str]:
    """'pi3', 'gmos', 'gmos-s' or 'sam2' from the keys of a state_dict; None when none matches."""
    for kind, key in CHECKPOINT_SIGNATURES:
        if key in state:
            return kind
    return None


def _format_keys(keys: Iterable[str], limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_fit(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "state_dict",
              ignore_prefixes: tuple[str, ...] = (), allow_unexpected: bool = False) -> list[str]:
    """Raise :class:`WeightLoadError` unless every key of ``model`` is in ``state`` with the same shape.

    Works on meta-device models (only names and shapes are compared). Unexpected keys raise unless they start
    with one of ``ignore_prefixes`` or ``allow_unexpected``. Returns the keys that will be ignored.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    misshaped = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    extra = [k for k in state if k not in own]
    ignored = [k for k in extra if k.startswith(ignore_prefixes)]
    unexpected = [k for k in extra if not k.startswith(ignore_prefixes)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_format_keys(missing)}")
    if misshaped:
        problems.append(f"{len(misshaped)} misshaped keys: {_format_keys(misshaped)}")
    if unexpected and not allow_unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_format_keys(unexpected)}")
    if problems:
        hint = ""
        found_kind, wanted_kind = guess_checkpoint_kind(state), _KIND_OF_MODEL.get(type(model).__name__)
        if found_kind and wanted_kind and found_kind != wanted_kind:
            hint = f" (this looks like a {found_kind} checkpoint; a {wanted_kind} checkpoint was expected)"
        raise WeightLoadError(f"{source} does not fit {type(model).__name__}{hint}: " + "; ".join(problems))
    return ignored + (unexpected if allow_unexpected else [])


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "state_dict",
              ignore_prefixes: tuple[str, ...] = (), allow_unexpected: bool = False) -> list[str]:
    """Copy ``state`` into ``model`` after :func:`check_fit`; values are cast to each parameter's dtype and
    device. Returns the ignored keys."""
    ignored = check_fit(model, state, source=source, ignore_prefixes=ignore_prefixes,
                        allow_unexpected=allow_unexpected)
    own_keys = list(model.state_dict())
    model.load_state_dict({k: state[k] for k in own_keys}, strict=True)
    return ignored


def _state_from(source, allow_unsafe_pickle: bool) -> tuple[dict[str, torch.Tensor], str]:
    if isinstance(source, Mapping):
        return extract_state_dict(source, "state_dict"), "state_dict"
    return load_state_dict_file(source, allow_unsafe_pickle=allow_unsafe_pickle), str(source)


def load_pi3_encoder(model: nn.Module, source, *, allow_unsafe_pickle: bool = False) -> nn.Module:
    """Load Pi3's ``model.safetensors`` (or a converted file / state_dict) into a Pi3Encoder.

    Upstream Pi3's head keys (point/conf/camera decoders and heads) are ignored; every encoder key must be
    present. Returns the model in eval mode with gradients off (the encoder is frozen)."""
    state, name = _state_from(source, allow_unsafe_pickle)
    load_into(model, state, source=name, ignore_prefixes=PI3_IGNORED_PREFIXES)
    return model.eval().requires_grad_(False)


def load_proposer(model: nn.Module, source, *, allow_unsafe_pickle: bool = False,
                  strict_extra: bool = False) -> nn.Module:
    """Load a GMOS or GMOS-S checkpoint (``{"model_state_dict": sd}`` via torch.save, or safetensors).

    Every model key must be present with its shape (a GMOS file cannot fill a GMOS-S model or vice versa:
    the other head's keys are missing). Keys the model does not use (the released files' exact key set is
    unknown; training-only heads are possible) are ignored with a ``UserWarning`` naming them, or raise with
    ``strict_extra=True``."""
    state, name = _state_from(source, allow_unsafe_pickle)
    ignored = load_into(model, state, source=name, allow_unexpected=not strict_extra)
    if ignored:
        warnings.warn(f"{name}: ignored {len(ignored)} keys that {type(model).__name__} does not use: "
                      f"{_format_keys(ignored)}", UserWarning, stacklevel=2)
    return model.eval().requires_grad_(False)


load_gmos_s = load_proposer


def load_sam2_predictor_weights(predictor: nn.Module, source, *, allow_unsafe_pickle: bool = False) -> nn.Module:
    """Load ``sam2.1_hiera_large.pt`` (``{"model": sd}``) or safetensors strictly into a SAM2 predictor."""
    state, name = _state_from(source, allow_unsafe_pickle)
    load_into(predictor, state, source=name)
    return predictor


def save_safetensors(state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write a flat state_dict as safetensors (contiguous CPU copies; shared storage is duplicated)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(path), metadata=dict(metadata or {}))
    return path
