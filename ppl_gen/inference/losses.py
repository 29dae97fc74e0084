"""ELBO objects for the SVI engine: Pyro's, with a lean path for the common case.

``Trace_ELBO`` and ``TraceMeanField_ELBO`` do per-step bookkeeping that a single-particle,
fully reparameterised model does not need once it has been validated: two trace copies
(``prune_subsample_sites``), score-function parts for every guide site, a ``.item()`` per
site. :class:`LeanTrace_ELBO` and :class:`LeanTraceMeanField_ELBO` compute the same
estimator straight from the two traces — Σ log p − Σ log q (or closed-form KL where Pyro
has one) with each site's scale and mask — and fall back to Pyro's implementation whenever
the lean path does not apply: validation on (the engine validates the first step) or
several particles; a guide site that is not reparameterised or is enumerated gets Pyro's
own particle estimator on the same traces. Same values, same gradients (tested against
Pyro's classes).
"""

from __future__ import annotations

from typing import Any

import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch.distributions import kl_divergence

__all__ = ["LeanTrace_ELBO", "LeanTraceMeanField_ELBO"]


def _traces(elbo: Any, model: Any, guide: Any, args: tuple,
            kwargs: dict) -> tuple[Any, Any, bool] | None:
    """(model trace, guide trace, lean?) — None, before running anything, when Pyro's own
    path must run (validation on, several particles). ``lean`` is False when a guide site
    is not reparameterised: then Pyro's particle loss is computed from these traces."""
    if elbo.num_particles != 1 or is_validation_enabled():
        return None
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
        *args, **kwargs)
    lean = all(site["fn"].has_rsample and not site["infer"].get("enumerate")
               for site in _sample_sites(guide_trace, observed=False))
    return model_trace, guide_trace, lean


def _pyro_particle(elbo: Any, model_trace: Any, guide_trace: Any) -> float:
    """Pyro's own estimator (with score-function terms) on traces already drawn."""
    model_trace = prune_subsample_sites(model_trace)
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace.compute_log_prob()
    guide_trace.compute_score_parts()
    loss, surrogate = elbo._differentiable_loss_particle(model_trace, guide_trace)
    if getattr(surrogate, "requires_grad", False):
        surrogate.backward()
    return float(loss)


def _sample_sites(trace: Any, *, observed: bool | None = None) -> list[dict]:
    return [site for site in trace.nodes.values()
            if site["type"] == "sample" and not site_is_subsample(site)
            and (observed is None or site["is_observed"] == observed)]


def _log_prob_sum(site: dict) -> torch.Tensor:
    log_prob = site["fn"].log_prob(site["value"])
    return scale_and_mask(log_prob, site["scale"], site["mask"]).sum()


def _finish(elbo: torch.Tensor) -> float:
    loss = -elbo
    if loss.requires_grad:
        loss.backward()
    return loss.item()


class _LeanPath:
    """The dispatch both lean ELBOs share: Pyro's path when the lean one does not apply,
    Pyro's particle estimator for non-reparameterised guides, else ``_lean_elbo``."""

    def loss_and_grads(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        traces = _traces(self, model, guide, args, kwargs)
        if traces is None:
            return super().loss_and_grads(model, guide, *args, **kwargs)  # type: ignore[misc]
        model_trace, guide_trace, lean = traces
        if not lean:
            return _pyro_particle(self, model_trace, guide_trace)
        return _finish(self._lean_elbo(model_trace, guide_trace))

    def lean_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any
                  ) -> torch.Tensor | None:
        """The differentiable loss −ELBO when the lean path applies (one particle,
        validation off, every guide site reparameterised), else None."""
        traces = _traces(self, model, guide, args, kwargs)
        if traces is None or not traces[2]:
            return None
        return -self._lean_elbo(traces[0], traces[1])

    def _lean_elbo(self, model_trace: Any, guide_trace: Any) -> torch.Tensor:
        raise NotImplementedError


class LeanTrace_ELBO(_LeanPath, Trace_ELBO):
    """``Trace_ELBO`` (Monte-Carlo KL) with the lean single-particle path."""

    def _lean_elbo(self, model_trace: Any, guide_trace: Any) -> torch.Tensor:
        elbo = sum(_log_prob_sum(site) for site in _sample_sites(model_trace))
        return elbo - sum(_log_prob_sum(site)
                          for site in _sample_sites(guide_trace, observed=False))


class LeanTraceMeanField_ELBO(_LeanPath, TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` (closed-form KL where registered, Monte Carlo otherwise)
    with the lean single-particle path."""

    def _lean_elbo(self, model_trace: Any, guide_trace: Any) -> torch.Tensor:
        elbo: Any = 0.0
        for site in _sample_sites(model_trace):
            if site["is_observed"]:
                elbo = elbo + _log_prob_sum(site)
                continue
            guide_site = guide_trace.nodes[site["name"]]
            try:
                kl = kl_divergence(guide_site["fn"], site["fn"])
            except NotImplementedError:
                elbo = elbo + _log_prob_sum(site) - _log_prob_sum(guide_site)
                continue
            kl = scale_and_mask(kl, guide_site["scale"], guide_site["mask"])
            if not torch.is_tensor(kl):
                kl = torch.as_tensor(kl) * torch.Size(guide_site["fn"].batch_shape).numel()
            elbo = elbo - kl.sum()
        for site in _sample_sites(guide_trace, observed=False):  # auxiliary guide sites
            if site["name"] not in model_trace.nodes:
                elbo = elbo - _log_prob_sum(site)
        return elbo
