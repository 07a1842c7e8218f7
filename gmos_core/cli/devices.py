"""--device checks shared by the sub-commands: refuse a device torch cannot use before any model is built."""
from __future__ import annotations


def check_device(device: str) -> None:
    """Raise ValueError naming ``device`` when torch cannot parse it or it is not available on this machine."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"--device {device!r} is not a torch device; expected cpu, cuda or cuda:N") from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available (torch {torch.__version__}, "
                             f"{'no CUDA build' if torch.version.cuda is None else 'no visible GPU'}); "
                             "expected --device cpu here, or a CUDA build of torch with a visible GPU")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA device(s); expected cuda:0.."
                             f"cuda:{count - 1}")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available; expected --device cpu")
