"""A small ODE scheduler for flow matching, in both time directions.

MedShift's network predicts a velocity v(x, t) on the path of `medshift.flow_matching`
(t = 0 noise, t = 1 data). Translating an image means integrating dx/dt = v twice: backwards
from t = 1 to t = tau (inversion), then forwards from tau to 1 (generation). diffusers' own
flow-matching schedulers step in one direction only and in "sigma" time, so MedShift ships this
one: a fixed time grid between any two times in [0, 1] and one explicit solver step at a time.

The pipeline owns the loop (and its progress bar); the scheduler owns the numerics:

    grid = scheduler.time_grid(1.0, tau, num_steps)          # decreasing: inversion
    for t, t_next in zip(grid[:-1], grid[1:]):
        x = scheduler.step(velocity_fn, x, t, t_next)        # velocity_fn(x, t) -> v

Solvers (evaluations of the network per step): euler (1), midpoint (2), heun (2), rk4 (4).
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from medshift.flow_matching import SIGMA_MIN

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]

# network evaluations per step for each solver
SOLVER_STAGES: dict[str, int] = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


class FlowMatchODEScheduler(SchedulerMixin, ConfigMixin):
    """Fixed-step ODE integrator for flow-matching velocity fields, forwards or backwards in time.

    Args:
        num_train_timesteps: the network is called with `timestep = t * num_train_timesteps`
            (1000, as in training).
        num_inference_steps: default number of steps for integrating over the whole interval [0, 1];
            a sub-interval of length L gets `round(num_inference_steps * L)` steps (at least 1).
        solver: default solver, one of "euler", "midpoint", "heun", "rk4".
        sigma_min: the path's minimum noise level (see `medshift.flow_matching`), used by `add_noise`.
    """

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        num_inference_steps: int = 50,
        solver: str = "euler",
        sigma_min: float = SIGMA_MIN,
    ):
        self._check_solver(solver)
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")

    @staticmethod
    def _check_solver(solver: str) -> None:
        if solver not in SOLVER_STAGES:
            raise ValueError(f"unknown solver {solver!r}; valid solvers: {', '.join(SOLVER_STAGES)}")

    def steps_between(self, t_from: float, t_to: float, num_inference_steps: int | None = None) -> int:
        """Number of steps for the interval [t_from, t_to]: its share of `num_inference_steps` (at least 1).

        Args:
            t_from: start time in [0, 1].
            t_to: end time in [0, 1].
            num_inference_steps: steps for the whole [0, 1] interval; None uses the config default.
        """
        n = self.config.num_inference_steps if num_inference_steps is None else int(num_inference_steps)
        if n < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {n}")
        if t_from == t_to:
            return 0
        return max(1, round(n * abs(t_to - t_from)))

    def time_grid(self, t_from: float, t_to: float, num_steps: int) -> list[float]:
        """`num_steps + 1` evenly spaced times from `t_from` to `t_to` (decreasing when integrating backwards).

        Args:
            t_from: start time in [0, 1].
            t_to: end time in [0, 1].
            num_steps: number of solver steps (>= 1).
        """
        for name, value in (("t_from", t_from), ("t_to", t_to)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        return torch.linspace(t_from, t_to, num_steps + 1, dtype=torch.float64).tolist()

    def timestep(self, t: float, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The network's timestep argument for time `t`: `t * num_train_timesteps`, shape (batch_size,)."""
        return torch.full((batch_size,), t * self.config.num_train_timesteps, dtype=torch.float32, device=device)

    def step(
        self,
        velocity_fn: VelocityFn,
        sample: torch.Tensor,
        t: float,
        t_next: float,
        solver: str | None = None,
    ) -> torch.Tensor:
        """Advance `sample` from time `t` to `t_next` (either direction) with one solver step.

        Args:
            velocity_fn: `velocity_fn(x, t) -> v`, the (guided) velocity at state `x` and time `t`.
            sample: the state at time `t`.
            t: current time in [0, 1].
            t_next: time to step to, in [0, 1]; smaller than `t` integrates backwards.
            solver: "euler", "midpoint", "heun" or "rk4"; None uses the config default.

        Returns:
            The state at `t_next`.
        """
        solver = self.config.solver if solver is None else solver
        self._check_solver(solver)
        h = t_next - t
        x = sample
        if solver == "euler":
            return x + h * velocity_fn(x, t)
        if solver == "midpoint":
            k1 = velocity_fn(x, t)
            return x + h * velocity_fn(x + 0.5 * h * k1, t + 0.5 * h)
        if solver == "heun":
            k1 = velocity_fn(x, t)
            k2 = velocity_fn(x + h * k1, t_next)
            return x + 0.5 * h * (k1 + k2)
        # classic fourth-order Runge-Kutta
        k1 = velocity_fn(x, t)
        k2 = velocity_fn(x + 0.5 * h * k1, t + 0.5 * h)
        k3 = velocity_fn(x + 0.5 * h * k2, t + 0.5 * h)
        k4 = velocity_fn(x + h * k3, t_next)
        return x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)

    def integrate(
        self,
        velocity_fn: VelocityFn,
        sample: torch.Tensor,
        t_from: float,
        t_to: float,
        num_steps: int,
        solver: str | None = None,
    ) -> torch.Tensor:
        """Integrate dx/dt = velocity_fn(x, t) from `t_from` to `t_to` in `num_steps` equal steps.

        Args:
            velocity_fn: `velocity_fn(x, t) -> v`.
            sample: the state at `t_from`.
            t_from: start time in [0, 1].
            t_to: end time in [0, 1] (smaller than `t_from` integrates backwards).
            num_steps: number of solver steps (>= 1).
            solver: "euler", "midpoint", "heun" or "rk4"; None uses the config default.
        """
        grid = self.time_grid(t_from, t_to, num_steps)
        for t, t_next in zip(grid[:-1], grid[1:]):
            sample = self.step(velocity_fn, sample, t, t_next, solver=solver)
        return sample

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, t: float) -> torch.Tensor:
        """The probability path at time `t`: `(1 - (1 - sigma_min) t) noise + t x1` (SDEdit's starting point).

        Args:
            original_samples: data latents x1.
            noise: Gaussian noise of the same shape.
            t: time in [0, 1]; t = 1 returns the data, t = 0 the noise.
        """
        return (1 - (1 - self.config.sigma_min) * t) * noise + t * original_samples

    def num_function_evaluations(self, num_steps: int, solver: str | None = None) -> int:
        """Network evaluations (one per guided batch) that `num_steps` steps of `solver` cost."""
        solver = self.config.solver if solver is None else solver
        self._check_solver(solver)
        return num_steps * SOLVER_STAGES[solver]

    def __len__(self) -> int:
        return self.config.num_train_timesteps
