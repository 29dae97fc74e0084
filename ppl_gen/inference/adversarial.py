"""The adversarial engine: two-player training, the one kind of training SVI cannot express.

A model qualifies when it implements :class:`SupportsAdversarial`: an ordered set of
*phases* (e.g. ``reconstruction``, ``discriminator``, ``generator``), each with its own
parameters, and ``adversarial_loss(phase, batch)``. Every step draws a minibatch and runs
the phases in order, each with its own Adam optimiser; the ``discriminator`` phase runs
``discriminator_steps`` times on fresh minibatches (n_critic). Gradients are cleared before
every phase, so a generator loss never leaks into the discriminator's update. A model may
also define ``adversarial_after_step(phase)``, called after each optimiser step (WGAN clips
its critic's weights there), and ``discriminator_learning_rate`` gives the discriminator
its own step size (two time scales).

References:
    Goodfellow et al. (2014), "Generative adversarial nets", NeurIPS.
    Makhzani et al. (2016), "Adversarial autoencoders", ICLR workshop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import pyro
import torch
from torch import Tensor

from ..config import AdversarialConfig
from .base import FitResult, Problem, StepInfo
from .loop import Engine

__all__ = ["SupportsAdversarial", "AdversarialState", "init", "step", "run", "ENGINE"]


@runtime_checkable
class SupportsAdversarial(Protocol):
    """What the adversarial engine needs from a model."""

    def adversarial_phases(self) -> dict[str, Iterable[Tensor]]: ...
    def adversarial_loss(self, phase: str, batch: dict[str, Tensor]) -> Tensor: ...


class AdversarialState(NamedTuple):
    """State between steps.

    Attributes:
        problem: The model bound to its data (parameters updated in place).
        optimizers: One Adam per phase, in phase order.
        generator: The torch generator that draws minibatch rows.
        num_steps: Steps taken so far.
        config: The config the fit runs under.
    """

    problem: Problem
    optimizers: dict[str, torch.optim.Optimizer]
    generator: torch.Generator
    num_steps: int
    config: AdversarialConfig | None = None


def _model(problem: Problem) -> SupportsAdversarial:
    module = problem.module
    if module is None or not isinstance(module, SupportsAdversarial):
        raise TypeError(f"engine 'adversarial' needs a model with adversarial_phases() and "
                        f"adversarial_loss(phase, batch) (e.g. 'aae'); {problem.name!r} has "
                        "none — use 'svi'")
    return module


def init(problem: Problem, config: AdversarialConfig | None = None,
         seed: int = 0) -> AdversarialState:
    """One Adam per phase over that phase's parameters."""
    config = config or AdversarialConfig()
    model = _model(problem)
    if config.batch_size > _num_rows(problem):
        raise ValueError(f"batch_size={config.batch_size} is larger than the data "
                         f"({_num_rows(problem)} rows); use batch_size <= "
                         f"{_num_rows(problem)}")
    pyro.set_rng_seed(seed)
    optimizers = {}
    for name, params in model.adversarial_phases().items():
        params = list(params)
        if not params:
            raise ValueError(f"phase {name!r} of {problem.name!r} has no parameters")
        rate = (config.discriminator_learning_rate
                if name == "discriminator" and config.discriminator_learning_rate is not None
                else config.learning_rate)
        optimizers[name] = torch.optim.Adam(params, lr=rate, betas=config.betas)
    device = next(iter(problem.data.values())).device
    generator = torch.Generator(device=device).manual_seed(seed)
    if problem.module is not None:
        problem.module.train()
        problem.module.__dict__.pop("_adversarial_params", None)  # modules may change
    return AdversarialState(problem, optimizers, generator, 0, config)


def _num_rows(problem: Problem) -> int:
    return int(next(iter(problem.data.values())).shape[0])


