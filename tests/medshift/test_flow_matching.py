"""medshift.flow_matching: the path, its velocity and the offset-noise prior."""

from __future__ import annotations

import pytest
import torch

from medshift.flow_matching import offset_noise, sample_path
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
