"""Fixtures of the models area: reference tensors loaded once per session."""
from __future__ import annotations

import pytest
import torch


def load_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def weights_from(tensors: dict, prefix: str = "weights/") -> dict[str, torch.Tensor]:
    """Reference weights (stored fp16 for the heads) as float32, prefix removed."""
    return {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}


@pytest.fixture(scope="session")
def proposer_ref(fixtures_dir):
    return load_tensors(fixtures_dir / "gmos_proposer_full" / "gmos_proposer_full.safetensors")


@pytest.fixture(scope="session")
def gmos_s_ref(fixtures_dir):
    return load_tensors(fixtures_dir / "gmos_s_full" / "gmos_s_full.safetensors")


@pytest.fixture(scope="session")
def pi3_tiny_ref(fixtures_dir):
    return load_tensors(fixtures_dir / "pi3_tiny" / "pi3_tiny.safetensors")


@pytest.fixture(scope="session")
def head_inputs(proposer_ref):
    """(token, sam_btn, [high_res_0, high_res_1]) of the head fixtures, as float32."""
    r = proposer_ref
    return (r["inputs/token"].float(), r["inputs/sam_btn"].float(),
            [r["inputs/high_res_0"].float(), r["inputs/high_res_1"].float()])
