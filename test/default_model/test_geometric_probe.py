"""benchmarks/geometric_probe.py: scores the geometric mode's probability map per GeometricConfig variant on a
rendered split; a variant really reaches the mode, and the counts are of the clips' own frames."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.geometric_probe import main, probe  # noqa: E402
from benchmarks.heldout_eval import generate  # noqa: E402


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    data = tmp_path_factory.mktemp("probe") / "data"
    meta = generate(data, {"normal": 1, "static_camera": 1, "static_scene": 1}, 10, (240, 136),
                    {"normal": 960000, "static_camera": 970000, "static_scene": 980000})
    return data, meta


def test_a_variant_reaches_the_geometric_mode(tiny_split):
    data, meta = tiny_split
    shipped = probe(data, meta, {})
    assert sum(shipped["cases"].values()) == 30  # 3 clips x 10 frames
    assert shipped["all"]["recall"] > 0.2  # the static-camera clip's mover is found
    # a residual floor no motion reaches calls nothing: if the variant were dropped this would equal the above
    blind = probe(data, meta, {"residual_floor": 1e6})
    assert blind["all"]["recall"] == 0.0 and blind["static_flagged"] == 0.0
    for scores in (shipped["all"], shipped["moving_camera"]):
        assert 0.0 <= scores["iou"] <= min(scores["precision"], scores["recall"]) <= 1.0


def test_bad_variants_are_refused_before_any_work(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--variants", '[{"planar_fractio": 1}]']) == 2
    assert "planar_fractio" in capsys.readouterr().err
    assert main(["--out", str(tmp_path), "--variants", '{"planar_fraction": 1}']) == 2
    assert "JSON list of objects" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
