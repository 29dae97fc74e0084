"""The SVI engine: every gradient-trained model goes through it.

Wraps ``pyro.infer.SVI`` with the ELBO variants (Trace, TraceMeanField, TraceEnum, Rényi /
IWAE), autoguides or the model's own guide, minibatching through ``pyro.plate``
subsampling, a progress bar and a NaN guard.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pyro
import pyro.infer.autoguide as autoguide
import pyro.optim
import pyro.poutine as poutine
import torch
from pyro.infer import SVI
from pyro.optim.clipped_adam import ClippedAdam
from pyro.poutine.util import site_is_subsample

from .._rng import preserved
from ..config import SVIConfig
from ..models.base import GenerativeModel
from ..traces.sites import element_label as _label
from .base import (
    FitResult,
    Problem,
    StepInfo,
    enumerated_sites,
    improper_start,
    latent_sites,
    max_plate_nesting,
    param_scope,
)
from .compiled import CompiledFunction, CompileError, compile_function
from .distributed import (
    Shard,
    ShardSchedule,
    broadcast_parameters,
    join,
    reduce_gradients,
    step_seed,
)
from .fast_params import collected_params
from .loop import Engine
from .objectives import OBJECTIVES

__all__ = ["SVIState", "init", "step", "run", "build_guide", "build_loss", "ENGINE"]


class _SVI(SVI):
    """``pyro.infer.SVI`` with one torch optimiser over every parameter, and a fast path for
    zoo models.

    Pyro's ``SVI.step`` traces the loss for ``param`` sites on every step and keeps one
    optimiser per parameter tensor. Here the parameters are gathered from the trace of the
    first step (and again on later steps for user functions, whose ``pyro.param`` calls may
    create parameters late) and stepped by a single ``torch.optim`` optimiser — the same
    arithmetic, elementwise Adam, with one call instead of one per tensor.

    For a :class:`~ppl_gen.models.GenerativeModel` (with its own guide, an autoguide or
    none) every parameter exists after the first step, so afterwards the model runs under
    :func:`~.fast_params.collected_params` (no per-access ``param`` messages, no context
    swap: the model's class is not involved) with
    validation off. On a tiny VAE, where a step is all overhead, this took Pyro's 1.64 ms
    per step to 1.13 ms; docs/benchmarks.md has the full-size figures.

    With ``compile`` (the config's ``compile``; by default ``"auto"``, the traced graph)
    the fast path goes one
    step further: on the second step the whole loss-and-gradient computation — model,
    guide, Pyro's handlers, the ELBO and its backward — is traced once into ATen ops
    (:mod:`ppl_gen.inference.compiled`) and later steps replay that graph (or its
    Inductor compilation), drawing the same random numbers as the eager step would. The
    trace freezes Python: shapes, the minibatch size and attributes such as ``beta`` are
    read once, so change them only between fits.

    Also accepts plain ``nn.Parameter`` param sites: under ``module_local_params`` Pyro's
    ``SVI.step`` would call ``value.unconstrained()`` on them, which they do not have.
    """

    def __init__(self, model: Callable[..., Any], guide: Callable[..., Any],
                 make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
                 loss: pyro.infer.ELBO, module: torch.nn.Module | None = None,
                 compile: bool | str = False) -> None:
        super().__init__(model, guide, pyro.optim.Adam({}), loss=loss)
        self.make_optimizer = make_optimizer
        self.optimizer: torch.optim.Optimizer | None = None
        self.params: list[torch.Tensor] = []
        self._seen: set[int] = set()
        self.compile = compile
        self.compiled: CompiledFunction | None = None
        self._compiled_key: tuple | None = None
        self._traces = 0
        #: Distributed SVI: ``(params, loss) -> loss`` averaging gradients and loss over
        #: the ranks before each optimiser step (see ``inference.distributed``).
        self.reduce: Callable[[list[torch.Tensor], float], float] | None = None
        #: Why the step is not traced although ``compile`` asks for it.
        self.compile_refusal: str | None = None
        # Only a zoo model guarantees that no parameter appears after the first step.
        self.module = module if _is_generative_model(module) else None
        if self.module is not None:  # the module may have changed since a previous fit
            self.module.__dict__.pop("_collection_plan", None)

    def _collect(self, *args: Any, **kwargs: Any) -> Any:
        with poutine.trace(param_only=True) as capture:
            loss = self.loss_and_grads(self.model, self.guide, *args, **kwargs)
        new = []
        for site in capture.trace.nodes.values():
            value = site["value"]
            param = value.unconstrained() if hasattr(value, "unconstrained") else value
            if id(param) not in self._seen:
                self._seen.add(id(param))
                new.append(param)
        if new:
            self.params.extend(new)
            if self.optimizer is None:
                self.optimizer = self.make_optimizer(new)
            else:  # parameters created late (lazy pyro.param) join at the current lr
                self.optimizer.add_param_group({**self.optimizer.param_groups[0],
                                                "params": new})
        return loss

    def _traced_step(self, args: tuple, kwargs: dict) -> CompiledFunction:
        """The loss-and-gradients function traced for these arguments (once per
        arguments; their tensors are identified by object)."""
        key = (tuple(id(a) for a in args),
               tuple((k, id(v) if torch.is_tensor(v) else v) for k, v in sorted(kwargs.items())))
        if self.compiled is not None and key == self._compiled_key:
            return self.compiled
        self._traces += 1
        if self._traces > 3:  # new data objects every step: tracing would cost, not save
            self.compiled = CompiledFunction(self.compiled.fn if self.compiled else None,
                                             "eager", "the step's data changed on every "
                                             "step; traced 3 times, then ran eagerly", 0.0)
            self._compiled_key = key
            return self.compiled
        elbo = getattr(self.loss_and_grads, "__self__", None)
        params, module = list(self.params), self.module
        assert module is not None

        def loss_and_grads() -> tuple[torch.Tensor, ...]:
            with torch.enable_grad(), collected_params(module), \
                    pyro.validation_enabled(False):
                loss = elbo.lean_loss(self.model, self.guide, *args, **kwargs)
                if loss is None:
                    raise TypeError("this loss has no single-particle reparameterised path "
                                    "to trace (use loss='trace' or 'meanfield', one "
                                    "particle, reparameterised guide sites)")
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            return (loss.detach(), *(torch.zeros_like(p) if g is None else g.detach()
                                     for p, g in zip(params, grads)))

        reason = None
        if not hasattr(elbo, "lean_loss"):
            reason = (f"loss {type(elbo).__name__} cannot be traced; use loss='trace' or "
                      "'meanfield'")
        elif elbo.num_particles != 1:
            reason = (f"{elbo.num_particles} particles cannot be traced (Pyro's multi-"
                      "particle path); use num_particles=1")
        if reason is not None:
            if self.compile in ("fx", "inductor"):
                raise CompileError(reason + ", or compile=False")
            self.compiled = CompiledFunction(loss_and_grads, "eager", reason, 0.0)
        else:
            # SVI's "auto": the traced graph (bit-identical steps, no compile wait), falling
            # back to eager; "fx"/"inductor" insist.
            auto = self.compile in ("auto", True)
            self.compiled = compile_function(loss_and_grads, (),
                                             backend="fx" if auto else self.compile,
                                             name="the SVI step", random=True,
                                             fallback=auto)
        self._compiled_key = key
        return self.compiled

    def step(self, *args: Any, **kwargs: Any) -> float:
        if (self.compile and self.reduce is None and self.module is not None
                and self.optimizer is not None
                and self._traced_step(args, kwargs).backend != "eager"):
            with torch.no_grad():
                loss, *grads = self.compiled()  # type: ignore[misc]
            for param, grad in zip(self.params, grads):
                param.grad = grad
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            return float(loss)
        if self.module is not None and self.optimizer is not None:
            # After a first, validated step has checked the model/guide pair, argument
            # validation only re-checks distribution parameters; a NaN still surfaces as a
            # non-finite loss (see ``step``).
            with collected_params(self.module), pyro.validation_enabled(False):
                loss = self.loss_and_grads(self.model, self.guide, *args, **kwargs)
        else:
            loss = self._collect(*args, **kwargs)
        value = float(loss) if isinstance(loss, (int, float)) else float(loss.item())
        if self.reduce is not None:
            value = self.reduce(self.params, value)
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return value


def _is_generative_model(module: object) -> bool:
    return isinstance(module, GenerativeModel)


class SVIState(NamedTuple):
    """State between SVI steps.

    Attributes:
        svi: The ``pyro.infer.SVI`` object (its optimiser holds Adam's moments).
        guide: The guide being fitted.
        problem: The model bound to its data.
        param_state: The fit's private param store (shared, updated in place by Pyro).
        step_kwargs: Extra keyword arguments for each step (``subsample_size``).
        num_steps: Steps taken so far.
        config: The config the fit runs under.
        shards: Distributed SVI: which rows this rank reads at each step (``None``: one
            process, Pyro's own subsampling).
        flags: ``{"stop_at": step}`` once ``stop_early``'s rule has fired (the loop then
            stops).
    """

    svi: SVI
    guide: Callable[..., Any]
    problem: Problem
    param_state: dict
    step_kwargs: dict[str, Any]
    num_steps: int
    config: SVIConfig | None = None
    shards: ShardSchedule | None = None
    flags: dict[str, Any] | None = None


def _empty_guide(*args: Any, **kwargs: Any) -> None:
    """Guide of a model with no latent sites: the ELBO is then the exact log-likelihood."""


_AUTOGUIDES = {
    "normal": autoguide.AutoNormal,
    "mvn": autoguide.AutoMultivariateNormal,
    "lowrank": autoguide.AutoLowRankMultivariateNormal,
    "delta": autoguide.AutoDelta,
}


def build_guide(problem: Problem, config: SVIConfig, seed: int = 0) -> Callable[..., Any]:
    """The guide named by ``config.guide`` (see :class:`~ppl_gen.config.SVIConfig`); an
    autoguide with ``config.init="pathfinder"`` starts at Pathfinder's Gaussian (how it
    started: ``guide_start(guide)``)."""
    trace = problem.structure
    latents = latent_sites(trace)
    kind = config.guide
    if kind == "model":
        if problem.guide is None:
            raise ValueError(f"guide='model' but model {problem.name!r} has no guide of its "
                             "own; pass guide=... or use an autoguide (normal, mvn, lowrank, "
                             "delta)")
        return problem.guide
    if kind == "auto":
        if problem.guide is not None:
            return problem.guide
        if not latents:
            return _empty_guide
        kind = "normal"
    if not latents:
        raise ValueError(f"guide={config.guide!r} needs latent sites, but model "
                         f"{problem.name!r} has none (all its sites are observed or "
                         "enumerated); use guide='auto'")
    hidden = enumerated_sites(trace)
    target = poutine.block(problem.model, hide=hidden) if hidden else problem.model
    cls = _AUTOGUIDES[kind]
    start, how = None, {"init": "median"}
    if config.init == "pathfinder" and kind in ("normal", "mvn", "lowrank"):
        if config.batch_size not in (None, "auto"):
            how = {"init": "median", "pathfinder_skipped": (
                f"a minibatched fit (batch_size={config.batch_size}): Pathfinder would "
                "evaluate the whole data at every iterate")}
        else:
            with preserved():  # the fit's own random stream is the same with either start
                start, how = _pathfinder_start(problem, hidden, seed)
    kwargs: dict[str, Any] = {"init_loc_fn": _init_loc if start is None
                              else _start_loc(start["constrained"])}
    if kind in ("normal", "mvn", "lowrank"):
        kwargs["init_scale"] = config.init_scale
    if kind == "lowrank":
        kwargs["rank"] = config.guide_rank
    guide = cls(target, **kwargs)
    if problem.module is not None:
        guide.to(problem.device)
    if start is not None:
        _set_start_scales(problem, guide, kind, start)
    guide.__dict__["_ppl_gen_start"] = how
    return guide


def guide_start(guide: Any) -> dict[str, Any] | None:
    """How ``build_guide`` started an autoguide (``info["init"]``), or ``None``."""
    return getattr(guide, "__dict__", {}).get("_ppl_gen_start")


#: Autoguides start at Pathfinder's Gaussian only up to this many unconstrained
#: dimensions (the covariance is dense).
MAX_START_DIM = 1000


def _pathfinder_start(problem: Problem, hidden: list[str], seed: int
                      ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Pathfinder's best Gaussian (mean and covariance, unconstrained), its constrained
    sites and the potential's layout — or ``None`` and why the guide starts at the prior
    median."""
    import time

    from .batched import BatchedPotential
    from .pathfinder import gaussian_start

    def fallback(reason: str) -> tuple[None, dict[str, Any]]:
        return None, {"init": "median", "pathfinder_skipped": reason}

    if problem.module is not None and problem.module.has_local_guide:
        return fallback("the model has local latents (a code per datum)")
    if hidden:
        return fallback("the model has enumerated discrete sites")
    started = time.perf_counter()
    try:
        potential = BatchedPotential(problem)
        if potential.dim > MAX_START_DIM:
            return fallback(f"{potential.dim} unconstrained dimensions (more than "
                            f"{MAX_START_DIM})")
        generator = torch.Generator(device=problem.device).manual_seed(seed)
        with pyro.validation_enabled(False), torch.no_grad():
            potential.check_vectorized(potential.initial(3, generator))
            mean, cov, found = gaussian_start(potential, generator)
            constrained = {k: v[0] for k, v in potential.constrain(mean[None]).items()}
    except (ValueError, RuntimeError, FloatingPointError, NotImplementedError) as error:
        return fallback(str(error).split("\n")[0])
    if not (torch.isfinite(mean).all() and torch.isfinite(cov).all()):
        return fallback("Pathfinder's draws were not finite")
    layout, offset = {}, 0
    for name, _, shape, _, _ in potential.sites:
        layout[name] = (offset, shape)
        offset += shape.numel()
    return ({"mean": mean, "cov": cov, "constrained": constrained, "layout": layout},
            {"init": "pathfinder", "seconds": time.perf_counter() - started, **found})


def _start_loc(constrained: dict[str, torch.Tensor]) -> Callable[[dict], torch.Tensor]:
    def init_loc(site: dict) -> torch.Tensor:
        value = constrained.get(site["name"])
        if value is None:
            return _init_loc(site)
        return value.reshape(site["fn"].shape())
    return init_loc


def _assign(module: Any, dotted: str, value: torch.Tensor, constraint: Any) -> None:
    """Set a PyroParam in place (its unconstrained tensor, shared with Pyro's param
    store once the guide has run), so the store and the module keep one value."""
    *path, last = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    unconstrained = getattr(module, last + "_unconstrained")
    unconstrained.data.copy_(torch.distributions.transform_to(constraint).inv(
        value.to(unconstrained)).reshape(unconstrained.shape))


def _set_start_scales(problem: Problem, guide: Any, kind: str, start: dict[str, Any]
                      ) -> None:
    """Give a freshly built autoguide Pathfinder's scales: the covariance's Cholesky factor
    (mvn), its marginal sds (normal; lowrank's diagonal part)."""
    with poutine.block(), torch.no_grad():
        guide(**problem.data)  # creates the parameters (at the start's locations)
    mean, cov, layout = start["mean"], start["cov"], start["layout"]
    names = [n for n, _ in guide.prototype_trace.iter_stochastic_nodes()]
    if any(n not in layout for n in names):
        return  # the guide covers sites the potential does not: keep its own scales
    index = torch.cat([torch.arange(layout[n][0], layout[n][0] + layout[n][1].numel())
                       for n in names]).to(mean.device)
    sub = cov[index][:, index].double()
    sd = sub.diagonal().clamp_min(1e-24).sqrt()
    with torch.no_grad():
        if kind == "normal":
            offset = 0
            for name in names:
                size = layout[name][1].numel()
                _assign(guide.scales, name, sd[offset:offset + size], guide.scale_constraint)
                offset += size
            return
        guide.loc.data.copy_(mean[index].to(guide.loc))
        if kind == "lowrank":
            _assign(guide, "scale", sd, guide.scale_constraint)
            return
        jitter = 1e-10 * float(sub.diagonal().mean())
        factor, failed = torch.linalg.cholesky_ex(
            sub + jitter * torch.eye(len(sub), dtype=sub.dtype, device=sub.device))
        if int(failed) != 0:  # not positive definite: the marginal sds alone
            factor = torch.diag(sd)
        diagonal = factor.diagonal()
        _assign(guide, "scale", diagonal, guide.scale_constraint)
        _assign(guide, "scale_tril", factor / diagonal[:, None], guide.scale_tril_constraint)


#: Autoguides start at the prior median (15 prior draws); flat improper priors at the
#: image of 0 in unconstrained space.
_init_loc = improper_start(autoguide.init_to_median(num_samples=15))


def build_loss(problem: Problem, config: SVIConfig) -> pyro.infer.ELBO:
    """The ELBO named by ``config.loss``; ``"auto"`` sums out enumerated sites if any."""
    trace = problem.structure
    nesting = max_plate_nesting(trace)
    enumerated = enumerated_sites(trace)
    loss = config.loss
    own = getattr(problem.module, "default_loss", None)
    if loss == "auto":
        loss = own or ("enum" if enumerated else "trace")
    if loss.startswith("ddpm_") and not (problem.module is not None
                                         and hasattr(problem.module, "q_sample")):
        raise ValueError(f"loss={loss!r} is a diffusion objective; it needs a DDPM model, "
                         f"not {problem.name!r}")
    if enumerated and loss != "enum":
        raise ValueError(f"model {problem.name!r} has discrete sites marked for enumeration "
                         f"({', '.join(enumerated)}); use loss='enum' (or 'auto')")
    common = {"num_particles": config.num_particles, "max_plate_nesting": nesting,
              "vectorize_particles": config.vectorize_particles}
    return OBJECTIVES[loss](config, **common)


def learning_rate_schedule(config: SVIConfig) -> tuple[float, float]:
    """``(decay_start, final_learning_rate)`` of the run (see ``SVIConfig``)."""
    final = config.final_learning_rate
    start = config.decay_start
    if start is None:
        start = 0.0 if final is not None else 0.5
    if final is None:
        final = config.learning_rate / 10
    return start, final


def learning_rate_at(config: SVIConfig, step: int) -> float:
    """The step size of step ``step`` (0-based): constant until ``decay_start`` of the run,
    then geometric down to ``final_learning_rate`` at the last step."""
    start, final = learning_rate_schedule(config)
    first = int(round(start * config.num_steps))
    if step < first or final == config.learning_rate or first >= config.num_steps:
        return config.learning_rate
    fraction = (step - first) / max(config.num_steps - first, 1)
    return config.learning_rate * (final / config.learning_rate) ** fraction


def _optimizer(config: SVIConfig) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    """A factory for the torch optimiser: Adam, or Pyro's ClippedAdam (itself a
    ``torch.optim.Optimizer``) when clipping or a whole-run decay (an explicit
    ``final_learning_rate`` with no ``decay_start``: ClippedAdam's ``lrd``) is asked for.
    Other schedules set the step size before each step (``learning_rate_at``)."""
    decay = 1.0
    if _whole_run_decay(config):
        decay = (config.final_learning_rate / config.learning_rate) ** (1.0 / config.num_steps)
    if config.optimizer == "clipped_adam" or decay != 1.0:
        # Without the adam option, clip_norm is set so large that it never binds.
        clip = config.clip_norm if config.optimizer == "clipped_adam" else 1e12
        return functools.partial(ClippedAdam, lr=config.learning_rate, clip_norm=clip,
                                 lrd=decay)
    return functools.partial(_adam, lr=config.learning_rate)


def _whole_run_decay(config: SVIConfig) -> bool:
    """An explicit final step size with no ``decay_start``: the decay ClippedAdam's ``lrd``
    applies from the first step (the behaviour before ``decay_start`` existed)."""
    return config.final_learning_rate is not None and config.decay_start is None


def _adam(params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """torch's Adam, fused into one kernel per step where the build supports it: the same
    update, ~1 ms less per step than the per-tensor loop on a 640k-parameter VAE (CPU)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # device/dtype without a fused kernel
        return torch.optim.Adam(params, lr=lr)


def check_guide_sites(problem: Problem, guide: Callable[..., Any]) -> None:
    """A user's guide with sample sites the model lacks (a typo, a renamed latent) makes
    Pyro warn once per step and optimise a meaningless bound: refuse it up front. The guide
    runs once in a throwaway param store with the random state put back, so the fit is
    exactly what it would have been."""
    model_sites = {n for n, s in problem.structure.nodes.items() if s["type"] == "sample"}
    rng = pyro.util.get_rng_state()
    try:
        with param_scope(None), poutine.block(), torch.no_grad():
            guide_trace = poutine.trace(guide).get_trace(**problem.data)
    except Exception:  # noqa: BLE001 - a guide that fails here fails the same way in step 1
        return
    finally:
        pyro.util.set_rng_state(rng)
    extra = sorted(n for n, s in guide_trace.nodes.items() if s["type"] == "sample"
                   and not s["is_observed"] and type(s["fn"]).__name__ != "_Subsample"
                   and n not in model_sites)
    if extra:
        latents = latent_sites(problem.structure)
        raise ValueError(f"the guide has sample site(s) {', '.join(extra)} that model "
                         f"{problem.name!r} lacks; a guide must sample the model's latent "
                         f"sites ({', '.join(latents) or 'none'}) under the same names")


def init(problem: Problem, config: SVIConfig | None = None, seed: int = 0) -> SVIState:
    """Build guide, loss and optimiser in a fresh private param store."""
    config = config or SVIConfig()
    pyro.set_rng_seed(seed)
    with param_scope(None) as state:
        guide = build_guide(problem, config, seed)
        loss = build_loss(problem, config)
        # The fast path needs every parameter to exist after the first step: true for a
        # zoo model with its own guide, an autoguide or no guide — not for a user's guide
        # function, whose pyro.param calls may create parameters late.
        module = problem.module
        known_guide = (guide is _empty_guide or isinstance(guide, autoguide.AutoGuide)
                       or (module is not None and guide == getattr(module, "guide", None)))
        if not known_guide:
            check_guide_sites(problem, guide)
        svi = _SVI(problem.model, guide, _optimizer(config), loss,
                   module if known_guide else None,
                   compile=False if config.compile in (False, "eager") else config.compile)
        step_kwargs: dict[str, Any] = {}
        batch_size = config.batch_size
        if batch_size == "auto":
            preferred = getattr(problem.module, "default_batch_size", None)
            num_data = _num_data(problem)
            batch_size = preferred if preferred and num_data and num_data > preferred else None
        if batch_size is not None:
            if "subsample_size" not in _parameters(problem.model):
                raise ValueError(
                    f"batch_size was set but model {problem.name!r} takes no subsample_size "
                    "argument; give it one and pass it to pyro.plate('data', N, "
                    "subsample_size=subsample_size), or leave batch_size=None")
            num_data = _num_data(problem)
            if num_data is not None and batch_size > num_data:
                raise ValueError(f"batch_size={batch_size} is larger than the data "
                                 f"({num_data} rows); use batch_size <= {num_data}, or "
                                 "batch_size=None for the full data every step")
            step_kwargs["subsample_size"] = batch_size
        shards = None
        if config.distributed:
            shards = _distribute(problem, config, svi, step_kwargs, batch_size, seed)
    if config.stop_early and config.log_every != 1:
        raise ValueError("stop_early=True judges the ELBO from every step's loss; use "
                         "log_every=1 (the default) or stop_early=False")
    return SVIState(svi, guide, problem, state, step_kwargs, 0, config, shards, {})


def _distribute(problem: Problem, config: SVIConfig, svi: _SVI, step_kwargs: dict[str, Any],
                batch_size: int | None, seed: int) -> ShardSchedule:
    """Set up data-parallel SVI for this rank (see :mod:`ppl_gen.inference.distributed`):
    the shard schedule, the per-rank subsample size, every parameter created and taken
    from rank 0, gradient averaging before each optimiser step."""
    if config.compile in ("fx", "inductor"):
        raise ValueError(f"compile={config.compile!r} cannot be used with distributed=True: "
                         "the traced step would freeze one shard's indices; use "
                         "compile='auto' (the eager step then runs) or compile=False")
    plate = problem.structure.nodes.get("data")
    if (plate is None or not site_is_subsample(plate)
            or "subsample_size" not in _parameters(problem.model)):
        raise ValueError(
            f"distributed=True shards the data plate, but model {problem.name!r} has no "
            "pyro.plate('data', N, subsample_size=subsample_size) with a subsample_size "
            "argument; name the data plate 'data', give the model (and guide) a "
            "subsample_size argument passed to it, or fit in one process")
    group = join(problem.device, config.distributed_timeout)
    num_data = int(plate["fn"].size)
    global_batch = num_data if batch_size is None else int(batch_size)
    if global_batch % group.world_size:
        fixes = global_batch - global_batch % group.world_size
        raise ValueError(f"the global batch ({global_batch} rows"
                         f"{'' if batch_size else ', the full data'}) does not split evenly "
                         f"over {group.world_size} processes; use batch_size="
                         f"{max(fixes, group.world_size)} (a multiple of the process count)")
    shards = ShardSchedule(num_data, global_batch, group.rank, group.world_size, seed,
                           problem.device)
    step_kwargs["subsample_size"] = shards.local_batch
    svi.compile_refusal = ("distributed SVI runs the eager step: the traced graph would "
                           "freeze one shard's indices")
    # Every parameter exists after one loss evaluation (the random state put back, so
    # the fit's stream is untouched); then every rank takes rank 0's values.
    rng = pyro.util.get_rng_state()
    try:
        with Shard(shards.indices(0)):
            svi._collect(**problem.data, **step_kwargs)
    finally:
        pyro.util.set_rng_state(rng)
    if svi.optimizer is not None:
        svi.optimizer.zero_grad(set_to_none=True)
    broadcast_parameters(svi.params)
    svi.reduce = functools.partial(reduce_gradients, world_size=group.world_size)
    return shards


def _num_data(problem: Problem) -> int | None:
    """Rows of the observed data (the size of the ``data`` plate), if known."""
    plate = problem.structure.nodes.get("data")
    return int(plate["fn"].size) if plate is not None else None


def _parameters(fn: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def step(state: SVIState) -> tuple[SVIState, StepInfo]:
    """One optimiser step on the (minibatch) ELBO; raises on a non-finite loss."""
    config = state.config
    optimizer = state.svi.optimizer
    if optimizer is not None and not _whole_run_decay(config):
        rate = learning_rate_at(config, state.num_steps)
        for group in optimizer.param_groups:
            group["lr"] = rate
    shard = contextlib.nullcontext()
    if state.shards is not None:  # this rank's rows, and its own random numbers
        torch.manual_seed(step_seed(state.shards.seed, state.shards.rank, state.num_steps))
        shard = Shard(state.shards.indices(state.num_steps))
    try:
        with param_scope(state.param_state), shard:
            loss = state.svi.step(**state.problem.data, **state.step_kwargs)
    except ValueError as error:
        # With validation on, Pyro reports a NaN parameter as an invalid distribution
        # argument before the loss itself is NaN.
        if "invalid values" in str(error) and "nan" in str(error).lower():
            raise FloatingPointError(_nan_message("nan", state)) from error
        raise
    if not np.isfinite(loss):
        raise FloatingPointError(_nan_message(loss, state))
    new_state = state._replace(num_steps=state.num_steps + 1)
    return new_state, StepInfo(loss, {"elbo": -loss})


def _nan_message(loss: object, state: SVIState) -> str:
    return (f"SVI loss became {loss} at step {state.num_steps + 1} for model "
            f"{state.problem.name!r}; lower learning_rate, use optimizer='clipped_adam', or "
            "check the data scale")


def evaluate_loss(state: SVIState) -> float:
    """The current loss on the full data without taking a step."""
    with param_scope(state.param_state):
        return float(state.svi.evaluate_loss(**state.problem.data))


#: Iterate averaging and the convergence check (Dhaka et al. 2020): for guides of global
#: latents the result's parameters are the average of the iterates over the last
#: ``AVERAGE_WINDOW`` of the run (removing the optimiser's jitter), and that average is
#: compared with the average over the window before it, in posterior sds: more than
#: ``DRIFT_LIMIT`` means the guide was still moving.
AVERAGE_WINDOW = 0.25
DRIFT_LIMIT = 0.1
#: Paired draws (same random numbers under both parameter sets) for the check.
DRIFT_DRAWS = 200


def _windows(config: SVIConfig) -> tuple[int, int] | None:
    """First step of the previous and of the last averaging window (None: too short)."""
    window = int(config.num_steps * AVERAGE_WINDOW)
    if window < 2:
        return None
    return config.num_steps - 2 * window, config.num_steps - window


def check_interval(config: SVIConfig) -> int:
    """Steps between two looks of ``stop_early``'s rule (and its iterate blocks)."""
    return max(20, config.num_steps // 40)


def _record(records: dict[str, Any], state: SVIState, info: StepInfo, index: int) -> None:
    config = state.config
    if index % config.log_every == 0 or index == config.num_steps - 1:
        records["loss"].append(info.loss)
    if config.stop_early:
        _record_blocks(records, state, index)
        return
    windows = _windows(config)
    if windows is None or index < windows[0] or not config.average_iterates:
        return
    if "averaging" not in records:
        if not _drift_applies(state.problem, state.guide):
            records["averaging"] = None
            return
        records["averaging"] = {"previous": None, "last": None, "counts": [0, 0]}
    averaging = records["averaging"]
    if averaging is None:
        return
    key, slot = ("previous", 0) if index < windows[1] else ("last", 1)
    with torch.no_grad():
        if averaging[key] is None:
            averaging[key] = [p.detach().clone() for p in state.svi.params]
        else:
            torch._foreach_add_(averaging[key], [p.detach() for p in state.svi.params])
    averaging["counts"][slot] += 1


def _record_blocks(records: dict[str, Any], state: SVIState, index: int) -> None:
    """``stop_early``: iterate sums per block of ``check_interval`` steps (the averaging
    windows are then whole blocks, whenever the run stops), and the stopping rule at every
    block's end."""
    config = state.config
    if "blocks" not in records:
        applies = config.average_iterates and _drift_applies(state.problem, state.guide)
        records["blocks"] = [] if applies else None
        records["block_steps"] = []
    interval = check_interval(config)
    blocks = records["blocks"]
    if blocks is not None:
        with torch.no_grad():
            if index % interval == 0:
                blocks.append([p.detach().clone() for p in state.svi.params])
                records["block_steps"].append(1)
            else:
                torch._foreach_add_(blocks[-1], [p.detach() for p in state.svi.params])
                records["block_steps"][-1] += 1
    done = index + 1
    if done % interval or done < STOP_MIN_FRACTION * config.num_steps \
            or done >= config.num_steps or "stop_at" in state.flags:
        return
    verdict = stop_rule(state, records, done)
    records.setdefault("stop_checks", []).append(verdict)
    if verdict["stop"]:
        state.flags["stop_at"] = done


#: ``stop_early`` looks only after this fraction of the budget (the ELBO's first descent
#: is not a plateau), and stops when the ELBO gained less than ``STOP_SE`` standard errors
#: over the last quarter of the steps so far and, for guides of global latents, the guide
#: moved less than ``DRIFT_LIMIT`` posterior sds between the last two quarter averages and
#: its iterates show no trend over the last half (``STOP_TREND_T``).
STOP_MIN_FRACTION = 0.2
STOP_SE = 2.0


def _quarter_windows(num_blocks: int) -> tuple[slice, slice] | None:
    """The last quarter's blocks and the quarter's before them (None: too few blocks)."""
    width = num_blocks // 4
    if width < 1:
        return None
    return slice(num_blocks - 2 * width, num_blocks - width), slice(num_blocks - width,
                                                                      num_blocks)


def _block_average(blocks: list[list[torch.Tensor]], steps: list[int],
                   window: slice) -> list[torch.Tensor]:
    """The iterate average over the blocks in ``window`` (``steps``: each block's count;
    the last block of a run can be short)."""
    chosen = blocks[window]
    total = [t.clone() for t in chosen[0]]
    for block in chosen[1:]:
        torch._foreach_add_(total, block)
    return [t / sum(steps[window]) for t in total]


def stop_rule(state: SVIState, records: dict[str, Any], done: int) -> dict[str, Any]:
    """Whether ``stop_early`` stops after step ``done``: the ELBO's gain from the previous
    quarter of the steps so far to the last within ``STOP_SE`` standard errors of zero
    (batch means: the losses are autocorrelated; quarters, not tenths, so that a slow but
    steady climb — a VAE's — adds up to more than its noise) and,
    where it applies, the guide's drift between the last two quarter averages below
    ``DRIFT_LIMIT`` (paired draws)."""
    trend = _elbo_trend(np.asarray(records["loss"][:done], dtype=float), fraction=4)
    out: dict[str, Any] = {"step": done, "stop": False}
    if trend is None:
        return out
    out.update(trend)
    flat = trend["elbo_gain"] <= STOP_SE * trend["elbo_gain_se"]
    if not flat:
        return out
    blocks = records.get("blocks")
    if blocks:
        windows = _quarter_windows(len(blocks))
        if windows is None:
            return out
        previous = _block_average(blocks, records["block_steps"], windows[0])
        last = _block_average(blocks, records["block_steps"], windows[1])
        current = [p.detach().clone() for p in state.svi.params]
        try:
            with torch.no_grad():
                for p, v in zip(state.svi.params, last):
                    p.copy_(v)
            drift = _drift(state, previous, seed=done)
        finally:
            with torch.no_grad():
                for p, v in zip(state.svi.params, current):
                    p.copy_(v)
        out.update(drift)
        if max(drift["mean_drift"], drift["sd_drift"]) > DRIFT_LIMIT:
            return out
        # A stalled optimiser (a step size far too small) also looks flat and still; but
        # its iterates creep one way, block after block, where a converged one's jitter.
        half = len(blocks) // 2
        out["trend_t"] = _iterate_trend(blocks[half:], records["block_steps"][half:])
        if out["trend_t"] > STOP_TREND_T:
            return out
    out["stop"] = True
    return out


#: The largest |t| of a block-average slope (any guide parameter) that still counts as no
#: trend. Converged iterates' block averages are nearly independent (blocks are many
#: optimiser time constants long) and give |t| of a few; a stalled optimiser's give
#: hundreds.
STOP_TREND_T = 10.0


def _iterate_trend(blocks: list[list[torch.Tensor]], steps: list[int]) -> float:
    """Over these blocks, the largest |t| of the least-squares slope of the block averages
    against time, over every guide parameter element (inf when a slope is exact)."""
    if len(blocks) < 4:
        return math.inf
    values = torch.stack([torch.cat([t.reshape(-1) for t in block]) for block in blocks])
    counts = torch.tensor(steps, dtype=torch.float64)[:, None]
    values = values.double() / counts  # (blocks, elements): block averages
    time = torch.arange(len(blocks), dtype=torch.float64)
    time = time - time.mean()
    centred = values - values.mean(0)
    slope = (time[:, None] * centred).sum(0) / (time ** 2).sum()
    residual = centred - slope * time[:, None]
    se = torch.sqrt((residual ** 2).sum(0) / (len(blocks) - 2) / (time ** 2).sum())
    moving = slope.abs() > 0
    if not bool(moving.any()):
        return 0.0
    t = torch.where(se > 0, slope.abs() / se.clamp_min(1e-300), math.inf)
    return float(t[moving].max())


def _drift_applies(problem: Problem, guide: Any) -> bool:
    """Whether the guide is a distribution over the model's global latents, whose
    movement in posterior sds is meaningful."""
    module = problem.module
    return not (guide is _empty_guide or isinstance(guide, autoguide.AutoDelta)
                or (module is not None and module.has_local_guide)
                or not latent_sites(problem.structure))


def _drift(state: SVIState, earlier: list[torch.Tensor], seed: int) -> dict[str, Any]:
    """How far the guide moved from the parameters ``earlier`` to the current ones: per
    latent element, |mean now - mean then| / sd now and |sd now - sd then| / sd now, from
    the same random numbers under both parameter sets (so the difference is the
    parameters', not Monte Carlo noise)."""
    from .predictive import draw_from_guide

    params = state.svi.params
    final = [p.detach().clone() for p in params]

    def draws() -> dict[str, torch.Tensor]:
        return draw_from_guide(state.problem, state.guide, DRIFT_DRAWS, seed=seed,
                               param_state=state.param_state)

    try:
        with torch.no_grad():
            for p, v in zip(params, earlier):
                p.copy_(v)
        before = draws()
    finally:
        with torch.no_grad():
            for p, v in zip(params, final):
                p.copy_(v)
    after = draws()
    worst = {"mean": (0.0, None), "sd": (0.0, None)}
    for name, now in after.items():
        then = before.get(name)
        if then is None or not now.is_floating_point():
            continue
        a = now.reshape(DRIFT_DRAWS, -1).double()
        b = then.reshape(DRIFT_DRAWS, -1).double()
        sd = a.std(0)
        ok = sd > 0
        if not bool(ok.any()):
            continue
        mean_drift = torch.where(ok, (a.mean(0) - b.mean(0)).abs() / sd, 0.0)
        sd_drift = torch.where(ok, (a.std(0) - b.std(0)).abs() / sd, 0.0)
        for key, values in (("mean", mean_drift), ("sd", sd_drift)):
            j = int(values.argmax())
            if float(values[j]) > worst[key][0]:
                worst[key] = (float(values[j]), _label(name, tuple(now.shape[1:]), j))
    return {"mean_drift": worst["mean"][0], "mean_drift_parameter": worst["mean"][1],
            "sd_drift": worst["sd"][0], "sd_drift_parameter": worst["sd"][1]}


def _batch_means_se(x: np.ndarray, batches: int = 10) -> float:
    """The standard error of ``x``'s mean from ``batches`` batch means (the losses are
    autocorrelated)."""
    means = [b.mean() for b in np.array_split(x, batches)]
    return float(np.std(means, ddof=1) / math.sqrt(batches))


def _elbo_trend(losses: np.ndarray, fraction: int = 10) -> dict[str, Any] | None:
    """The loss's improvement from the second-to-last ``1/fraction`` of the run to the
    last, with its standard error from batch means (the losses are autocorrelated)."""
    window = len(losses) // fraction
    if window < 20:
        return None
    last, previous = losses[-window:], losses[-2 * window:-window]

    gain = float(previous.mean() - last.mean())
    error = math.hypot(_batch_means_se(last), _batch_means_se(previous))
    return {"elbo_gain": gain, "elbo_gain_se": error,
            "relative_gain": gain / max(abs(float(last.mean())), 1e-12)}


#: A final loss this much above the best (relative to |best| + 1), and 3 standard errors
#: above it, means the run diverged.
LOSS_RISE_LIMIT = 0.01


def _loss_rise(losses: np.ndarray, fraction: int = 10) -> dict[str, Any] | None:
    """How far the last ``1/fraction`` of the run's loss sits above the best window after
    the first, with its standard error from batch means: a run whose loss blew up (too
    large a learning rate) ends far above where it had been."""
    window = len(losses) // fraction
    if window < 20:
        return None
    means = [losses[k * window:(k + 1) * window].mean() for k in range(fraction)]
    best = int(np.argmin(means[1:-1])) + 1
    last = losses[-window:]
    best_part = losses[best * window:(best + 1) * window]

    if not np.isfinite(best_part).all():
        return None
    if not np.isfinite(last).all():  # the loss overflowed after its best: diverged
        return {"loss_rise": math.inf, "loss_rise_se": 0.0,
                "best_loss": float(best_part.mean()), "best_loss_step": best * window,
                "final_window_loss": math.inf, "entirely_above": True}
    rise = float(last.mean() - best_part.mean())
    error = math.hypot(_batch_means_se(last), _batch_means_se(best_part))
    # A loss that blew up by orders of magnitude has a batch-means error as large as the
    # rise itself (a MAF at a rate of 0.1 went from 1.6e4 to 1e16 nats and passed the
    # 3-standard-error test). Every loss of the last tenth above every loss of the best
    # window says the same without a variance.
    return {"loss_rise": rise, "loss_rise_se": error,
            "best_loss": float(best_part.mean()), "best_loss_step": best * window,
            "final_window_loss": float(last.mean()),
            "entirely_above": bool(last.min() > best_part.max())}


def convergence(state: SVIState, records: dict[str, Any], seed: int) -> dict[str, Any]:
    """The convergence checks of an SVI run; see :func:`_convergence`. Every run is also
    checked for a loss that rose well above its best (the optimisation diverged): that
    message takes precedence."""
    out = _convergence(state, records, seed)
    rise, message = loss_rise_check(np.asarray(records["loss"], dtype=float),
                                    state.config.learning_rate)
    if rise is not None:
        out.update(rise)
    if message is not None:
        out["converged"], out["message"] = False, message
    return out


def loss_rise_check(losses: np.ndarray, learning_rate: float
                    ) -> tuple[dict[str, Any] | None, str | None]:
    """:func:`_loss_rise` and, when the final loss sits more than ``LOSS_RISE_LIMIT`` x
    (|best| + 1) above the best window and either 3 standard errors above it or entirely
    above it (every loss of the last tenth above every loss of the best window; or
    non-finite), the warning that names the fix."""
    rise = _loss_rise(losses)
    if rise is None or not (
            (rise["loss_rise"] > 3 * rise["loss_rise_se"] or rise["entirely_above"])
            and rise["loss_rise"] > LOSS_RISE_LIMIT * (abs(rise["best_loss"]) + 1.0)):
        return rise, None
    return rise, (
        f"the optimisation was unstable or diverged: the loss rose from "
        f"{rise['best_loss']:.4g} (around step {rise['best_loss_step']}) to "
        f"{rise['final_window_loss']:.4g} over the last tenth of the run, so the fitted "
        f"parameters are worse than they were; lower learning_rate (e.g. "
        f"learning_rate={learning_rate / 10:g}) or use optimizer='clipped_adam'.")


def _convergence(state: SVIState, records: dict[str, Any], seed: int) -> dict[str, Any]:
    """Iterate averaging and the convergence check of an SVI run (``info["convergence"]``).

    For guides of global latents: the parameters become the average of the last window's
    iterates, and the guide under it is compared with the guide under the previous
    window's average (drift in posterior sds). Otherwise (amortised guides, neural
    networks): the ELBO's trend over the last tenth. ``message`` says what to do when the
    run had not converged."""
    config = state.config
    out: dict[str, Any] = {"converged": True, "message": None}
    if config.stop_early:
        stopped = state.flags.get("stop_at") if state.flags else None
        out["stopped_at"] = stopped
        out["stop_checks"] = len(records.get("stop_checks", []))
        if stopped is None:
            out["stop_reason"] = ("the rule never fired: the ELBO was still rising or the "
                                  "guide still moving at every look")
        blocks = records.get("blocks")
        windows = _quarter_windows(len(blocks)) if blocks else None
        if windows is not None:
            steps = records["block_steps"]
            previous = _block_average(blocks, steps, windows[0])
            last = _block_average(blocks, steps, windows[1])
            records = {**records, "averaging": {
                "previous": previous, "last": last, "counts": [1, 1],
                "window_steps": sum(steps[windows[1]])}}
    averaging = records.get("averaging")
    if averaging and all(averaging["counts"]):
        window = averaging.get("window_steps", averaging["counts"][1])
        previous = [v / averaging["counts"][0] for v in averaging["previous"]]
        last_count = averaging["counts"][1]
        with torch.no_grad():  # the result is the last window's iterate average
            for p, total in zip(state.svi.params, averaging["last"]):
                p.copy_(total / last_count)
        out.update(check="guide drift between iterate averages", window_steps=window,
                   limit=DRIFT_LIMIT, averaged_steps=window,
                   **_drift(state, previous, seed))
        moved = max(out["mean_drift"], out["sd_drift"])
        if moved > DRIFT_LIMIT:
            which = "mean" if out["mean_drift"] >= out["sd_drift"] else "sd"
            out["converged"] = False
            out["message"] = (
                f"the fit had not converged: the guide's {which} of "
                f"{out[which + '_drift_parameter']} moved by {moved:.2f} posterior sds "
                f"(limit {DRIFT_LIMIT}) between the averages of the last two windows of "
                f"{window} steps, so its numbers may be off; run more steps "
                f"(num_steps={2 * config.num_steps}) or raise learning_rate, and prefer "
                "the PSIS-corrected numbers meanwhile.")
        blocks = records.get("blocks")
        if out["converged"] and blocks and out.get("stopped_at") is None:
            half = len(blocks) // 2
            out["trend_t"] = _iterate_trend(blocks[half:], records["block_steps"][half:])
            if out["trend_t"] > STOP_TREND_T:
                out["converged"] = False
                out["message"] = (
                    f"the fit had not converged: the guide's parameters were still creeping "
                    f"one way over the last half of the run (trend t = {out['trend_t']:.3g}, "
                    f"limit {STOP_TREND_T:g}) although each window moved little: the step "
                    f"size is too small to get there; raise learning_rate or run more "
                    f"steps.")
        return out
    trend = _elbo_trend(np.asarray(records["loss"], dtype=float))
    if trend is None:
        out.update(check="none (fewer than 200 recorded steps)")
        return out
    out.update(check="ELBO trend", **trend)
    if trend["elbo_gain"] > 3 * trend["elbo_gain_se"] and trend["relative_gain"] > 1e-3:
        out["converged"] = False
        out["message"] = (
            f"the ELBO was still rising when the budget ended (by {trend['elbo_gain']:.4g} "
            f"+- {trend['elbo_gain_se']:.2g} over the last tenth of the run): the fit has "
            f"not converged; run more steps (num_steps={2 * config.num_steps}).")
    return out


def _finish(problem: Problem, config: SVIConfig, seed: int, state: SVIState,
            records: dict[str, Any], base_info: dict[str, Any]) -> FitResult:
    losses_arr = np.asarray(records["loss"], dtype=float)
    history = {"loss": losses_arr, "elbo": -losses_arr}
    elbo = getattr(state.svi.loss, "__self__", state.svi.loss)  # SVI stores elbo.loss
    guide_name = (state.guide.__name__ if inspect.isfunction(state.guide)
                  else type(state.guide).__name__)
    info = {**base_info, "num_steps": state.num_steps, "budget_steps": config.num_steps,
            "final_loss": float(losses_arr[-1]), "guide": guide_name,
            "loss": type(elbo).__name__,
            "convergence": convergence(state, records, seed)}
    start = guide_start(state.guide)
    if start is not None:
        info["init"] = start
    if state.shards is not None:
        shards = state.shards
        info["distributed"] = {"world_size": shards.world_size, "rank": shards.rank,
                               "global_batch": shards.global_batch,
                               "local_batch": shards.local_batch,
                               "steps_per_epoch": shards.steps_per_epoch,
                               "epochs": config.num_steps / shards.steps_per_epoch}
    if config.compile not in (False, "eager"):
        compiled = state.svi.compiled
        info.update(compiled=compiled.backend if compiled else "eager",
                    compile_reason=(state.svi.compile_refusal
                                    or (compiled.reason if compiled else
                                        "only a zoo model with its own guide, an autoguide "
                                        "or no guide is traced")),
                    compile_seconds=compiled.compile_seconds if compiled else 0.0)
    return FitResult("svi", problem, config, seed, history, guide=state.guide,
                     param_state=state.param_state, info=info)


def state_dict(state: SVIState) -> dict[str, Any]:
    """What resumes the fit: every optimised tensor (in collection order), the optimiser's
    moments and learning rate, and the step count."""
    svi = state.svi
    return {"params": [p.detach().clone() for p in svi.params],
            "optimizer": svi.optimizer.state_dict() if svi.optimizer is not None else None,
            "num_steps": state.num_steps, "flags": dict(state.flags or {})}


def load_state_dict(state: SVIState, saved: dict[str, Any]) -> SVIState:
    """Put a checkpoint's values into a fresh ``init`` state. The parameters are created by
    one loss evaluation (autoguides and ``pyro.param`` create theirs lazily), under a saved
    and restored random state, then overwritten with the checkpoint's."""
    svi = state.svi
    if saved["params"]:
        rng = pyro.util.get_rng_state()
        with param_scope(state.param_state):
            svi._collect(**state.problem.data, **state.step_kwargs)
        pyro.util.set_rng_state(rng)
        if len(svi.params) != len(saved["params"]):
            raise ValueError(f"the checkpoint holds {len(saved['params'])} parameter "
                             f"tensors, this model and guide {len(svi.params)}; resume with "
                             "the same model and guide")
        with torch.no_grad():
            for param, value in zip(svi.params, saved["params"]):
                if param.shape != value.shape:
                    raise ValueError(f"checkpoint parameter shaped {tuple(value.shape)} "
                                     f"does not fit {tuple(param.shape)}; resume with the "
                                     "same model and guide")
                param.copy_(value)
        svi.optimizer.load_state_dict(saved["optimizer"])
        svi.optimizer.zero_grad(set_to_none=True)
    state.flags.clear()
    state.flags.update(saved.get("flags", {}))
    return state._replace(num_steps=saved["num_steps"])


def run(problem: Problem, config: SVIConfig | None = None, seed: int = 0,
        **loop: Any) -> FitResult:
    """``init`` then ``config.num_steps`` calls to ``step``, through the run loop."""
    return ENGINE.run(problem, config or SVIConfig(), seed, **loop)


ENGINE = Engine(
    name="svi", config_class=SVIConfig, kind="optimiser",
    description="stochastic variational inference (ELBO, IWAE, Rényi)",
    init=init, step=step, total_steps=lambda config: config.num_steps,
    done=lambda state: bool(state.flags) and state.num_steps >= state.flags.get(
        "stop_at", math.inf),
    new_records=lambda config: {"loss": []}, record=_record, finish=_finish,
    state_dict=state_dict, load_state_dict=load_state_dict,
    label=lambda config: "SVI")
