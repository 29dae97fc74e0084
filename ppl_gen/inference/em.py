"""The EM engine for models with an exact E step.

A model qualifies when it implements ``initialize(x, init=, seed=)``, ``e_step(x) -> stats``,
``m_step(stats)`` and ``log_likelihood(x) -> (N,)``. The E step sets q(z) to the exact
posterior, closing the variational gap; the M step maximises the ELBO in theta in closed
form, so the log-likelihood never decreases — which the engine checks.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..config import EMConfig
from .base import Engine, FitResult, Problem, StepInfo, num_threads
from .progress import progress_bar

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
    """

    problem: Problem
    log_likelihood: float
    num_iterations: int
    converged: bool


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
    return EMState(problem, ll, 0, False)


def step(state: EMState, config: EMConfig | None = None) -> tuple[EMState, StepInfo]:
    """One E step and one M step; checks that the log-likelihood did not decrease."""
    config = config or EMConfig()
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
    if config.check_monotone and decrease > config.monotone_tol * max(1.0, abs(ll)):
        raise RuntimeError(f"EM log-likelihood decreased from {state.log_likelihood:.10g} to "
                           f"{ll:.10g} at iteration {state.num_iterations + 1}: the E or M "
                           "step is not exact for this model")
    converged = abs(ll - state.log_likelihood) < config.tol
    new_state = EMState(state.problem, ll, state.num_iterations + 1, converged)
    return new_state, StepInfo(-ll, {"log_likelihood": ll})


def run(problem: Problem, config: EMConfig | None = None, seed: int = 0, *,
        initialize: bool = True) -> FitResult:
    """Iterate until the mean log-likelihood improves by less than ``tol`` or ``max_iter``."""
    config = config or EMConfig()
    start = time.perf_counter()
    with num_threads(config.num_threads):
        state = init(problem, config, seed, initialize=initialize)
        history = [state.log_likelihood]
        bar = progress_bar(config.max_iter, "EM", enabled=config.progress_bar)
        while state.num_iterations < config.max_iter and not state.converged:
            state, info = step(state, config)
            history.append(state.log_likelihood)
            bar.update(log_likelihood=state.log_likelihood)
        bar.close()
    lls = np.asarray(history)
    num_data = int(_x(problem).shape[0])
    info: dict[str, Any] = {
        "wall_time": time.perf_counter() - start, "num_iterations": state.num_iterations,
        "converged": state.converged, "mean_log_likelihood": float(lls[-1]),
        "log_likelihood": float(lls[-1]) * num_data,
    }
    history_dict = {"log_likelihood": lls, "loss": -lls}
    return FitResult("em", problem, config, seed, history_dict, info=info)


ENGINE = Engine(init, step, run, "expectation maximisation with exact E step (GMM, PPCA, FA)")
