"""benchmarks/tracker_sweep.py: the post-processing it sweeps runs the shipped path on cached maps (the empty
variant = components of prob > 0.5 -> IoU tracker with its defaults), and each option changes what it claims."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.tracker_sweep import grouped_proposals, run_variant  # noqa: E402


def _cache(tmp_path, frames=6):
    """One clip: a square moving right (prob 0.9) next to a 2-px-away fragment of it (prob 0.6)."""
    probs = np.zeros((frames, 40, 64), np.float32)
    rgb = np.zeros((frames, 40, 64, 3), np.uint8)
    for t in range(frames):
        probs[t, 10:20, 4 + 2 * t:14 + 2 * t] = 0.9
        probs[t, 22:26, 4 + 2 * t:14 + 2 * t] = 0.6
        rgb[t, 10:20, 4 + 2 * t:14 + 2 * t] = 255
    cache = tmp_path / "fg_prob"
    cache.mkdir()
    np.savez_compressed(cache / "clip.npz", prob=probs.astype(np.float16), iou=np.zeros(frames, np.float32))
    data = tmp_path / "data" / "JPEGImages" / "clip"
    data.mkdir(parents=True)
    from PIL import Image

    for t in range(frames):
        Image.fromarray(rgb[t]).save(data / f"{t:05d}.jpg", quality=100)
    return cache, tmp_path / "data"


def test_default_variant_is_components_and_tracker(tmp_path):
    cache, data = _cache(tmp_path)
    labels = run_variant({}, cache, ["clip"], data)["clip"]
    assert len(labels) == 6
    assert all(sorted(np.unique(lab)) == [0, 1, 2] for lab in labels)  # square and fragment: two tracks
    assert all((lab[10:20] == 1).sum() == 100 for lab in labels)
    merged = run_variant({"merge_px": 3}, cache, ["clip"], data)["clip"]
    assert all(sorted(np.unique(lab)) == [0, 1] for lab in merged)  # one proposal: one track
    high = run_variant({"threshold": 0.7}, cache, ["clip"], data)["clip"]
    assert all((lab > 0).sum() == 100 for lab in high)  # the 0.6 fragment is below the threshold
    snapped = run_variant({"guided": {"radius": 2, "eps": 0.001}}, cache, ["clip"], data)["clip"]
    assert any((s != lab).any() for s, lab in zip(snapped, labels))


def test_grouped_proposals_keep_only_the_components_pixels():
    prob = np.zeros((20, 20), np.float32)
    prob[2:6, 2:6] = prob[2:6, 8:12] = 0.9
    props = grouped_proposals(prob, 0.5, 2, 0.0)
    assert len(props.masks) == 1 and props.masks[0].sum() == 32
    assert len(grouped_proposals(prob, 0.5, 0, 0.0).masks) == 2


def test_code_stamp_changes_with_the_engine_code(tmp_path):
    """The probability cache is keyed on the engine's code too: editing or adding a file changes the stamp."""
    from benchmarks.tracker_sweep import code_stamp

    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    first = code_stamp(pkg)
    assert code_stamp(pkg) == first
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    second = code_stamp(pkg)
    assert second != first
    (pkg / "c.py").write_text("")
    assert code_stamp(pkg) != second


def test_code_stamp_ignores_the_tracker(tmp_path):
    """The cached maps come before the tracker: editing gmos_core/tracking keeps the cache, editing the engine
    does not."""
    from benchmarks.tracker_sweep import AFTER_THE_CACHE, code_stamp

    assert "tracking" in AFTER_THE_CACHE
    pkg = tmp_path / "pkg"
    (pkg / "tracking").mkdir(parents=True)
    (pkg / "engine").mkdir()
    (pkg / "tracking" / "t.py").write_text("a = 1\n")
    (pkg / "engine" / "e.py").write_text("b = 1\n")
    first = code_stamp(pkg, AFTER_THE_CACHE)
    (pkg / "tracking" / "t.py").write_text("a = 2\n")
    assert code_stamp(pkg, AFTER_THE_CACHE) == first
    assert code_stamp(pkg) != code_stamp(pkg, AFTER_THE_CACHE)
    (pkg / "engine" / "e.py").write_text("b = 2\n")
    assert code_stamp(pkg, AFTER_THE_CACHE) != first


def test_each_variant_has_its_own_folder():
    """Predictions of a variant land in the same folder whatever else a call sweeps (before, the n-th variant of
    every call wrote to v00n, so a later call silently replaced an earlier one's predictions)."""
    from benchmarks.tracker_sweep import variant_key

    assert variant_key({}) == "shipped"
    a = variant_key({"split_cover": 0.5, "split_min_age": 3})
    assert a == variant_key({"split_min_age": 3, "split_cover": 0.5})  # key order does not matter
    assert a != variant_key({"split_cover": 0.3, "split_min_age": 3}) and a.startswith("v")
