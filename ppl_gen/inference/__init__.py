"""Inference engines and the one-call ``fit``.

``ENGINES`` maps names to :class:`~ppl_gen.inference.base.Engine` triples
(``init``/``step``/``run``); ``fit`` binds a model to its data and calls ``run``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .._rng import preserved
from ..config import CONFIGS, config_from_dict
from ..data.base import Dataset
from ..models.base import GenerativeModel
from ..registry import Registry
from . import adversarial, chees, em, mcmc, pathfinder, svi
from .base import FitResult, Problem, StepInfo, make_problem, resolve_device
from .distributed import local_device, run_chains
from .loop import Engine, Interrupted, LoopOptions
from .predictive import DrawEvaluation, draw_from_guide, evaluate_draws

__all__ = ["ENGINES", "fit", "check_result", "check_engine", "UnsupportedEngineError",
           "make_problem", "Engine", "FitResult", "Problem", "StepInfo", "resolve_device",
           "evaluate_draws", "draw_from_guide", "DrawEvaluation", "Interrupted", "LoopOptions"]

ENGINES: Registry[Engine] = Registry("engine")
for _engine in (svi.ENGINE, em.ENGINE, mcmc.ENGINE_NUTS, mcmc.ENGINE_HMC, adversarial.ENGINE,
                chees.ENGINE, pathfinder.ENGINE):
    ENGINES.register(_engine.name, _engine.description)(_engine)


class UnsupportedEngineError(TypeError, ValueError):
    """The model does not support the engine (a ``TypeError`` — the model is the wrong
    kind for it — and a ``ValueError``, so that either ``except`` catches it)."""


def check_engine(model: Any, engine: str) -> None:
    """Refuse an engine the zoo model does not declare, naming the reason and the engines
    that do apply (user functions and undeclared subclasses pass)."""
    ENGINES[engine]  # unknown names: the registry's error with the valid list
    if not isinstance(model, GenerativeModel):
        return
    reason = model.engine_refusal(engine)
    if reason is not None:
        raise UnsupportedEngineError(
            f"model {type(model).__name__} does not support engine {engine!r}: {reason}. "
            f"Its engines are: {', '.join(model.engines or ())}")


def fit(model: GenerativeModel | Callable[..., Any],
        data: Dataset | Mapping[str, Any] | None = None, *, engine: str = "svi",
        guide: Callable[..., Any] | None = None, config: Any = None,
        device: str | torch.device = "auto", seed: int = 0,
        checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int | None = None,
        checkpoint_seconds: float | None = None, resume: str | os.PathLike[str] | None = None,
        callback: Callable[..., None] | None = None, _loop: dict[str, Any] | None = None,
        **options: Any) -> FitResult:
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
        checkpoint: A file to keep a resume checkpoint in (written atomically, every
            ``checkpoint_every`` steps or ``checkpoint_seconds`` seconds, and on Ctrl-C,
            which then raises :class:`~ppl_gen.inference.loop.Interrupted` after a whole
            step). Engines ``svi``, ``em``, ``chees`` and ``adversarial`` can checkpoint.
        resume: A checkpoint to continue from: the same model, data, engine, options and
            seed give the same result as an uninterrupted fit (bit for bit on CPU, with a
            fixed ``compile`` setting).
        callback: ``callback(index, state, info)`` after every step.

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
    with preserved():  # fit draws (prior traces, inits); the caller's RNG is put back
        return _fit(model, data, engine, guide, config, device, seed, checkpoint,
                    checkpoint_every, checkpoint_seconds, resume, callback, _loop, options)


def _fit(model: Any, data: Any, engine: str, guide: Any, config: Any, device: Any,
         seed: int, checkpoint: Any, checkpoint_every: Any, checkpoint_seconds: Any,
         resume: Any, callback: Any, _loop: Any, options: dict[str, Any]) -> FitResult:
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
        if engine in ("nuts", "hmc") and config.kernel != engine:
            raise ValueError(f"engine {engine!r} was given MCMCConfig(kernel="
                             f"{config.kernel!r}); pick one: engine={config.kernel!r}, or "
                             f"kernel={engine!r}")
    check_engine(model, engine)
    if guide is not None and engine != "svi":
        raise ValueError(f"a guide is only used by engine 'svi', not {engine!r}")
    loop = LoopOptions(checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                       checkpoint_seconds=checkpoint_seconds, resume=resume,
                       callback=callback, **(_loop or {}))
    if (checkpoint is not None or resume is not None) and not runner.resumable:
        raise ValueError(f"engine {engine!r} cannot checkpoint or resume: "
                         f"{runner.cannot_resume}")
    if getattr(config, "distributed", False):  # each rank on its own GPU under torchrun
        device = local_device(resolve_device(device))
    problem = make_problem(model, data, guide=guide, device=device)
    options = {f.name: getattr(loop, f.name) for f in dataclasses.fields(loop)}
    if getattr(config, "distributed", False) and runner.kind == "sampler":
        if (checkpoint is not None or resume is not None) and not runner.lockstep:
            raise ValueError(f"distributed {engine!r} cannot checkpoint or resume yet "
                             "(each process holds its own chains' state); drop "
                             "checkpoint=/resume=, run in one process, or use engine "
                             "'chees' (its batch's whole state is on every rank)")
        result = run_chains(runner, problem, config, seed, options)
    elif getattr(config, "num_runs", 1) > 1:
        if checkpoint is not None or resume is not None:
            raise ValueError("num_runs > 1 cannot checkpoint or resume (it runs several "
                             "fits); drop checkpoint=/resume=, or fit one run at a time")
        result = _parallel_runs(runner, problem, config, seed, options)
    else:
        result = runner.run(problem, config, seed, **options)
    return check_result(result, stacklevel=4)  # the warning points at the caller of fit


#: Guide draws per run for the R-hat across parallel optimisations (the least).
PARALLEL_RUN_DRAWS = 500
#: R-hat across the runs' guides above this warns (means ~0.14 guide sds apart).
PARALLEL_RHAT_LIMIT = 1.01


def _parallel_runs(runner: Any, problem: Any, config: Any, seed: int,
                   options: dict[str, Any]) -> FitResult:
    """``config.num_runs`` optimisations from consecutive seeds; the best final ELBO is
    returned with R-hat across the runs' guides in ``info["parallel_runs"]``."""
    import numpy as np

    from ..diagnostics.checks import rhat  # the one allowed upward import (a leaf)
    from .predictive import draw_from_guide

    module = problem.module
    if module is not None and any(p.requires_grad for p in module.parameters()):
        raise ValueError(f"num_runs > 1 compares the guides of independent runs, but "
                         f"{problem.name!r} has trainable parameters of its own (networks) "
                         "that each run would go on training; fit it with num_runs=1")
    single = dataclasses.replace(config, num_runs=1)
    runs = [runner.run(problem, single, seed + k, **options) for k in range(config.num_runs)]
    finals = []
    for run in runs:
        elbo = np.asarray(run.history["elbo"], dtype=float)
        finals.append(float(elbo[-max(1, len(elbo) // 10):].mean()))
    best = int(np.argmax(finals))
    num = max(PARALLEL_RUN_DRAWS, getattr(config, "psis_draws", 0))
    draws = [draw_from_guide(problem, run.guide, num, seed=seed + k,
                             param_state=run.param_state) for k, run in enumerate(runs)]
    rhats: dict[str, float] = {}
    for name in draws[0]:
        stacked = np.stack([d[name].detach().double().cpu().numpy().reshape(num, -1)
                            for d in draws])  # (runs, draws, elements)
        for j in range(stacked.shape[-1]):
            label = f"{name}[{j}]" if stacked.shape[-1] > 1 else name
            rhats[label] = rhat(stacked[..., j])
    worst = sorted((v, k) for k, v in rhats.items() if v > PARALLEL_RHAT_LIMIT)[::-1]
    messages = []
    if worst:
        names = ", ".join(k for _, k in worst[:4]) + (
            f" and {len(worst) - 4} more" if len(worst) > 4 else "")
        messages.append(
            f"the {config.num_runs} optimisations from different seeds disagree: R-hat "
            f"across their guides is above {PARALLEL_RHAT_LIMIT} for {names} (worst "
            f"{worst[0][0]:.3f}), so the ELBO has several optima or the runs had not "
            f"converged; the result is the run with the best ELBO (seed {seed + best}). "
            "Run more steps, or check the posterior with MCMC (engine='chees' or 'nuts')")
    report = {"num_runs": config.num_runs, "seeds": [seed + k for k in range(len(runs))],
              "final_elbo": finals, "best": best, "best_seed": seed + best,
              "max_rhat": max(rhats.values()) if rhats else None, "rhat": rhats,
              "draws_per_run": num, "messages": messages,
              "wall_time": [run.info.get("wall_time") for run in runs]}
    chosen = runs[best]
    return dataclasses.replace(chosen, config=config,
                               info={**chosen.info, "parallel_runs": report})


def check_result(result: FitResult, *, warn: bool = True, stacklevel: int = 2) -> FitResult:
    """Attach the reliability checks to a result and issue a :class:`ReliabilityWarning`
    when any fails. ``fit`` calls it on every result.

    * Pathfinder: PSIS k-hat of its pooled draws, failed or unfinished paths;
    * samplers: convergence diagnostics (``info["diagnostics"]``: R-hat, ESS, nested R-hat,
      divergences, E-BFMI);
    * SVI: the convergence check (``info["convergence"]``) and, for guides of a continuous
      latent space, PSIS k-hat with PSIS-corrected summaries (``info["psis"]``;
      ``SVIConfig.psis_draws`` draws, 0 to switch off);
    * other results pass through unchanged.
    """
    from ..diagnostics.checks import ReliabilityWarning

    if result.kind == "approximation":
        from ..diagnostics.vi import pathfinder_report

        report, messages = pathfinder_report(result)
        info = {**result.info, "psis": report}
        what = "may be unreliable"
    elif result.samples is not None:
        from ..diagnostics.checks import check_draws

        diagnostics, messages = check_draws(result.samples, result.sample_stats,
                                            engine=result.engine)
        info = {**result.info, "diagnostics": diagnostics}
        what = "may be unreliable"
    elif result.engine == "svi":
        from ..diagnostics.vi import vi_report

        draws = getattr(result.config, "psis_draws", 0)
        report, messages = vi_report(result, num_samples=draws, seed=result.seed)
        messages = list(messages) + list(
            (result.info.get("parallel_runs") or {}).get("messages", []))
        info = {**result.info, "psis": report}
        what = "may be unreliable"
    else:
        return result
    result = dataclasses.replace(result, info=info, warnings=tuple(messages))
    if warn and messages:
        warnings.warn(f"{result.engine} on {result.problem.name!r} {what}:\n  - "
                      + "\n  - ".join(messages), ReliabilityWarning, stacklevel=stacklevel)
    return result
