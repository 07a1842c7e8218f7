"""The engine on real (tiny, random) models: streaming equals the whole-file batched path, and the offline
mode reproduces a direct call of the official pipeline pieces on the same features and proposals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gmos_core.engine import EngineConfig, StreamingEngine
from gmos_core.engine.models import build_engine_models
from gmos_core.io.stride import group_list_with_stride

PIXEL_LIMIT = 14 * 14 * 12  # tiny Pi3 grid (fast)
H, W = 40, 56


def synthetic_video(num_frames: int, seed: int = 0) -> np.ndarray:
    """Noisy background with a bright square moving right by 3 px per frame."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 80, (num_frames, H, W, 3), dtype=np.uint8)
    for t in range(num_frames):
        frames[t, 12:26, 4 + 3 * t:18 + 3 * t] = (220, 40, 40)
    return frames


def stream(engine, frames, fps):
    results = []
    for i, frame in enumerate(frames):
        results += engine.push(frame, int(round(i * 1e9 / fps)), frame_id="synthetic", key=i)
    return results + engine.flush()


@pytest.fixture(scope="module")
def gmos_s_models():
    torch.manual_seed(0)
    config = EngineConfig(mode="gmos_s", fps=8.0, pixel_limit=PIXEL_LIMIT)
    return build_engine_models(config, "tiny", allow_random=True, seed=0)


def test_random_weights_are_labelled_loudly(gmos_s_models):
    assert gmos_s_models.random_weights
    assert "RANDOM WEIGHTS" in gmos_s_models.description
    with pytest.raises(ValueError, match="allow_random"):
        build_engine_models(EngineConfig(mode="gmos_s"), "tiny")


def _direct_gmos_s(models, frames):
    """The whole-file path of the official scripts, written out directly: index windows, Pi3 forward (no
    cache), one batched SAM 2 pass, the head, upsample + sigmoid. Returns (windows, prob (T,H,W))."""
    from gmos_core.postprocess import gmos_s_probability
    from gmos_core.preprocess import pi3_image_tensor, pi3_target_size, sam2_image_tensor

    size = pi3_target_size(W, H, PIXEL_LIMIT)
    windows = group_list_with_stride(list(range(len(frames))), 5, 1)
    with torch.inference_mode():
        pi3_in = pi3_image_tensor(list(frames), size)[torch.tensor(windows)]
        token = models.pi3(pi3_in)[:, 2].float()
        _, sam_btn, high_res = models.sam(sam2_image_tensor(list(frames)))
        out = models.head(token, sam_btn, high_res)
    return windows, gmos_s_probability(out["fg_mask"], (H, W))


def test_gmos_s_streaming_equals_whole_file_batched(gmos_s_models, monkeypatch):
    models = gmos_s_models
    frames = synthetic_video(7)
    fps = 8.0  # stride max(1, int(8/8)) = 1
    # The random head's foreground probabilities sit in 0.39-0.44: every dynamic mask would be empty and the
    # comparison below would check nothing. Shift the output bias (a deterministic crafted value) so that the
    # median pixel sits at 0.5: about half of the pixels are dynamic and the threshold decides real pixels.
    _, prob = _direct_gmos_s(models, frames)
    logit = np.log(prob) - np.log1p(-prob)
    shifted = torch.nn.Parameter(models.head.fg_out.bias.detach() - float(np.median(logit)), requires_grad=False)
    monkeypatch.setattr(models.head.fg_out, "bias", shifted)
    windows, direct = _direct_gmos_s(models, frames)
    streamed = stream(StreamingEngine(EngineConfig(mode="gmos_s", fps=fps, pixel_limit=PIXEL_LIMIT), models), frames, fps)
    batched = stream(StreamingEngine(EngineConfig(mode="gmos_s", fps=fps, pixel_limit=PIXEL_LIMIT, batch_size=4),
                                     models), frames, fps)

    assert [r.frame.key for r in streamed] == list(range(7)) == [r.frame.key for r in batched]
    assert [r.window_indices for r in streamed] == windows
    decided_pixels = 0
    for t in range(7):
        decided = np.abs(direct[t] - 0.5) > 1e-4
        decided_pixels += int(decided.sum())
        for result in (streamed[t], batched[t]):
            assert result.fg_prob.shape == (H, W) and result.labels.dtype == np.uint16
            np.testing.assert_allclose(result.fg_prob, direct[t], atol=2e-5)
            np.testing.assert_array_equal(result.dynamic_mask[decided], (direct[t] > 0.5)[decided])
            np.testing.assert_array_equal(result.labels > 0, result.dynamic_mask)
    # The data exercise the threshold: both classes on every frame, about half dynamic overall.
    fractions = [r.dynamic_mask.mean() for r in streamed]
    assert all(0.02 < f < 0.98 for f in fractions) and 0.3 < np.mean(fractions) < 0.7, fractions
    assert decided_pixels > 0.95 * 7 * H * W


