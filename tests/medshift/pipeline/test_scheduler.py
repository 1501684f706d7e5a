from __future__ import annotations

import math

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from medshift.scheduling_flow_match import FlowMatchODEScheduler


def linear_field(x: torch.Tensor, t: float) -> torch.Tensor:
    # dx/dt = -x (1 + t): exact solution x(t) = x(t0) exp(-(t - t0) - (t^2 - t0^2) / 2)
    return -x * (1 + t)


def exact(x0: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    return x0 * math.exp(-(t1 - t0) - (t1**2 - t0**2) / 2)


@pytest.mark.parametrize("solver,expected_order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_solvers_converge_at_their_order(integrate, solver, expected_order):
    scheduler = FlowMatchODEScheduler(solver=solver)
    assert scheduler.order == expected_order  # network evaluations per step; here also the accuracy order
    x0 = torch.ones(3, dtype=torch.float64)
    errors = []
    for steps in (8, 16):
        x1 = integrate(scheduler, linear_field, x0, 0.0, 1.0, steps)
        errors.append((x1 - exact(x0, 0.0, 1.0)).abs().max().item())
    observed_order = math.log2(errors[0] / errors[1])
    assert observed_order == pytest.approx(expected_order, abs=0.3)


@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_integrates_backwards_in_time(integrate, solver):
    scheduler = FlowMatchODEScheduler(solver=solver)
    x1 = torch.full((2,), 2.0, dtype=torch.float64)
    x_tau = integrate(scheduler, linear_field, x1, 1.0, 0.3, 286)  # 200 steps over [0.3, 1]
    assert torch.allclose(x_tau, exact(x1, 1.0, 0.3), rtol=1e-2)
    back = integrate(scheduler, linear_field, x_tau, 0.3, 1.0, 286)
    assert torch.allclose(back, x1, rtol=1e-2)


def test_set_timesteps_fills_one_timestep_per_network_evaluation():
    scheduler = FlowMatchODEScheduler(num_inference_steps=20)
    scheduler.set_timesteps(t_from=1.0, t_to=0.45)  # 20 * 0.55 = 11 steps, backwards
    assert scheduler.num_inference_steps == 11
    assert len(scheduler.times) == 12 and scheduler.times[0] == 1.0 and scheduler.times[-1] == pytest.approx(0.45)
    assert scheduler.timesteps[0] == 1000.0 and bool((scheduler.timesteps.diff() < 0).all())
    scheduler.set_timesteps(10, t_from=0.0, t_to=1.0, solver="rk4")
    assert len(scheduler.timesteps) == 10 * scheduler.order == 40
    assert scheduler.timesteps[:4].tolist() == pytest.approx([0.0, 50.0, 50.0, 100.0])  # t, t + h/2 twice, t + h
    scheduler.set_timesteps(50, t_from=1.0, t_to=0.99)
    assert scheduler.num_inference_steps == 1  # never zero steps for a non-empty interval
    scheduler.set_timesteps(50, t_from=1.0, t_to=1.0)
    assert len(scheduler.timesteps) == 0


def test_step_follows_diffusers_contract():
    scheduler = FlowMatchODEScheduler(solver="heun")
    scheduler.set_timesteps(1, t_from=0.0, t_to=1.0)
    x = torch.ones(2)
    predictor = scheduler.step(torch.full((2,), 2.0), scheduler.timesteps[0], x).prev_sample
    assert torch.equal(predictor, torch.full((2,), 3.0))  # stage 1 returns the Euler predictor x + h v
    (final,) = scheduler.step(torch.full((2,), 4.0), scheduler.timesteps[1], predictor, return_dict=False)
    assert torch.equal(final, torch.full((2,), 4.0))  # x + h (v1 + v2) / 2
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(torch.zeros(2), 1000.0, final)


def test_add_noise_is_the_flow_path():
    scheduler = FlowMatchODEScheduler()
    x1, noise = torch.randn(2, 4), torch.randn(2, 4)
    assert torch.allclose(scheduler.add_noise(x1, noise, 1.0), x1 + 1e-4 * noise)  # sigma_min noise stays
    assert torch.equal(scheduler.add_noise(x1, noise, 0.0), noise)
    mid = scheduler.add_noise(x1, noise, 0.5)
    assert torch.allclose(mid, (1 - (1 - 1e-4) * 0.5) * noise + 0.5 * x1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown solver 'dopri5'.*euler"):
        FlowMatchODEScheduler(solver="dopri5")
    scheduler = FlowMatchODEScheduler()
    with pytest.raises(ValueError, match="unknown solver 'dopri5'"):
        scheduler.set_timesteps(10, solver="dopri5")
    with pytest.raises(ValueError, match="t_to"):
        scheduler.set_timesteps(10, t_from=1.0, t_to=-0.1)
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(0, t_from=1.0, t_to=0.5)


def public(config) -> dict:
    return {key: value for key, value in config.items() if not key.startswith("_")}


def test_config_round_trip_and_from_config(tmp_path):
    scheduler = FlowMatchODEScheduler(num_inference_steps=33, solver="heun")
    scheduler.save_pretrained(tmp_path)
    loaded = FlowMatchODEScheduler.from_pretrained(tmp_path)
    assert public(loaded.config) == public(scheduler.config)
    assert loaded.order == 2
    swapped = FlowMatchODEScheduler.from_config(EulerDiscreteScheduler().config, solver="rk4")
    assert swapped.config.num_train_timesteps == 1000 and swapped.order == 4
    assert public(FlowMatchODEScheduler.from_config(scheduler.config).config) == public(scheduler.config)
