"""The default model's refinement stage (gmos_core.models.motion_refiner): shapes, its starting point, bad input."""
import pytest
import torch

from gmos_core.models.motion_refiner import MotionRefiner, MotionRefinerConfig, prob_logit


def _inputs(b=2, h=68, w=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 3, h, w, generator=g), torch.rand(b, 1, h, w, generator=g),
            torch.rand(b, 1, h, w, generator=g))


def test_untrained_refiner_is_the_logit_sum_of_its_two_probabilities():
    # zero-initialised last layer + unit input weights: training starts from the "logit sum" fusion; a refiner
    # that swapped, dropped or rescaled an input would not reproduce it
    rgb, head, motion = _inputs()
    out = MotionRefiner()(rgb, head, motion)
    torch.testing.assert_close(out, prob_logit(head) + prob_logit(motion), atol=1e-5, rtol=0)


@pytest.mark.parametrize("hw", [(136, 240), (67, 121), (40, 40)])
def test_any_size_in_gives_the_same_size_out_and_no_border_artifact(hw):
    torch.manual_seed(0)
    refiner = MotionRefiner()
    for p in refiner.parameters():  # a non-trivial correction path
        torch.nn.init.normal_(p, std=0.2)
    rgb, head, motion = _inputs(1, *hw)
    out = refiner(rgb, head, motion)
    assert out.shape == (1, 1, *hw)
    assert torch.isfinite(out).all()


def test_every_input_changes_the_output_once_trained():
    torch.manual_seed(0)
    refiner = MotionRefiner()
    for p in refiner.parameters():
        torch.nn.init.normal_(p, std=0.2)
    rgb, head, motion = _inputs(1)
    base = refiner(rgb, head, motion)
    for i, changed in enumerate((1 - rgb, 1 - head, 1 - motion)):
        args = [rgb, head, motion]
        args[i] = changed
        assert (refiner(*args) - base).abs().max() > 1e-3, f"input {i} has no effect"


def test_bad_inputs_and_configs_are_named():
    refiner = MotionRefiner()
    rgb, head, motion = _inputs()
    with pytest.raises(ValueError, match="rgb must be"):
        refiner(rgb[:, :2], head, motion)
    with pytest.raises(ValueError, match="motion_prob must be"):
        refiner(rgb, head, motion[..., :-1])
    with pytest.raises(ValueError, match="divisible by groups"):
        MotionRefinerConfig(channels=(8, 10))
    with pytest.raises(ValueError, match="unknown keys"):
        MotionRefinerConfig.from_dict({"channels": [8, 16], "depth": 3})
    assert MotionRefinerConfig.from_dict(MotionRefinerConfig().to_dict()) == MotionRefinerConfig()