class CraftedGMOSS:
    """Replaces the GMOS-S head: foreground logit +6 on the moving square of the frame being processed, -6
    elsewhere (frames counted in call order)."""

    def __init__(self) -> None:
        self.next_frame = 0

    def __call__(self, token, sam_btn, high_res):
        batch = token.shape[0]
        fg = torch.empty(batch, 1, 256, 256)
        for b in range(batch):
            fg[b, 0] = CraftedProposer().mask_for(self.next_frame)
            self.next_frame += 1
        ones = torch.ones(batch, 1)
        return {"fg_mask": fg, "iou_pred": ones, "conf_pred": ones}


def test_gmos_s_dynamic_mask_is_the_moving_square():
    """Which pixels are dynamic: with a head that marks the square, the engine's dynamic mask (upsample to the
    source size, sigmoid, > 0.5) is the square of each frame exactly (IoU 1), and the label map agrees."""
    config = EngineConfig(mode="gmos_s", fps=8.0, pixel_limit=PIXEL_LIMIT)
    models = build_engine_models(config, "tiny", allow_random=True, seed=0)
    models.run_head = CraftedGMOSS()
    frames = synthetic_video(6)
    results = stream(StreamingEngine(config, models), frames, 8.0)
    assert [r.frame.key for r in results] == list(range(6))
    for t, result in enumerate(results):
        square = np.zeros((H, W), bool)
        square[12:26, 4 + 3 * t:18 + 3 * t] = True
        iou = (result.dynamic_mask & square).sum() / (result.dynamic_mask | square).sum()
        assert iou == 1.0, f"frame {t}: IoU {iou}"
        assert result.fg_prob[square].min() > 0.99 and result.fg_prob[~square].max() < 0.01
        np.testing.assert_array_equal(result.labels > 0, square)


class CraftedProposer:
    """Replaces the (random) proposer head: query 0 = the moving square of the frame being processed
    (confident and moving), the other queries empty and static. Frames are counted in call order."""

    def __init__(self, num_queries: int = 10) -> None:
        self.next_frame = 0
        self.num_queries = num_queries

    def mask_for(self, t: int) -> torch.Tensor:
        canvas = torch.full((H, W), -6.0)
        canvas[12:26, 4 + 3 * t:18 + 3 * t] = 6.0
        return torch.nn.functional.interpolate(canvas[None, None], size=(256, 256), mode="nearest")[0, 0]

    def __call__(self, token, sam_btn, high_res):
        batch = token.shape[0]
        masks = torch.full((batch, self.num_queries, 256, 256), -6.0)
        motion = torch.full((batch, self.num_queries, 1), -3.0)
        iou = torch.full((batch, self.num_queries, 1), 0.2)
        for b in range(batch):
            masks[b, 0] = self.mask_for(self.next_frame)
            motion[b, 0] = 3.0
            iou[b, 0] = 0.9
            self.next_frame += 1
        return {"mask": masks, "motion_logits": motion, "iou_pred": iou, "conf_pred": torch.ones_like(iou)}


def _direct_offline_inputs(models, frames, batch_size):
    """The official order without the engine: SAM 2 features per batch of frames, crafted proposals through
    the models' official post-processing (top-K, upsample, hard max, whole-video labelling)."""
    from gmos_core.postprocess import label_proposals, select_top_proposals

    backbones, outputs = [], []
    head = CraftedProposer()
    for start in range(0, len(frames), batch_size):
        chunk = list(frames[start:start + batch_size])
        backbones += models.sam_encode(models.sam_inputs(chunk))
        outputs += select_top_proposals(head(torch.zeros(len(chunk), 1), None, None), (H, W))
    return backbones, label_proposals(outputs)


