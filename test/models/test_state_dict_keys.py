"""Full-size key/shape coverage against the official listing (official_state_dict_keys.txt), parsed at test
time. Models are built on the meta device: no weights are allocated."""
from __future__ import annotations

import re

import pytest
import torch

from gmos_core.models import build_gmos_s, build_pi3_encoder, build_proposer, build_sam2_predictor

KEY_LINE = re.compile(r"^  (\S+)\s+\(([\d, ]*)\)\s+(float\d+|int\d+|bool)\s*$")
COUNT_LINE = re.compile(r"^num keys: (\d+)")


def parse_listing(path) -> dict[str, dict]:
    """section title -> {"keys": {key: shape} (in file order), "num_keys": int | None}."""
    lines = path.read_text().splitlines()
    sections: dict[str, dict] = {}
    current = None
    for i, line in enumerate(lines):
        if line.startswith("=" * 20) and i + 2 < len(lines) and lines[i + 2].startswith("=" * 20):
            current = sections.setdefault(lines[i + 1].strip(), {"keys": {}, "num_keys": None})
            continue
        if current is None:
            continue
        m = COUNT_LINE.match(line)
        if m:
            current["num_keys"] = int(m.group(1))
        m = KEY_LINE.match(line)
        if m:
            shape = tuple(int(s) for s in m.group(2).replace(" ", "").split(",") if s)
            current["keys"][m.group(1)] = shape
    return sections


@pytest.fixture(scope="module")
def listing(shared_dir):
    return parse_listing(shared_dir / "docs" / "official_state_dict_keys.txt")


def _section(listing, prefix):
    matches = [v for k, v in listing.items() if k.startswith(prefix)]
    assert len(matches) == 1, f"listing section {prefix!r} not found uniquely in {list(listing)}"
    return matches[0]


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_proposer_keys(listing):
    section = _section(listing, "GMOSProposer()")
    assert section["num_keys"] == 211 and len(section["keys"]) == 211
    with torch.device("meta"):
        shapes = _shapes(build_proposer("full"))
    assert shapes == section["keys"]
    assert list(shapes) == list(section["keys"])


def test_gmos_s_keys(listing):
    section = _section(listing, "GMOS_S()")
    assert section["num_keys"] == 80 and len(section["keys"]) == 80
    with torch.device("meta"):
        shapes = _shapes(build_gmos_s("full"))
    assert shapes == section["keys"]
    assert list(shapes) == list(section["keys"])


def test_pi3_encoder_keys(listing):
    assert _section(listing, "Pi3Encoder(")["num_keys"] == 994
    section = _section(listing, "APPENDIX: complete Pi3Encoder")
    assert len(section["keys"]) == 994
    with torch.device("meta"):
        model = build_pi3_encoder("full")
    shapes = _shapes(model)
    assert shapes == section["keys"]
    assert list(shapes) == list(section["keys"])
    assert sum(v.numel() for v in model.state_dict().values()) == 757_923_846
    assert "encoder.mask_token" not in shapes
    assert set(dict(model.named_buffers())) == {"image_mean", "image_std"}


def test_sam2_predictor_keys(listing):
    section = _section(listing, "Vendored SAM2VideoPredictor")
    assert section["num_keys"] == 903
    predictor = build_sam2_predictor("configs/sam2.1/sam2.1_hiera_l.yaml", None, meta=True)
    shapes = _shapes(predictor)
    assert len(shapes) == 903
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 224_446_898
    listed = section["keys"]
    assert len(listed) > 30  # the listing shows the keys the proposer path uses plus two trunk blocks
    for key, shape in listed.items():
        assert shapes.get(key) == shape, key
    assert predictor.fill_hole_area == 0
    assert sum(k.startswith("image_encoder.") for k in shapes) == 594
