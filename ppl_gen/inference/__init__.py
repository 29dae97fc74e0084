"""Inference engines and the one-call ``fit``.

``ENGINES`` maps names to :class:`~ppl_gen.inference.base.Engine` triples
(``init``/``step``/``run``); ``fit`` binds a model to its data and calls ``run``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..config import CONFIGS, config_from_dict
from ..data.base import Dataset
from ..models.base import GenerativeModel
from ..registry import Registry
from . import adversarial, chees, em, mcmc, svi
from .base import Engine, FitResult, Problem, StepInfo, make_problem, resolve_device
from .predictive import DrawEvaluation, draw_from_guide, evaluate_draws

__all__ = ["ENGINES", "fit", "check_result", "make_problem", "Engine", "FitResult", "Problem",
           "StepInfo",
           "resolve_device", "evaluate_draws", "draw_from_guide", "DrawEvaluation"]

ENGINES: Registry[Engine] = Registry("engine")
ENGINES.register("svi", svi.ENGINE.description)(svi.ENGINE)
ENGINES.register("em", em.ENGINE.description)(em.ENGINE)
ENGINES.register("nuts", mcmc.ENGINE_NUTS.description)(mcmc.ENGINE_NUTS)
ENGINES.register("hmc", mcmc.ENGINE_HMC.description)(mcmc.ENGINE_HMC)
ENGINES.register("adversarial", adversarial.ENGINE.description)(adversarial.ENGINE)
ENGINES.register("chees", chees.ENGINE.description)(chees.ENGINE)


def fit(model: GenerativeModel | Callable[..., Any],
        data: Dataset | Mapping[str, Any] | None = None, *, engine: str = "svi",
        guide: Callable[..., Any] | None = None, config: Any = None,
        device: str | torch.device = "auto", seed: int = 0, **options: Any) -> FitResult:
    """Fit a zoo model or a plain Pyro model function to data.

    Arguments:
        model: A :class:`~ppl_gen.models.GenerativeModel` or any Pyro model function whose
            keyword arguments are the data (``def model(x, y=None): ...``).
        data: A :class:`~ppl_gen.data.Dataset` or a dict of the model's keyword arguments.
        engine: One of ``ENGINES``: ``"svi"``, ``"em"``, ``"nuts"``, ``"hmc"``,
            ``"adversarial"``.
        guide: Your own guide function for SVI, or an autoguide name (``"normal"``,
            ``"mvn"``, ``"lowrank"``, ``"delta"``); default: the model's guide or AutoNormal.
        config: An engine config (``SVIConfig``, ``EMConfig``, ``MCMCConfig``,
            ``AdversarialConfig``); or give its
            fields as keyword ``options`` instead.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
        seed: Seeds Pyro and torch; the same seed gives the same result.

    Returns:
        An immutable :class:`FitResult`.

    Example:
        >>> import ppl_gen
        >>> data = ppl_gen.load_dataset("eight_schools")
        >>> model = ppl_gen.MODELS["eight_schools"].from_dataset(data)
        >>> result = ppl_gen.fit(model, data, engine="nuts", num_warmup=50, num_samples=50,
        ...                      num_chains=1, device="cpu")
        >>> tuple(result.samples["mu"].shape)
        (1, 50)
    """
    runner = ENGINES[engine]
    if isinstance(guide, str):  # fit(..., guide="mvn") names an autoguide: a config option
        options["guide"], guide = guide, None
    if config is None:
        config = config_from_dict(engine, options)
    else:
        if options:
            raise ValueError("pass engine options either as config=... or as keyword "
                             f"arguments, not both (got {', '.join(options)})")
        expected = CONFIGS[engine]
        if not isinstance(config, expected):
            raise TypeError(f"engine {engine!r} takes a {expected.__name__}, got "
                            f"{type(config).__name__}")
    if guide is not None and engine != "svi":
        raise ValueError(f"a guide is only used by engine 'svi', not {engine!r}")
    problem = make_problem(model, data, guide=guide, device=device)
    return check_result(runner.run(problem, config, seed))


def check_result(result: FitResult, *, warn: bool = True) -> FitResult:
    """Attach the convergence diagnostics of a sampler's result (``info["diagnostics"]``,
    ``warnings``) and issue a :class:`ReliabilityWarning` when any check fails; other
    results pass through unchanged. ``fit`` calls it on every result."""
    if result.samples is None:
        return result
    from ..diagnostics.checks import ReliabilityWarning, check_draws

    diagnostics, messages = check_draws(result.samples, result.sample_stats,
                                        engine=result.engine)
    result = dataclasses.replace(result, info={**result.info, "diagnostics": diagnostics},
                                 warnings=tuple(messages))
    if warn and messages:
        warnings.warn(f"{result.engine} on {result.problem.name!r} may be unreliable:\n  - "
                      + "\n  - ".join(messages), ReliabilityWarning, stacklevel=3)
    return result