def test_offline_hands_the_propagator_the_official_inputs(monkeypatch):
    """Plumbing (fast): the engine gives run_two_stage exactly the per-frame SAM 2 features and the official
    whole-video labels, and maps its mos / mos-i maps back onto the right frames."""
    import gmos_core.propagator as propagator_pkg
    from gmos_core.propagator.two_stage import TwoStageResult

    config = EngineConfig(mode="gmos_offline", fps=8.0, pixel_limit=PIXEL_LIMIT, batch_size=3)
    models = build_engine_models(config, "tiny", allow_random=True, seed=0)
    models.run_head = CraftedProposer()
    frames = synthetic_video(5)
    calls = []
    rng = np.random.default_rng(3)
    fake_mos = rng.integers(0, 3, (5, H, W)).astype(np.uint8)
    fake_mos_i = np.where(rng.random((5, H, W)) > 0.5, fake_mos, 0).astype(np.uint8)

    def spy(predictor, backbone_outs, seq_annos, pred_motions, pred_ious, video_hw, config=None, progress=True):
        calls.append((predictor, backbone_outs, seq_annos, pred_motions, pred_ious, video_hw))
        return TwoStageResult(mos_i=fake_mos_i, mos=fake_mos)

    monkeypatch.setattr(propagator_pkg, "run_two_stage", spy, raising=False)
    engine = StreamingEngine(config, models)
    results = []
    for i, frame in enumerate(frames):
        results += engine.push(frame, int(round(i * 1e9 / 8)), key=i)
        assert engine.retained["offline_frames"] <= i + 1
    assert results == [] and not calls  # offline results only at the end of the stream
    results = engine.flush()
    assert len(calls) == 1
    predictor, backbones, seq_annos, motions, ious, video_hw = calls[0]
    direct_backbones, labels = _direct_offline_inputs(models, frames, 3)
    assert predictor is models.predictor and tuple(video_hw) == (H, W)
    np.testing.assert_array_equal(seq_annos, labels.seq_annos)
    np.testing.assert_array_equal(motions, labels.pred_motions)
    np.testing.assert_array_equal(ious, labels.pred_ious)
    assert seq_annos.max() == 1 and motions[:, 0, 0].min() > 0.9  # the crafted square, label 1
    for ours, theirs in zip(backbones, direct_backbones):
        for a, b in zip(ours["backbone_fpn"] + ours["vision_pos_enc"], theirs["backbone_fpn"] + theirs["vision_pos_enc"]):
            assert torch.equal(a, b)
    for t, result in enumerate(results):
        assert result.frame.key == t
        np.testing.assert_array_equal(result.labels, fake_mos[t])
        np.testing.assert_array_equal(result.labels_mos_i, fake_mos_i[t])
        states = {o.instance_id: o.state.name for o in result.objects}
        for instance_id, state in states.items():
            assert state == ("MOVING" if (fake_mos_i[t] == instance_id).any() else "STATIC")
        for obj in result.objects:
            assert obj.pixel_count == int((result.labels == obj.instance_id).sum())
            x, y, w, h = obj.bbox_xywh
            assert (result.labels[y:y + h, x:x + w] == obj.instance_id).sum() == obj.pixel_count


def test_offline_real_propagator_tracks_the_square():
    """End to end with the real SAM 2 (tiny) two-stage propagator on a 3-frame clip (slow part of this area:
    SAM 2 memory encoding runs at 1024x1024 even for the tiny model)."""
    from gmos_core.propagator import run_two_stage

    config = EngineConfig(mode="gmos_offline", fps=8.0, pixel_limit=PIXEL_LIMIT, batch_size=3)
    models = build_engine_models(config, "tiny", allow_random=True, seed=0)
    models.run_head = CraftedProposer()
    frames = synthetic_video(3)
    results = stream(StreamingEngine(config, models), frames, 8.0)
    backbones, labels = _direct_offline_inputs(models, frames, 3)
    direct = run_two_stage(models.predictor, backbones, labels.seq_annos, labels.pred_motions, labels.pred_ious,
                           (H, W), progress=False)
    assert direct.mos_i.any(), "the crafted moving square must be tracked"
    for t, result in enumerate(results):
        np.testing.assert_array_equal(result.labels, direct.mos[t])
        np.testing.assert_array_equal(result.labels_mos_i, direct.mos_i[t])
        assert result.timings_ms["propagator"] > 0
    square = np.zeros((H, W), bool)
    square[12:26, 7:21] = True
    assert (results[1].labels_mos_i > 0)[square].mean() > 0.5