def _batch(state: AdversarialState, batch_size: int) -> dict[str, Tensor]:
    num_rows = _num_rows(state.problem)
    device = state.generator.device
    rows = torch.randperm(num_rows, generator=state.generator, device=device)[:batch_size]
    return {k: v.index_select(0, rows) for k, v in state.problem.data.items()
            if isinstance(v, Tensor) and v.dim() and v.shape[0] == num_rows}


def _clear_grads(module: torch.nn.Module) -> None:
    """``module.zero_grad(set_to_none=True)`` without walking the module tree on every
    phase (a quarter of a small GAN's step): the parameter list is read once."""
    params = module.__dict__.get("_adversarial_params")
    if params is None:
        params = module.__dict__["_adversarial_params"] = list(module.parameters())
    for param in params:
        param.grad = None


def step(state: AdversarialState,
         config: AdversarialConfig | None = None) -> tuple[AdversarialState, StepInfo]:
    """One minibatch through every phase; raises on a non-finite loss."""
    config = config if config is not None else state.config
    if config is None:
        raise ValueError("adversarial.step needs the config: pass the state from "
                         "adversarial.init")
    model = _model(state.problem)
    module = state.problem.module
    after_step = getattr(model, "adversarial_after_step", None)
    losses = {}
    for name, optimizer in state.optimizers.items():
        repeats = config.discriminator_steps if name == "discriminator" else 1
        for _ in range(repeats):
            batch = _batch(state, config.batch_size)
            _clear_grads(module)
            loss = model.adversarial_loss(name, batch)
            value = float(loss.detach())
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"{name} loss became {value} at step {state.num_steps + 1}; lower "
                    "learning_rate or check the data scale")
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(name)  # e.g. WGAN's weight clipping
            losses[name] = value
    _clear_grads(module)
    total = sum(losses.values())
    return state._replace(num_steps=state.num_steps + 1), StepInfo(total, losses)


def _record(records: dict[str, Any], state: AdversarialState, info: StepInfo,
            index: int) -> None:
    config = state.config
    if index % config.log_every == 0 or index == config.num_steps - 1:
        records["loss"].append(info.loss)
        for key, value in info.extras.items():
            records.setdefault(key, []).append(value)


def _finish(problem: Problem, config: AdversarialConfig, seed: int,
            state: AdversarialState, records: dict[str, Any],
            base_info: dict[str, Any]) -> FitResult:
    arrays = {k: np.asarray(v) for k, v in records.items()}
    info_dict: dict[str, Any] = {**base_info, "num_steps": config.num_steps,
                                 "phases": list(state.optimizers)}
    return FitResult("adversarial", problem, config, seed, arrays, info=info_dict)


def state_dict(state: AdversarialState) -> dict[str, Any]:
    module = state.problem.module
    return {"model_state": {k: v.detach().clone() for k, v in module.state_dict().items()},
            "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
            "generator": state.generator.get_state(), "num_steps": state.num_steps}


def load_state_dict(state: AdversarialState, saved: dict[str, Any]) -> AdversarialState:
    state.problem.module.load_state_dict(saved["model_state"])
    for name, optimizer in state.optimizers.items():
        optimizer.load_state_dict(saved["optimizers"][name])
    state.generator.set_state(saved["generator"])
    return state._replace(num_steps=saved["num_steps"])


def run(problem: Problem, config: AdversarialConfig | None = None, seed: int = 0,
        **loop: Any) -> FitResult:
    """``init`` then ``config.num_steps`` calls to ``step``; history per phase."""
    return ENGINE.run(problem, config or AdversarialConfig(), seed, **loop)


ENGINE = Engine(
    name="adversarial", config_class=AdversarialConfig, kind="two-player",
    description="two-player training: adversarial autoencoders, GANs",
    init=init, step=step, total_steps=lambda config: config.num_steps,
    new_records=lambda config: {"loss": []}, record=_record, finish=_finish,
    state_dict=state_dict, load_state_dict=load_state_dict,
    label=lambda config: "adversarial")
