"""MOS-I against the official script's numbers on the reference fixture, library and CLI.

Measured: every number equals the official one exactly (max abs difference 0.0 over all aggregates and
per-sequence values); the tolerance 1e-12 only allows last-bit differences of another numpy build.
Expected values are read from official_results.json, never written here.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from gmos_core.cli.main import main as gmos_main
from gmos_core.metrics import (
    aggregate_mos_i,
    evaluate_mos_i_folders,
    format_mos_i_report,
    load_time_annotations,
)

TOL = 1e-12  # measured 0.0 (module docstring)
KEYS = ("mtiou", "j_mov", "fp_count", "mtiou_per_threshold", "j_mov_per_object")
AGG_KEYS = KEYS + ("mtiou_per_threshold_per_sequence", "fp_count_per_sequence")


@pytest.fixture(scope="module")
def metric_dir(fixtures_dir):
    return fixtures_dir / "metric"


@pytest.fixture(scope="module")
def official(metric_dir):
    return json.loads((metric_dir / "official_results.json").read_text())


@pytest.fixture(scope="module")
def report(metric_dir):
    annos = load_time_annotations(metric_dir / "time_annotation.csv", "davis17-im")
    return evaluate_mos_i_folders(
        metric_dir / "pred", metric_dir / "anno", annos, "davis17-im", frame_level=True, workers=1, progress=False
    )


def _close(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


def test_csv_filtering_matches_official(metric_dir, official):
    annos = load_time_annotations(metric_dir / "time_annotation.csv", "davis17-im")
    assert list(annos) == official["sequences_evaluated"]
    for dropped in official["dropped_rows"]:
        assert dropped not in annos


@pytest.mark.parametrize("variant", ["slhm", "flhm"])
def test_per_sequence_numbers(report, official, variant):
    assert [r.name for r in report.results] == official["sequences_evaluated"]
    for r in report.results:
        ref = official["per_sequence"][r.name]
        assert r.n_frames == ref["n_frames_evaluated"]
        assert r.resized == ref["prediction_resized"]
        assert r.motion_scores_used == ref["motion_npy_used"]
        assert r.num_moving_objects == ref["num_objs (moving GT objects)"]
        mine = getattr(r, variant).summary()
        for key in KEYS:
            _close(mine[key], ref[variant][key])


@pytest.mark.parametrize("variant", ["slhm", "flhm"])
def test_aggregates(report, official, variant):
    mine = getattr(report, variant).summary()
    ref = official["aggregate_frame_level_run"][variant]
    for key in AGG_KEYS:
        _close(mine[key], ref[key])
    # The headline numbers are means of the per-threshold / per-object / per-sequence lists.
    assert mine["mtiou"] == pytest.approx(np.mean(ref["mtiou_per_threshold"]), abs=TOL)
    assert 0 < mine["mtiou"] < 1 and 0 < mine["j_mov"] < 1 and mine["fp_count"] > 0  # non-trivial data


def test_verbose_means(report, official):
    for r in report.results:
        ref = official["verbose_per_sequence_means"][r.name]
        _close([r.slhm.j_mov, r.slhm.mtiou, r.flhm.j_mov, r.flhm.mtiou],
               [ref["j_mov_slhm"], ref["mtiou_slhm"], ref["j_mov_flhm"], ref["mtiou_flhm"]])


def test_sequence_level_run_is_the_same_as_in_the_frame_level_run(metric_dir, official):
    annos = load_time_annotations(metric_dir / "time_annotation.csv", "davis17-im")
    rep = evaluate_mos_i_folders(metric_dir / "pred", metric_dir / "anno", annos, "davis17-im", workers=2,
                                 progress=False)
    assert rep.flhm is None
    mine = rep.slhm.summary()
    for key in AGG_KEYS:
        _close(mine[key], official["aggregate_sequence_level_run"]["slhm"][key])
    assert rep.printed() == official["printed_output"]["sequence_level_only"]


def test_printed_output_is_official(report, official):
    text = format_mos_i_report("davis17-im", report.results, report.slhm, report.flhm)
    assert text == official["printed_output"]["frame_level"]
    assert aggregate_mos_i(r.slhm for r in report.results).summary() == report.slhm.summary()


@pytest.mark.parametrize("frame_level", [True, False])
def test_cli_reproduces_official(metric_dir, official, tmp_path, capsys, frame_level):
    argv = ["eval", "--protocol", "mos-i", "--dataset", "davis17-im", "--pred", str(metric_dir / "pred"),
            "--anno", str(metric_dir / "anno"), "--time-anno", str(metric_dir / "time_annotation.csv"),
            "--out", str(tmp_path), "--quiet", "--workers", "2"]
    if frame_level:
        argv.append("--frame-level-match")
    assert gmos_main(argv) == 0
    out = capsys.readouterr().out
    key = "frame_level" if frame_level else "sequence_level_only"
    assert out == official["printed_output"][key]
    written = json.loads((tmp_path / "results.json").read_text())
    variants = ["slhm", "flhm"] if frame_level else ["slhm"]
    for variant in variants:
        for k in AGG_KEYS:
            _close(written["aggregate"][variant][k], official["aggregate_frame_level_run"][variant][k])
        for seq, ref in official["per_sequence"].items():
            for k in KEYS:
                _close(written["per_sequence"][seq][variant][k], ref[variant][k])
    assert (tmp_path / "per_sequence.csv").read_text().startswith("sequence,")
    assert (tmp_path / "aggregate.csv").is_file()
    per_object = (tmp_path / "per_object.csv").read_text().splitlines()
    assert len(per_object) == 1 + len(official["aggregate_frame_level_run"]["slhm"]["j_mov_per_object"])
    header = per_object[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in per_object[1:]]
    assert rows[0]["sequence"] == official["sequences_evaluated"][0]
    _close([float(r["slhm_j_mov"]) for r in rows], official["aggregate_frame_level_run"]["slhm"]["j_mov_per_object"])
    for png in ["per_sequence.png"] + [f"timelines/{s}.png" for s in official["sequences_evaluated"]]:
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