def test_online_mode_on_real_tiny_models():
    """gmos_online, 40 pushed frames through real tiny models (every 6th frame segmented, the rest context
    only; a crafted moving square so the tracker really holds an object): the square is seeded and tracked,
    skipped frames get skipped results in order, results are causal, and the engine's buffer / token cache
    and the propagator's conditioning memory stay within their caps. (The propagator's own long-stream
    flatness is tested in test/propagator.)"""
    from gmos_core.propagator import PropagatorConfig

    config = EngineConfig(mode="gmos_online", fps=8.0, pixel_limit=PIXEL_LIMIT)
    models = build_engine_models(config, "tiny", allow_random=True, seed=0)
    crafted = CraftedProposer()
    steps = iter(range(7))

    def head(token, sam_btn, high_res):
        crafted.next_frame = next(steps)  # the square of segmented step k sits at x = 4 + 3k
        return crafted(token, sam_btn, high_res)

    models.run_head = head
    engine = StreamingEngine(config, models)
    video = synthetic_video(7)
    history = []
    results = []
    for i in range(40):
        results += engine.push(video[i // 6], int(round(i * 1e9 / 8)), key=i, segment=i % 6 == 0)
        assert all(r.frame.key <= i - 2 for r in results if not r.skipped)  # 2-frame look-ahead, no more needed
        history.append(dict(engine.retained))
    results += engine.flush()
    assert [r.frame.key for r in results] == list(range(40))
    assert all(r.skipped == (r.frame.key % 6 != 0) for r in results)
    tracked = [r for r in results if not r.skipped]
    assert all(r.mode == "gmos_online" and r.timings_ms["propagator"] > 0 for r in tracked)
    square = np.zeros((H, W), bool)
    square[12:26, 4:18] = True
    first = tracked[0]
    assert (first.labels > 0)[square].mean() > 0.9  # seeded from the confident moving proposal
    assert first.moving_objects and first.moving_objects[0].track_id == 0
    assert first.dynamic_mask[square].mean() > 0.9
    assert max(h.get("propagator_objects", 0) for h in history) >= 1
    caps = PropagatorConfig()
    for h in history:
        objects = max(1, h.get("propagator_objects", 0))
        assert h.get("propagator_cond_outputs", 0) <= objects * caps.max_kept_cond_frames
        assert h["buffered_frames"] <= 7  # stride 1: 5-frame span + tolerance
        assert h["cached_tokens"] <= 7
        assert h["waiting"] <= 3 and h["unemitted"] <= 4


def test_weight_files_are_loaded(tmp_path):
    """Weight files given to build_engine_models end up in the models (torch.save dict read with
    weights_only=True; safetensors for Pi3 and SAM 2), and a set of all three is not labelled random."""
    from safetensors.torch import save_file

    from gmos_core.engine.models import WeightPaths
    from gmos_core.models import build_pi3_encoder, build_proposer
    from gmos_core.models.sam2_features import TINY_CONFIG_PATH, build_sam2_predictor

    torch.manual_seed(123)
    pi3, head = build_pi3_encoder("tiny"), build_proposer("tiny")
    sam = build_sam2_predictor(str(TINY_CONFIG_PATH))
    with torch.no_grad():
        for p in list(pi3.parameters()) + list(head.parameters()) + list(sam.parameters()):
            p.add_(torch.randn_like(p))
    save_file({k: v.contiguous() for k, v in pi3.state_dict().items()}, str(tmp_path / "pi3.safetensors"))
    save_file({k: v.contiguous() for k, v in sam.state_dict().items()}, str(tmp_path / "sam2.safetensors"))
    torch.save({"model_state_dict": head.state_dict()}, tmp_path / "gmos.pt")
    weights = WeightPaths(pi3=str(tmp_path / "pi3.safetensors"), sam2=str(tmp_path / "sam2.safetensors"),
                          head=str(tmp_path / "gmos.pt"), sam2_config=str(TINY_CONFIG_PATH))
    models = build_engine_models(EngineConfig(mode="gmos_offline"), "tiny", weights)
    assert not models.random_weights and "RANDOM" not in models.description
    for ours, theirs in ((models.pi3, pi3), (models.head, head), (models.predictor, sam)):
        for (key, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), key
    with pytest.raises(FileNotFoundError, match="Pi3 weights not found"):
        build_engine_models(EngineConfig(mode="gmos_s"), "tiny", WeightPaths(pi3=str(tmp_path / "nope")),
                            allow_random=True)
