"""The EM engine for models with an exact E step.

A model qualifies when it implements ``initialize(x, init=, seed=)``, ``e_step(x) -> stats``,
``m_step(stats)`` and ``log_likelihood(x) -> (N,)``. The E step sets q(z) to the exact
posterior, closing the variational gap; the M step maximises the ELBO in theta in closed
form, so the log-likelihood never decreases — which the engine checks.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..config import EMConfig
from .base import FitResult, Problem, StepInfo
from .loop import Engine

__all__ = ["SupportsEM", "EMState", "init", "step", "run", "ENGINE"]


@runtime_checkable
class SupportsEM(Protocol):
    """What the EM engine needs from a model."""

    def initialize(self, x: Tensor, *, init: str, seed: int) -> None: ...
    def e_step(self, x: Tensor) -> dict[str, Tensor]: ...
    def m_step(self, stats: dict[str, Tensor]) -> None: ...
    def log_likelihood(self, x: Tensor) -> Tensor: ...


class EMState(NamedTuple):
    """State between EM iterations.

    Attributes:
        problem: The model bound to its data (the model's parameters are updated in place).
        log_likelihood: Mean per-datum log-likelihood at the current parameters.
        num_iterations: Completed iterations.
        converged: Whether the last improvement was below ``tol``.
        config: The config the fit runs under.
        initial_log_likelihood: At the initial parameters (the history's first entry).
    """

    problem: Problem
    log_likelihood: float
    num_iterations: int
    converged: bool
    config: EMConfig | None = None
    initial_log_likelihood: float | None = None


def _model(problem: Problem) -> SupportsEM:
    module = problem.module
    if module is None or not isinstance(module, SupportsEM):
        names = "GaussianMixture, PPCA, FactorAnalysis"
        raise TypeError(f"engine 'em' needs a model with initialize/e_step/m_step/"
                        f"log_likelihood ({names}); {problem.name!r} has none — use 'svi' "
                        "or 'nuts'")
    if getattr(module, "priors", False):
        raise ValueError(f"EM fits point parameters; {problem.name!r} was built with "
                         "priors=True — build it with priors=False, or use 'nuts'/'svi'")
    return module


def _x(problem: Problem) -> Tensor:
    return problem.data["x"]


def init(problem: Problem, config: EMConfig | None = None, seed: int = 0, *,
         initialize: bool = True) -> EMState:
    """Initialise the model's parameters (unless ``initialize=False``, which keeps the ones
    it has, e.g. set with ``set_parameters``) and evaluate the log-likelihood."""
    config = config or EMConfig()
    model = _model(problem)
    x = _x(problem)
    if initialize:
        model.initialize(x, init=config.init, seed=seed)
    with torch.no_grad():
        ll = float(model.log_likelihood(x).mean())
    return EMState(problem, ll, 0, False, config, ll)


def step(state: EMState, config: EMConfig | None = None) -> tuple[EMState, StepInfo]:
    """One E step and one M step; checks that the log-likelihood did not decrease."""
    config = config if config is not None else state.config
    if config is None:
        raise ValueError("em.step needs the config: pass the state from em.init")
    model = _model(state.problem)
    x = _x(state.problem)
    with torch.no_grad():
        model.m_step(model.e_step(x))
        ll = float(model.log_likelihood(x).mean())
    if not np.isfinite(ll):
        raise FloatingPointError(f"EM log-likelihood became {ll} at iteration "
                                 f"{state.num_iterations + 1}; a component may have "
                                 "collapsed — increase reg_covar or use fewer components")
    decrease = state.log_likelihood - ll
    # Round-off in a float32 mean log-likelihood is ~1e-7 relative: the allowed decrease
    # is the larger of monotone_tol and 16 machine epsilons of the data's dtype.
    eps = torch.finfo(x.dtype).eps if x.is_floating_point() else 0.0
    allowed = max(config.monotone_tol, 16 * eps) * max(1.0, abs(ll))
    if config.check_monotone and decrease > allowed:
        raise RuntimeError(f"EM log-likelihood decreased from {state.log_likelihood:.10g} to "
                           f"{ll:.10g} at iteration {state.num_iterations + 1}: the E or M "
                           "step is not exact for this model")
    converged = abs(ll - state.log_likelihood) < config.tol
    new_state = state._replace(log_likelihood=ll, num_iterations=state.num_iterations + 1,
                               converged=converged, config=config)
    return new_state, StepInfo(-ll, {"log_likelihood": ll})


def _record(records: dict[str, Any], state: EMState, info: StepInfo, index: int) -> None:
    records["log_likelihood"].append(state.log_likelihood)


def _finish(problem: Problem, config: EMConfig, seed: int, state: EMState,
            records: dict[str, Any], base_info: dict[str, Any]) -> FitResult:
    lls = np.asarray([state.initial_log_likelihood, *records["log_likelihood"]])
    num_data = int(_x(problem).shape[0])
    info: dict[str, Any] = {
        **base_info, "num_iterations": state.num_iterations,
        "converged": state.converged, "mean_log_likelihood": float(lls[-1]),
        "log_likelihood": float(lls[-1]) * num_data,
    }
    history_dict = {"log_likelihood": lls, "loss": -lls}
    return FitResult("em", problem, config, seed, history_dict, info=info)


def state_dict(state: EMState) -> dict[str, Any]:
    module = state.problem.module
    return {"model_state": {k: v.detach().clone() for k, v in module.state_dict().items()},
            "log_likelihood": state.log_likelihood, "num_iterations": state.num_iterations,
            "converged": state.converged,
            "initial_log_likelihood": state.initial_log_likelihood}


def load_state_dict(state: EMState, saved: dict[str, Any]) -> EMState:
    state.problem.module.load_state_dict(saved["model_state"])
    return state._replace(log_likelihood=saved["log_likelihood"],
                          num_iterations=saved["num_iterations"],
                          converged=saved["converged"],
                          initial_log_likelihood=saved["initial_log_likelihood"])


def run(problem: Problem, config: EMConfig | None = None, seed: int = 0, *,
        initialize: bool = True, **loop: Any) -> FitResult:
    """Iterate until the mean log-likelihood improves by less than ``tol`` or ``max_iter``
    (``initialize=False`` starts from the model's current parameters)."""
    engine = ENGINE if initialize else dataclasses.replace(
        ENGINE, init=functools.partial(init, initialize=False))
    return engine.run(problem, config or EMConfig(), seed, **loop)


ENGINE = Engine(
    name="em", config_class=EMConfig, kind="point",
    description="expectation maximisation with exact E step (GMM, PPCA, FA)",
    init=init, step=step, total_steps=lambda config: config.max_iter,
    new_records=lambda config: {"log_likelihood": []}, record=_record, finish=_finish,
    done=lambda state: state.converged, state_dict=state_dict,
    load_state_dict=load_state_dict, label=lambda config: "EM",
    postfix=lambda info: {"log_likelihood": info.extras["log_likelihood"]})
