"""Shared engine machinery: the model adapter (:class:`Problem`), results, device and
thread handling. The engine contract and the one run loop are in :mod:`.loop`."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions import ImproperUniform
from pyro.poutine.messenger import Messenger
from torch import Tensor
from torch.distributions import biject_to

from ..data.base import Dataset, as_tensor_dict
from ..models.base import GenerativeModel
from ..traces.sites import enumerated_sites, latent_sites, max_plate_nesting

__all__ = ["Problem", "make_problem", "FitResult", "StepInfo", "resolve_device",
           "improper_start",
           "num_threads", "param_scope", "latent_sites", "enumerated_sites",
           "max_plate_nesting"]


#: Rows a structure-only trace uses (see ``Problem.structure``).
STRUCTURE_ROWS = 16


def _signature_names(fn: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; an absent CUDA device fails clearly."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") \
            from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={str(device)!r} was requested but CUDA is not available "
                "(torch.cuda.is_available() is False: no GPU, or a CPU-only torch build); "
                "use device='cpu', or device='auto' to pick CUDA only when present"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise RuntimeError(f"device={str(device)!r} does not exist: only "
                               f"{torch.cuda.device_count()} CUDA device(s) are visible")
    elif resolved.type != "cpu":
        raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'")
    return resolved


@contextlib.contextmanager
def num_threads(count: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (``None`` leaves it alone)."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def param_scope(state: dict | None) -> Iterator[dict]:
    """Run with a private Pyro param store (``state``), leaving the global one untouched."""
    with pyro.get_param_store().scope(state) as scoped:
        yield scoped


def flat_prior_start(fn: Any, dtype: torch.dtype) -> Tensor | None:
    """For a flat improper prior (``ImproperUniform``, possibly wrapped in Independent /
    Expanded / Masked), the image of 0 in unconstrained space; ``None`` for any other
    distribution."""
    base = fn
    while hasattr(base, "base_dist"):  # Independent / Expanded / Masked wrappers
        base = base.base_dist
    if not isinstance(base, ImproperUniform):
        return None
    shape = fn.batch_shape + fn.event_shape
    transform = biject_to(fn.support)
    return transform(torch.zeros(transform.inverse_shape(shape), dtype=dtype))


class _ImproperStart(Messenger):
    """Give latent sites whose distribution cannot be sampled (``ImproperUniform``, Stan's
    flat priors) a value in their support — the image of 0 in unconstrained space — so a
    model with improper priors can be traced for its structure. No random numbers drawn.
    The value takes ``dtype``, the widest float dtype of the data."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["is_observed"] or msg["value"] is not None:
            return
        value = flat_prior_start(msg["fn"], self.dtype)
        if value is not None:
            msg["value"] = value


def improper_start(init_fn: Callable[[dict[str, Any]], Tensor]
                   ) -> Callable[[dict[str, Any]], Tensor]:
    """An initialisation strategy (Pyro's ``init_to_median()``, ...) that also handles
    flat improper priors (``ImproperUniform``, Stan's unstated priors), which cannot be
    sampled: those sites start at the image of 0 in unconstrained space, as the problem
    tracer uses. Without it autoguides and Pyro's NUTS/HMC fail at their first trace."""

    def init(site: dict[str, Any]) -> Tensor:
        value = site.get("value")
        dtype = value.dtype if torch.is_tensor(value) and value.is_floating_point() \
            else torch.get_default_dtype()
        start = flat_prior_start(site["fn"], dtype)
        return start if start is not None else init_fn(site)

    return init


class StepInfo(NamedTuple):
    """What one engine step reports.

    Attributes:
        loss: The objective at this step (negative ELBO for SVI, negative mean
            log-likelihood for EM, potential energy for MCMC).
        extras: Engine-specific scalars (``log_likelihood``, ``accept_prob``, ...).
    """

    loss: float
    extras: dict[str, float]


