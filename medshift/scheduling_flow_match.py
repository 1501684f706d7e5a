"""A fixed-step ODE scheduler for flow matching, in both time directions, with diffusers' scheduler contract.

MedShift's network predicts a velocity v(x, t) on the path of `medshift.flow_matching`. Translating an image
means integrating dx/dt = v twice: backwards from t = 1 to t = tau (inversion), then forwards from tau to 1
(generation). The pipeline owns the loop, as in diffusers' pipelines:

    scheduler.set_timesteps(num_inference_steps, t_from=1.0, t_to=tau)   # inversion: backwards in time
    for t in scheduler.timesteps:
        model_output = unet(sample, t, class_labels=labels).sample      # the velocity at (sample, t)
        sample = scheduler.step(model_output, t, sample).prev_sample

Time convention (where MedShift differs from diffusers): time t runs from 0 (noise) to 1 (data), the path
is x_t = (1 - (1 - sigma_min) t) x0 + t x1, and the network is called with `timestep = t * num_train_timesteps`.
diffusers' flow-matching schedulers count "sigmas" the other way (sigma = 1 noise, 0 data) and step in one
direction only; this scheduler steps either way between any two times in [0, 1].

Multi-stage solvers work as diffusers' `HeunDiscreteScheduler` does: `order` is the number of network
evaluations per solver step, `timesteps` lists one entry per evaluation (stage), and each `step` call
consumes one. Between the stages of a solver step `prev_sample` is the point where the network is evaluated
next, not a state of the ODE; after the last stage it is the state at the end of the step.

Solvers (order = network evaluations per step): euler (1), midpoint (2), heun (2), rk4 (4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from medshift.flow_matching import SIGMA_MIN, check_coarse_noise, flow_path, prior_noise

# network evaluations per solver step, and where in the step (as a fraction of its length) each one lies
SOLVER_STAGES: dict[str, tuple[float, ...]] = {
    "euler": (0.0,),
    "midpoint": (0.0, 0.5),
    "heun": (0.0, 1.0),
    "rk4": (0.0, 0.5, 0.5, 1.0),
}


@dataclass
class FlowMatchODESchedulerOutput(BaseOutput):
    """Output of `FlowMatchODEScheduler.step`.

    Args:
        prev_sample: the sample for the next `step` call (the state at the end of the solver step after
            its last stage; the next evaluation point between stages).
    """

    prev_sample: torch.Tensor


class FlowMatchODEScheduler(SchedulerMixin, ConfigMixin):
    """Fixed-step ODE integrator for flow-matching velocity fields, forwards or backwards in time.

    Args:
        num_train_timesteps: the network is called with `timestep = t * num_train_timesteps`
            (1000, as in training).
        num_inference_steps: default number of steps for integrating over the whole interval [0, 1];
            a sub-interval of length L gets `round(num_inference_steps * L)` steps (at least 1).
        solver: one of "euler", "midpoint", "heun", "rk4".
        sigma_min: the path's minimum noise level (see `medshift.flow_matching`), used by `add_noise`.
        noise_offset: standard deviation of the per-channel constant added to the Gaussian noise the model
            was trained with (`medshift.flow_matching.offset_noise`; 0: plain Gaussian).
        coarse_noise: standard deviations of the coarse noise levels the model was trained with, entry k - 1
            for the grid 2**k times coarser than the latent (`medshift.flow_matching.prior_noise`; None or
            empty: none). `sample_noise` draws from the whole prior (SDEdit's noise).
    """

    config_name = "scheduler_config.json"

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        num_inference_steps: int = 50,
        solver: str = "euler",
        sigma_min: float = SIGMA_MIN,
        noise_offset: float = 0.0,
        coarse_noise: list[float] | None = None,
    ):
        check_solver(solver)
        check_coarse_noise(coarse_noise)
        if noise_offset < 0:
            raise ValueError(f"noise_offset must be >= 0, got {noise_offset}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        self.solver = solver
        self.num_inference_steps: int | None = None
        self.times: list[float] = []  # the solver steps' boundaries, in MedShift time
        self.timesteps = torch.empty(0)
        self._step_index = 0
        self._stage_start: torch.Tensor | None = None
        self._derivatives: list[torch.Tensor] = []

    @property
    def order(self) -> int:
        """Network evaluations (`step` calls) per solver step."""
        return len(SOLVER_STAGES[self.solver])

    @property
    def step_index(self) -> int:
        """Index of the next `step` call in `timesteps`."""
        return self._step_index

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        t_from: float = 0.0,
        t_to: float = 1.0,
        solver: str | None = None,
    ) -> None:
        """Prepare the steps from `t_from` to `t_to` (smaller `t_to` integrates backwards) and fill `timesteps`.

        Args:
            num_inference_steps: steps for the whole interval [0, 1]; [t_from, t_to] gets its share,
                `round(num_inference_steps * |t_to - t_from|)` steps, at least 1 (as diffusers' img2img
                pipelines scale their steps by strength). None uses the config default.
            device: where `timesteps` lives.
            t_from: start time in [0, 1].
            t_to: end time in [0, 1].
            solver: overrides the config's solver for this run.
        """
        for name, value in (("t_from", t_from), ("t_to", t_to)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        self.solver = self.config.solver if solver is None else solver
        check_solver(self.solver)
        num_steps = num_steps_between(t_from, t_to, self.config.num_inference_steps if num_inference_steps is None else num_inference_steps)
        self.num_inference_steps = num_steps
        self.times = torch.linspace(t_from, t_to, num_steps + 1, dtype=torch.float64).tolist() if num_steps else []
        stage_times = [
            t + fraction * (t_next - t) if 0.0 < fraction < 1.0 else (t_next if fraction else t)
            for t, t_next in zip(self.times[:-1], self.times[1:])
            for fraction in SOLVER_STAGES[self.solver]
        ]
        self.timesteps = torch.tensor([t * self.config.num_train_timesteps for t in stage_times], dtype=torch.float32, device=device)
        self._step_index = 0
        self._stage_start, self._derivatives = None, []

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> FlowMatchODESchedulerOutput | tuple:
        """One stage of the solver: take the velocity `model_output` at (`sample`, `timestep`) and return the
        sample to evaluate next (or, after the last stage, the state at the end of the solver step).

        Args:
            model_output: the (guided) velocity predicted at `sample` and `timestep`.
            timestep: the entry of `timesteps` this call belongs to (the stage is tracked by the step index,
                as in diffusers' Heun scheduler).
            sample: the sample the network was evaluated at.
            return_dict: return a `FlowMatchODESchedulerOutput` (True) or a tuple `(prev_sample,)`.
        """
        if self._step_index >= len(self.timesteps):
            raise ValueError(f"step called {self._step_index + 1} times for {len(self.timesteps)} timesteps: call set_timesteps first")
        step, stage = divmod(self._step_index, self.order)
        t, t_next = self.times[step], self.times[step + 1]
        h = t_next - t
        if stage == 0:
            self._stage_start, self._derivatives = sample, []
        self._derivatives.append(model_output)
        prev_sample = _stage_update(self.solver, stage, h, self._stage_start, self._derivatives)
        self._step_index += 1
        if stage == self.order - 1:
            self._stage_start, self._derivatives = None, []
        if not return_dict:
            return (prev_sample,)
        return FlowMatchODESchedulerOutput(prev_sample=prev_sample)

    def sample_noise(self, shape: tuple[int, ...], generator=None, device=None, dtype=None) -> torch.Tensor:
        """Noise from the prior the model was trained with: Gaussian, plus `noise_offset` per channel and the
        `coarse_noise` levels (`medshift.flow_matching.prior_noise`)."""
        return prior_noise(shape, self.config.noise_offset, self.config.coarse_noise, generator=generator, device=device, dtype=dtype)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, t: float) -> torch.Tensor:
        """The probability path at time `t`: `(1 - (1 - sigma_min) t) noise + t x1` (SDEdit's starting point).

        Args:
            original_samples: data latents x1.
            noise: Gaussian noise of the same shape.
            t: time in [0, 1] (MedShift's convention); t = 1 returns the data, t = 0 the noise.
        """
        return flow_path(original_samples, noise, t, self.config.sigma_min)

    def __len__(self) -> int:
        return self.config.num_train_timesteps


def check_solver(solver: str) -> None:
    """Raise a ValueError naming the valid solvers when `solver` is not one of them."""
    if solver not in SOLVER_STAGES:
        raise ValueError(f"unknown solver {solver!r}; valid solvers: {', '.join(SOLVER_STAGES)}")


def num_steps_between(t_from: float, t_to: float, num_inference_steps: int) -> int:
    """Solver steps for [t_from, t_to]: its share of `num_inference_steps` over [0, 1], at least 1 (0 if empty)."""
    if int(num_inference_steps) < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    if t_from == t_to:
        return 0
    return max(1, round(int(num_inference_steps) * abs(t_to - t_from)))


def _stage_update(solver: str, stage: int, h: float, x: torch.Tensor, k: list[torch.Tensor]) -> torch.Tensor:
    """Explicit Runge-Kutta tableaux, one stage at a time: `x` is the state at the step's start, `k` the
    velocities so far; returns the next evaluation point, or the step's result after the last stage."""
    if solver == "euler":
        return x + h * k[0]
    if solver == "midpoint":
        return x + 0.5 * h * k[0] if stage == 0 else x + h * k[1]
    if solver == "heun":
        return x + h * k[0] if stage == 0 else x + 0.5 * h * (k[0] + k[1])
    # classic fourth-order Runge-Kutta
    if stage < 2:
        return x + 0.5 * h * k[stage]
    if stage == 2:
        return x + h * k[2]
    return x + h / 6.0 * (k[0] + 2 * k[1] + 2 * k[2] + k[3])
