"""medshift.flow_matching: the path, its velocity, the prior (offset and coarse noise) and the training times."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medshift.flow_matching import offset_noise, prior_noise, sample_path, sample_times
from medshift.scheduling_flow_match import FlowMatchODEScheduler


def test_path_velocity_is_the_time_derivative_of_the_path():
    x1, eps, t = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8), torch.tensor([0.2, 0.5, 0.9])
    x_t, u_t = sample_path(x1, eps, t)
    later, _ = sample_path(x1, eps, t + 1e-3)
    assert torch.allclose((later - x_t) / 1e-3, u_t, atol=1e-3)


def test_offset_noise_without_offset_is_plain_gaussian_noise():
    plain = torch.randn((2, 4, 16, 16), generator=torch.Generator().manual_seed(3))
    assert torch.equal(offset_noise((2, 4, 16, 16), 0.0, generator=torch.Generator().manual_seed(3)), plain)


def test_offset_noise_moves_each_channels_mean_by_its_own_constant():
    shape = (512, 4, 32, 32)
    plain = offset_noise(shape, 0.0, generator=torch.Generator().manual_seed(0))
    offset = offset_noise(shape, 1.5, generator=torch.Generator().manual_seed(0))
    difference = offset - plain  # the same per-cell draws first, then one constant per sample and channel
    assert torch.allclose(difference, difference[..., :1, :1].expand_as(difference), atol=1e-5)
    # per-cell noise averages out over the 32x32 cells; the offset does not
    assert plain.mean((2, 3)).std() == pytest.approx(1 / 32, rel=0.1)
    assert offset.mean((2, 3)).std() == pytest.approx((1.5**2 + 1 / 32**2) ** 0.5, rel=0.1)
    assert offset.std() == pytest.approx((1 + 1.5**2) ** 0.5, rel=0.05)


def test_offset_noise_per_sample_generators_do_not_depend_on_the_batch():
    pair = offset_noise((2, 4, 8, 8), 1.0, generator=[torch.Generator().manual_seed(s) for s in (5, 6)])
    alone = offset_noise((1, 4, 8, 8), 1.0, generator=[torch.Generator().manual_seed(6)])
    assert torch.equal(pair[1:], alone)


def test_prior_noise_without_coarse_levels_is_offset_noise():
    for coarse in (None, [], [0.0, 0.0]):
        drawn = prior_noise((2, 4, 16, 16), 1.5, coarse, generator=torch.Generator().manual_seed(4))
        assert torch.equal(drawn, offset_noise((2, 4, 16, 16), 1.5, generator=torch.Generator().manual_seed(4)))


def test_coarse_noise_adds_power_at_its_scale_and_leaves_the_fine_scales_alone():
    shape = (256, 4, 32, 32)
    plain = prior_noise(shape, 0.0, None, generator=torch.Generator().manual_seed(0))
    coarse = prior_noise(shape, 0.0, [0.0, 0.0, 1.0], generator=torch.Generator().manual_seed(0))  # a 4x4 grid
    added = coarse - plain  # the same per-cell draws first
    # smooth: the added noise barely changes from one cell to the next, the per-cell noise changes by sqrt(2)
    assert (added[..., 1:] - added[..., :-1]).std() < 0.2 < 1.3 < (plain[..., 1:] - plain[..., :-1]).std()
    # means over 8x8 blocks: per-cell noise averages out to 1/8, the coarse level does not
    assert F.avg_pool2d(plain, 8).std() == pytest.approx(1 / 8, rel=0.1)
    assert F.avg_pool2d(coarse, 8).std() > 0.6
    assert 0.6 < added.std() < 1.0  # a unit Gaussian grid, bilinearly upsampled: interpolation lowers the variance


def test_coarse_noise_of_a_grid_coarser_than_the_latent_is_one_constant():
    # 2**6 = 64 > 16: the level's grid is 1x1, an offset of its own
    added = prior_noise((3, 4, 16, 16), 0.0, [0, 0, 0, 0, 0, 2.0], generator=torch.Generator().manual_seed(2))
    added = added - prior_noise((3, 4, 16, 16), 0.0, None, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(added, added[..., :1, :1].expand_as(added), atol=1e-5)


def test_prior_noise_per_sample_generators_do_not_depend_on_the_batch():
    pair = prior_noise((2, 4, 16, 16), 1.0, [0, 0.5, 0.7], generator=[torch.Generator().manual_seed(s) for s in (5, 6)])
    alone = prior_noise((1, 4, 16, 16), 1.0, [0, 0.5, 0.7], generator=[torch.Generator().manual_seed(6)])
    assert torch.equal(pair[1:], alone)


@pytest.mark.parametrize("weights", [[0.5, -1.0], [float("nan")], [float("inf")]])
def test_prior_noise_refuses_negative_or_non_finite_weights(weights):
    with pytest.raises(ValueError, match="coarse_noise weights must be finite and >= 0.*level"):
        prior_noise((1, 4, 8, 8), 0.0, weights)
    with pytest.raises(ValueError, match="coarse_noise weights"):
        FlowMatchODEScheduler(coarse_noise=weights)


def test_scheduler_samples_from_its_configured_prior_and_round_trips_it(tmp_path):
    scheduler = FlowMatchODEScheduler(noise_offset=0.75)
    scheduler.save_pretrained(tmp_path)
    loaded = FlowMatchODEScheduler.from_pretrained(tmp_path)
    assert loaded.config.noise_offset == 0.75
    drawn = loaded.sample_noise((2, 4, 8, 8), generator=torch.Generator().manual_seed(1))
    assert torch.equal(drawn, offset_noise((2, 4, 8, 8), 0.75, generator=torch.Generator().manual_seed(1)))
    assert FlowMatchODEScheduler().config.noise_offset == 0.0  # older checkpoints: plain Gaussian
    with pytest.raises(ValueError, match="noise_offset must be >= 0, got -1"):
        FlowMatchODEScheduler(noise_offset=-1.0)


def test_scheduler_round_trips_coarse_noise_and_samples_it(tmp_path):
    FlowMatchODEScheduler(noise_offset=1.5, coarse_noise=[0.0, 0.0, 0.5, 0.7]).save_pretrained(tmp_path)
    loaded = FlowMatchODEScheduler.from_pretrained(tmp_path)
    assert list(loaded.config.coarse_noise) == [0.0, 0.0, 0.5, 0.7] and loaded.config.noise_offset == 1.5
    drawn = loaded.sample_noise((2, 4, 16, 16), generator=torch.Generator().manual_seed(1))
    assert torch.equal(drawn, prior_noise((2, 4, 16, 16), 1.5, [0.0, 0.0, 0.5, 0.7], generator=torch.Generator().manual_seed(1)))
    assert FlowMatchODEScheduler().config.coarse_noise is None  # older checkpoints: no coarse levels


def test_sample_times_without_focus_is_plain_uniform_time():
    assert torch.equal(sample_times(16, 0.25, 0.0, generator=torch.Generator().manual_seed(3)), torch.rand(16, generator=torch.Generator().manual_seed(3)))


def test_sample_times_puts_the_focus_fraction_on_the_focus_range_and_the_rest_on_the_whole_path():
    t = sample_times(200_000, focus_min=0.25, focus_fraction=0.75, generator=torch.Generator().manual_seed(0))
    assert t.shape == (200_000,) and t.min() >= 0 and t.max() < 1
    # below 0.25 only the uniform quarter lands, a quarter of the time: 0.25 * 0.25 of all draws
    assert abs((t < 0.25).float().mean().item() - 0.0625) < 0.005
    # above it the density is flat: 0.75 / 0.75 + 0.25 = 1.25 per unit time
    upper = t[t >= 0.25]
    assert abs((upper < 0.625).float().mean().item() - 0.5) < 0.01
    fully_focused = sample_times(10_000, focus_min=0.6, focus_fraction=1.0, generator=torch.Generator().manual_seed(1))
    assert fully_focused.min() >= 0.6 and abs(fully_focused.mean().item() - 0.8) < 0.01


@pytest.mark.parametrize(("focus_min", "focus_fraction", "message"), [(1.0, 0.5, "focus_min"), (-0.1, 0.5, "focus_min"), (0.25, 1.5, "focus_fraction")])
def test_sample_times_refuses_settings_outside_the_unit_interval(focus_min, focus_fraction, message):
    with pytest.raises(ValueError, match=message):
        sample_times(4, focus_min, focus_fraction)