@dataclass(frozen=True)
class Problem:
    """A model bound to its data: what every engine consumes.

    Attributes:
        model: Callable taking the data as keyword arguments (a zoo model's ``model``
            method, or a user's plain Pyro function).
        guide: The model's own guide (user-given, or a zoo model's amortised/exact guide),
            or ``None``.
        data: Keyword data arguments (tensors on the target device).
        observed: Names of observed sample sites.
        module: The zoo :class:`GenerativeModel`, when there is one.
        name: Display name.
        device: Where the data and parameters live.
    """

    model: Callable[..., Any]
    guide: Callable[..., Any] | None
    data: Mapping[str, Any]
    observed: tuple[str, ...]
    module: GenerativeModel | None
    name: str
    device: torch.device

    def trace(self, **overrides: Any) -> poutine.Trace:
        """One prior trace of the model on all the data (observed sites fixed to it)."""
        floats = [v.dtype for v in self.data.values()
                  if torch.is_tensor(v) and v.is_floating_point()]
        dtype = functools.reduce(torch.promote_types, floats, torch.get_default_dtype())
        with poutine.block(), torch.no_grad(), _ImproperStart(dtype):
            return poutine.trace(self.model).get_trace(**{**self.data, **overrides})

    @functools.cached_property
    def structure(self) -> poutine.Trace:
        """A trace for reading the model's structure (site names, plates, observed sites),
        cached, on a subsample of at most ``STRUCTURE_ROWS`` rows when the model takes
        ``subsample_size``: the image models' activations on a whole data set would not fit
        in memory just to learn their site names."""
        overrides: dict[str, Any] = {}
        module = self.module
        if module is not None and "subsample_size" in _signature_names(self.model):
            observed = self.data.get(module.observed)
            if isinstance(observed, Tensor) and observed.dim() and \
                    observed.shape[0] > STRUCTURE_ROWS:
                overrides["subsample_size"] = STRUCTURE_ROWS
        trace = self.trace(**overrides)
        trace.compute_log_prob()  # shape mismatches between data and plates surface here
        return trace


