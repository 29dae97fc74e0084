"""The model contract shared by every zoo model.

A model is a :class:`pyro.nn.PyroModule` with ``model(**data)`` (the joint p(x, z); the
observed site left ``None`` samples it) and ``guide(**data)`` (q(z | x); empty for models
without local latents). Models hold no optimiser, loop or data loading.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import pyro
import torch
from pyro.nn import PyroModule
from torch import Tensor

__all__ = ["GenerativeModel", "check_data_keys", "continuous_data"]


def check_data_keys(name: str, required: tuple[str, ...], data: Mapping[str, Any]) -> None:
    """Raise a clear error when a dataset lacks the tensors a model needs."""
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(
            f"model {name!r} needs data tensor(s) {', '.join(required)} but the data has "
            f"{', '.join(data) or 'none'} (missing: {', '.join(missing)}); pick a dataset that "
            f"provides them (ppl-gen list)"
        )


def continuous_data(model: type, dataset: Any, needs: str, because: str = ""
                    ) -> tuple[Mapping[str, Any], Tensor, dict[str, Any]]:
    """(tensors, x, meta) of a dataset for a model of continuous data shaped (N, D); binary
    x is refused with ``needs`` (why this model cannot take it) and the fix."""
    tensors = getattr(dataset, "tensors", dataset)
    check_data_keys(model.__name__, model.data_keys, tensors)
    x = tensors["x"]
    if x.dim() != 2:
        raise ValueError(f"x must have shape (N, D), got {tuple(x.shape)}")
    if bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{needs}, but x holds only 0 and 1{because}; load the images in grey "
                         "levels (load_dataset('mnist', binarize=False)) or dequantized, or "
                         "fit a binary-data model (nade, made, pixelcnn, vae)")
    return tensors, x, getattr(dataset, "meta", {}) or {}


def _in_pyro_context(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``method`` inside the module's Pyro context, so that PyroParam and PyroSample
    attributes become ``pyro.param``/``pyro.sample`` sites (and a PyroSample is drawn once
    per call) even when ``model``/``guide`` is called directly rather than via ``__call__``."""

    @functools.wraps(method)
    def wrapper(self: PyroModule, *args: Any, **kwargs: Any) -> Any:
        run = type(self).__dict__.get("_pyro_context_free")
        if run is not None:
            # An engine holds every parameter for now and says how to run without the
            # context (``inference.fast_params``: the SVI engine's fast path).
            return run(self, method, args, kwargs)
        if not _needs_context(self):
            # Entering the context swaps Pyro's param store (module_local_params), which
            # costs ~25% of a NUTS step on eight schools; a model with no parameters and
            # no PyroSample attributes has nothing to register, so skip it.
            return method(self, *args, **kwargs)
        with self._pyro_context:
            return method(self, *args, **kwargs)

    wrapper._in_pyro_context = True  # type: ignore[attr-defined]
    return wrapper


def _needs_context(module: PyroModule) -> bool:
    if next(module.parameters(), None) is not None:
        return True
    return _has_pyro_samples(module)


def _has_pyro_samples(module: PyroModule) -> bool:
    return any(isinstance(m, PyroModule) and m.__dict__.get("_pyro_samples")
               for m in module.modules())


class GenerativeModel(PyroModule):
    """Base class: ``model`` defines p(x, z); ``guide`` defines q(z | x).

    Attributes:
        observed: Name of the observed sample site (``"x"`` for density models, ``"y"`` for
            supervised models that condition on covariates ``x``).
        data_keys: Keyword data arguments the model needs when fitting.
        density: ``"exact"`` when :meth:`log_prob` is the exact marginal log-likelihood,
            ``"bound"`` when only a bound or estimator exists, ``"implicit"`` for samplers,
            ``"intractable"`` for Bayesian models whose evidence p(y) is not computed (their
            pointwise log p(y_i | theta) still feeds LOO/WAIC).
        has_local_guide: True when :meth:`guide` is a real q(z | x) for local latents.
        default_batch_size: Minibatch size SVI uses unless told otherwise (``None``: the
            full data).
        engines: The engines this model is fitted with (``fit`` refuses the others, with
            :meth:`engine_refusal`'s reason); ``None`` (a user's subclass that does not
            say) lets every engine try.
    """

    observed: ClassVar[str] = "x"
    data_keys: ClassVar[tuple[str, ...]] = ("x",)
    default_batch_size: ClassVar[int | None] = None
    density: ClassVar[str] = "exact"
    has_local_guide: ClassVar[bool] = False
    engines: ClassVar[tuple[str, ...] | None] = None
    #: The SVI loss ``loss="auto"`` picks for this model (``None``: the engine decides).
    default_loss: ClassVar[str | None] = None
    #: Options ``to_inference_data`` passes to ``log_prob`` for the pointwise
    #: log-likelihood (``None``: 100 importance samples for ``density="bound"``).
    summary_log_prob_options: ClassVar[dict[str, Any] | None] = None
    #: The CLI shows this model's samples (``samples.png``); two-player models always.
    sample_figure: ClassVar[bool] = False

    #: Engines that sample global parameters from their posterior.
    MCMC_ENGINES: ClassVar[tuple[str, ...]] = ("nuts", "hmc", "chees", "pathfinder")

    def engine_refusal(self, engine: str) -> str | None:
        """Why ``engine`` cannot fit this model (``None`` when it can): one clause that
        ``fit`` puts into its error together with the engines that can."""
        if self.engines is None or engine in self.engines:
            return None
        if engine == "em":
            return ("engine 'em' needs a model with initialize/e_step/m_step/"
                    "log_likelihood (an exact E-step): gmm, ppca, factor_analysis")
        if engine == "adversarial":
            return "engine 'adversarial' needs a model with adversarial_phases (aae)"
        if engine in self.MCMC_ENGINES:
            if self.has_local_guide:
                return ("it has a latent code per datum: MCMC would sample all of them "
                        "jointly, one full-data gradient per leapfrog step (hours on "
                        "MNIST); amortised VI ('svi') is what this model is built for")
            return ("it has no latent sample sites to sample: its parameters are point "
                    "estimates without priors, which MCMC cannot sample")
        return f"engine {engine!r} does not apply to it"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("model", "guide"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_in_pyro_context", False):
                setattr(cls, name, _in_pyro_context(method))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def model(self, **data: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def guide(self, **data: Any) -> None:
        """Empty guide: the model has no latent sites of its own to approximate."""

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> GenerativeModel:
        """Build the model with sizes read from ``dataset`` (a Dataset or dict)."""
        check_data_keys(cls.__name__, cls.data_keys, getattr(dataset, "tensors", dataset))
        return cls(**kwargs)

    def _check_x(self, x: Tensor) -> None:
        """Density models observe x shaped (N, self.dim); fail early with that shape."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (N, {self.dim}), got {tuple(x.shape)}")

    def log_prob(self, **data: Any) -> Tensor:
        """Per-datum log p(x) (exact models); others raise ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} has no tractable log_prob")

    @torch.no_grad()
    def sample(self, num_samples: int, **data: Any) -> Tensor:
        """Draws of the observed site from the prior predictive, shaped (num_samples, ...)."""
        data = {k: v for k, v in data.items() if k != self.observed}
        predictive = pyro.infer.Predictive(self.model, num_samples=num_samples,
                                           return_sites=[self.observed])
        return predictive(**data)[self.observed]

    def extra_repr(self) -> str:
        return f"observed={self.observed!r}, density={self.density!r}"


def _device_of(*tensors: Any) -> torch.device:
    for t in tensors:
        if isinstance(t, Tensor):
            return t.device
    return torch.device("cpu")
