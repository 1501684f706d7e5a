from __future__ import annotations

import math

import pytest
import torch

from medshift.scheduling_flow_match import FlowMatchODEScheduler


def linear_field(x: torch.Tensor, t: float) -> torch.Tensor:
    # dx/dt = -x (1 + t): exact solution x(t) = x(t0) exp(-(t - t0) - (t^2 - t0^2) / 2)
    return -x * (1 + t)


def exact(x0: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    return x0 * math.exp(-(t1 - t0) - (t1**2 - t0**2) / 2)


@pytest.mark.parametrize("solver,expected_order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_solvers_converge_at_their_order(solver, expected_order):
    scheduler = FlowMatchODEScheduler()
    x0 = torch.ones(3, dtype=torch.float64)
    errors = []
    for steps in (8, 16):
        x1 = scheduler.integrate(linear_field, x0, 0.0, 1.0, steps, solver=solver)
        errors.append((x1 - exact(x0, 0.0, 1.0)).abs().max().item())
    observed_order = math.log2(errors[0] / errors[1])
    assert observed_order == pytest.approx(expected_order, abs=0.3)


@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_integrates_backwards_in_time(solver):
    scheduler = FlowMatchODEScheduler()
    x1 = torch.full((2,), 2.0, dtype=torch.float64)
    x_tau = scheduler.integrate(linear_field, x1, 1.0, 0.3, 200, solver=solver)
    assert torch.allclose(x_tau, exact(x1, 1.0, 0.3), rtol=1e-2)
    back = scheduler.integrate(linear_field, x_tau, 0.3, 1.0, 200, solver=solver)
    assert torch.allclose(back, x1, rtol=1e-2)


def test_time_grid_and_step_counts():
    scheduler = FlowMatchODEScheduler(num_inference_steps=20)
    grid = scheduler.time_grid(1.0, 0.45, 11)
    assert len(grid) == 12 and grid[0] == 1.0 and grid[-1] == pytest.approx(0.45)
    assert all(a > b for a, b in zip(grid, grid[1:]))
    assert scheduler.steps_between(1.0, 0.45) == 11
    assert scheduler.steps_between(1.0, 0.99) == 1  # never zero steps for a non-empty interval
    assert scheduler.steps_between(1.0, 1.0) == 0
    assert scheduler.steps_between(1.0, 0.5, 50) == 25
    assert scheduler.num_function_evaluations(10, "rk4") == 40
    assert scheduler.timestep(0.25, 3).tolist() == [250.0, 250.0, 250.0]


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
    with pytest.raises(ValueError, match="num_steps"):
        scheduler.time_grid(1.0, 0.5, 0)
    with pytest.raises(ValueError, match="t_to"):
        scheduler.time_grid(1.0, -0.1, 4)
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.steps_between(1.0, 0.5, 0)


def test_config_round_trip(tmp_path):
    scheduler = FlowMatchODEScheduler(num_inference_steps=33, solver="heun")
    scheduler.save_pretrained(tmp_path)
    loaded = FlowMatchODEScheduler.from_pretrained(tmp_path)
    assert loaded.config.num_inference_steps == 33
    assert loaded.config.solver == "heun"
    assert loaded.config.sigma_min == scheduler.config.sigma_min