def _bind_data(fn: Callable[..., Any], data: dict[str, Any], *, strict: bool,
               name: str) -> dict[str, Any]:
    """Keep the data keys ``fn`` accepts; with ``strict``, unknown keys are an error."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins, C callables: pass everything
        return data
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return data
    unknown = [k for k in data if k not in params]
    if unknown and strict:
        raise ValueError(
            f"data key(s) {', '.join(unknown)} are not arguments of model {name!r}, whose "
            f"arguments are: {', '.join(params) or '(none)'}; rename the keys to match"
        )
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k not in data]
    if missing:
        raise ValueError(f"model {name!r} needs data argument(s) {', '.join(missing)} "
                         f"but got only: {', '.join(data) or '(none)'}")
    return {k: v for k, v in data.items() if k in params}


def make_problem(model: GenerativeModel | Callable[..., Any],
                 data: Dataset | Mapping[str, Any] | None = None, *,
                 guide: Callable[..., Any] | None = None,
                 device: str | torch.device = "auto") -> Problem:
    """Bind a zoo model or a plain Pyro model function to its data on a device.

    Checks the data (NaN/inf, the keys the model accepts) and runs the model once, so a
    shape mismatch fails here with the model's own message rather than mid-fit.
    """
    device = resolve_device(device)
    strict = not isinstance(data, Dataset)
    # Data follow a zoo model's floating dtype (float64 data with a float32 model would
    # otherwise fail deep inside a matmul).
    dtype = None
    if isinstance(model, GenerativeModel):
        floats = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
        dtype = floats[0].dtype if floats else None
    tensors = as_tensor_dict(data, device=device, dtype=dtype)
    if isinstance(model, GenerativeModel):
        module = model.to(device)
        name = type(model).__name__
        variadic = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        accepted = set(module.data_keys) | {
            n for n, p in inspect.signature(module.model).parameters.items()
            if p.kind not in variadic}
        tensors = {k: v for k, v in tensors.items() if k in accepted}
        missing = [k for k in module.data_keys if k not in tensors]
        if missing:
            raise ValueError(f"model {name} needs data argument(s) {', '.join(missing)}; "
                             f"got: {', '.join(tensors) or '(none)'}")
        model_fn = module.model
        own_guide = guide or (module.guide if module.has_local_guide else None)
    elif callable(model):
        module = None
        name = getattr(model, "__name__", type(model).__name__)
        tensors = _bind_data(model, tensors, strict=strict, name=name)
        model_fn, own_guide = model, guide
    else:
        raise TypeError(f"model must be a ppl_gen model or a Pyro model function, got "
                        f"{type(model).__name__}")
    problem = Problem(model_fn, own_guide, tensors, (), module, name, device)
    try:
        trace = problem.structure
    except (ValueError, RuntimeError, IndexError) as error:
        message = str(error).split("\nTrace Shapes:")[0]  # Pyro appends a shape table
        raise ValueError(f"model {name!r} failed on the given data: {message}") from error
    observed = tuple(n for n, s in trace.nodes.items()
                     if s["type"] == "sample" and s["is_observed"]
                     and not s["infer"].get("_deterministic"))
    for site in observed:
        _check_support(trace.nodes[site], site, name,
                       tensors.get(module.observed) if module is not None else None)
    implicit = (module is not None and module.density == "implicit"
                and module.observed in tensors)
    if not observed and not implicit:  # an implicit model (GAN) observes nothing in Pyro
        raise ValueError(f"model {name!r} has no observed sample site with the given data "
                         f"(keys: {', '.join(tensors) or 'none'}); pass the observations "
                         "under the model's argument names")
    bound = Problem(model_fn, own_guide, tensors, observed, module, name, device)
    bound.__dict__["structure"] = trace  # reuse the validated trace (cached_property slot)
    return bound


def _support_hint(support: Any) -> str:
    text = str(support)
    if "Boolean" in text:
        return ("this likelihood needs binary 0/1 data: binarise it (e.g. x > 0.5), or use "
                "a Gaussian likelihood (likelihood='gaussian')")
    if "IntegerInterval" in text or "IntegerGreaterThan" in text:
        return "this likelihood needs whole-number labels in its range; check the labels"
    return "check the data's scaling and type against the model's likelihood"


def _check_support(site: dict[str, Any], name: str, model: str, full: Any) -> None:
    """An observed value outside its distribution's support (pixels of 3.0 under a
    Bernoulli, float or out-of-range labels under a Categorical) gives a log-likelihood of
    garbage without any error when the distribution skips validation: check it once here.
    ``full`` is the whole observed tensor of a zoo model, whose structure trace may have
    seen only a subsample."""
    fn, value = site["fn"], site["value"]
    support = getattr(fn, "support", None)
    if support is None or not torch.is_tensor(value):
        return
    candidates = [value]
    if torch.is_tensor(full) and full.shape[1:] == value.shape[1:] and full is not value:
        candidates.insert(0, full)
    for candidate in candidates:
        try:
            with torch.no_grad():
                ok = support.check(candidate)
        except (RuntimeError, ValueError, TypeError, NotImplementedError):
            continue  # a parameter-dependent support that does not broadcast to all rows
        if not torch.is_tensor(ok) or bool(ok.all()):
            return
        flat = candidate.reshape(candidate.shape[0], -1) if candidate.dim() > 1 \
            else candidate.reshape(-1, 1)
        bad_rows = (~ok).reshape(ok.shape[0], -1).any(-1) if ok.dim() else ok.new_ones(1)
        row = int(bad_rows.nonzero()[0, 0]) if bad_rows.any() else 0
        example = flat[row][:8].tolist()
        raise ValueError(
            f"observed site {name!r} of model {model!r} has values outside its "
            f"distribution's support ({type(fn).__name__}, support {support}): "
            f"{int(bad_rows.sum())} row(s), the first at row {row}: {example}; "
            f"{_support_hint(support)}")


@dataclass(frozen=True)
class FitResult:
    """The immutable outcome of ``fit``.

    Attributes:
        engine: ``"svi"``, ``"em"``, ``"nuts"`` or ``"hmc"``.
        problem: The model bound to its data.
        config: The frozen engine config used.
        seed: The seed the fit ran under.
        history: Per-step scalars (``loss``; ``elbo`` for SVI; ``log_likelihood`` for EM).
        samples: MCMC draws, constrained, each shaped ``(chain, draw, *site_shape)``; ``None``
            for optimisers.
        sample_stats: Per-draw MCMC statistics shaped (chain, draw): ``diverging``,
            ``step_size``, ``accept_prob``, ``potential_energy``.
        guide: The fitted guide (SVI), or ``None``.
        param_state: Private Pyro param-store state of the fit (for user models with
            ``pyro.param``; zoo models keep their parameters in the module).
        info: Wall time, convergence flag, iteration counts, divergences...; for samplers
            ``info["diagnostics"]`` (R-hat, ESS, nested R-hat, E-BFMI per parameter/chain).
        warnings: Plain sentences, one per failed diagnostic, each naming the parameter
            and the fix; empty when every check passed. ``fit`` also issues them as a
            :class:`~ppl_gen.diagnostics.checks.ReliabilityWarning`.
    """

    engine: str
    problem: Problem
    config: Any
    seed: int
    history: dict[str, np.ndarray]
    samples: dict[str, Tensor] | None = None
    sample_stats: dict[str, np.ndarray] | None = None
    guide: Callable[..., Any] | None = None
    param_state: dict | None = None
    info: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """``"sampler"`` (draws: NUTS, HMC, ChEES), ``"optimiser"`` (SVI), ``"point"``
        (EM), ``"two-player"`` (adversarial) or ``"approximation"`` (Pathfinder: draws
        from a fitted approximation, importance-resampled) — what the result holds, so
        that code can branch on it instead of on engine names."""
        kind = self.info.get("kind")
        if kind is not None:  # engines that say (Pathfinder: "approximation")
            return kind
        if self.samples is not None:
            return "sampler"
        return {"em": "point", "adversarial": "two-player"}.get(self.engine, "optimiser")

    @property
    def model(self) -> Any:
        """The fitted zoo model, or the user's model function."""
        return self.problem.module if self.problem.module is not None else self.problem.model

    def __repr__(self) -> str:
        keys = ", ".join(self.samples) if self.samples else ""
        extra = f", samples=[{keys}]" if keys else ""
        return (f"FitResult(engine={self.engine!r}, model={self.problem.name!r}, "
                f"steps={len(next(iter(self.history.values()), []))}{extra})")
