"""Importance-sampled marginal likelihood for any Pyro model/guide pair with local latents.

    log p(x_n) ≈ log (1/K) Σ_k p(x_n, z_k) / q(z_k | x_n),    z_k ~ q(· | x_n)

is a stochastically lower bound on log p(x_n) that tightens as K grows (Burda, Grosse &
Salakhutdinov 2016); the mean of the K log-weights is the ELBO, so one pass gives both and
their difference, the variational gap. The K draws are vectorised with an outer
``pyro.plate`` (the model must broadcast over a leading particle dimension, as Pyro's
``vectorize_particles`` requires) and evaluated in chunks of particles and rows, so K = 5,000
on a test set fits in memory.

References:
    Burda, Grosse & Salakhutdinov (2016), "Importance weighted autoencoders", ICLR.
    Cremer, Li & Duvenaud (2018), "Inference suboptimality in variational autoencoders", ICML.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from .._rng import seeded_call
from .outer import under_outer_plate

__all__ = ["MarginalEstimate", "log_weights", "estimate_log_marginal"]

_PARTICLES = "_importance_particles"


class MarginalEstimate(NamedTuple):
    """Per-datum importance-sampling results.

    Attributes:
        log_marginal: log (1/K) Σ_k w_k, the estimate of log p(x_n), shaped (N,).
        elbo: Mean log-weight, the Monte-Carlo ELBO of the guide, shaped (N,).
        ess: Effective sample size of the normalised weights, (Σ w)² / Σ w², shaped (N,).
        num_samples: K.
        elbo_se: Monte-Carlo standard error of ``elbo`` (sd of the log-weights / √K).
    """

    log_marginal: Tensor
    elbo: Tensor
    ess: Tensor
    num_samples: int
    elbo_se: Tensor | None = None

    @property
    def gap(self) -> Tensor:
        """log p(x) − ELBO per datum (the variational gap, up to the estimator's bias)."""
        return self.log_marginal - self.elbo


def _site_log_prob(site: dict, num_rows: int, role: str) -> Tensor:
    """A site's log-density reduced to (K, N): summed over everything but the particle and
    ``data`` dimensions. Sites outside the data plate have no per-datum share."""
    log_prob = site["fn"].log_prob(site["value"])
    scale = site.get("scale", 1.0)
    if not isinstance(scale, Tensor) and scale != 1.0:
        raise ValueError(f"site {site['name']!r} is scaled by {scale} (poutine.scale or a "
                         "subsampled plate); importance weights need the unscaled density — "
                         "evaluate without subsampling and with beta=1")
    frames = {f.name: f for f in site["cond_indep_stack"]}
    if "data" not in frames:
        raise ValueError(f"{role} site {site['name']!r} is not inside pyro.plate('data'); a "
                         "per-datum marginal likelihood needs every site in the data plate "
                         "(global latents have no per-datum share — use MCMC or EM for them)")
    data_dim = frames["data"].dim
    particle_dim = frames[_PARTICLES].dim
    # Plates broadcast every site to (..., K, ..., N, ...): bring particle and data
    # dimensions to the front and sum the rest (inner plates).
    # (Under replay a site can skip outer plates' broadcasting: expand to them here.)
    nesting = max(-particle_dim, log_prob.dim())
    target = [1] * nesting
    target[particle_dim] = frames[_PARTICLES].size
    log_prob = log_prob.expand(torch.broadcast_shapes(log_prob.shape, tuple(target)))
    full = torch.movedim(log_prob, (particle_dim, data_dim), (0, 1))
    if full.shape[1] != num_rows:
        full = full.expand(full.shape[0], num_rows, *full.shape[2:])
    return full.reshape(full.shape[0], num_rows, -1).sum(-1)


@torch.no_grad()
def log_weights(model: Callable[..., Any], guide: Callable[..., Any], data: Mapping[str, Any],
                num_samples: int, *, max_plate_nesting: int = 1) -> Tensor:
    """log p(x_n, z_k) − log q(z_k | x_n) for k < K, n < N, shaped (K, N), in one pass.

    Arguments:
        model, guide: Pyro callables taking ``**data``; every site inside
            ``pyro.plate("data", N)``.
        data: Keyword data; every tensor with N rows on dimension 0.
        num_samples: K.
        max_plate_nesting: Plates the model nests (the particle plate goes outside them).
    """
    num_rows = _num_rows(data)
    guide_trace = poutine.trace(under_outer_plate(guide, _PARTICLES, num_samples,
                                                  max_plate_nesting)).get_trace(**data)
    model_trace = poutine.trace(poutine.replay(
        under_outer_plate(model, _PARTICLES, num_samples, max_plate_nesting),
        trace=guide_trace)).get_trace(**data)
    total = torch.zeros(num_samples, num_rows)
    for trace, sign, role in ((model_trace, 1.0, "model"), (guide_trace, -1.0, "guide")):
        for site in trace.nodes.values():
            if (site["type"] != "sample" or site_is_subsample(site)
                    or (role == "guide" and site["is_observed"])):
                continue
            term = _site_log_prob(site, num_rows, role)
            total = total.to(term) + sign * term
    return total


def _num_rows(data: Mapping[str, Any]) -> int:
    rows = {v.shape[0] for v in data.values() if isinstance(v, Tensor) and v.dim() > 0}
    if len(rows) != 1:
        raise ValueError("data tensors must all have the same number of rows N on dimension "
                         f"0; got row counts {sorted(rows)}")
    return rows.pop()


@torch.no_grad()
@seeded_call
def estimate_log_marginal(model: Callable[..., Any], guide: Callable[..., Any],
                          data: Mapping[str, Any], num_samples: int = 1000, *,
                          particle_chunk: int | None = None, row_chunk: int = 100,
                          max_plate_nesting: int = 1, seed: int | None = 0
                          ) -> MarginalEstimate:
    """Importance-sampling estimate of log p(x_n) with the guide as proposal.

    Arguments:
        model, guide: As for :func:`log_weights`.
        data: Keyword data, N rows each.
        num_samples: K importance samples per datum (5,000 for published test NLLs).
        particle_chunk: Particles per pass (default: as many as keep a pass near 2e5
            particle-rows, which bounds memory for 784-pixel decoders).
        row_chunk: Rows per pass.
        max_plate_nesting: Plates the model nests.
        seed: Seed for the draws (``None``: leave the global RNG alone).

    Returns:
        :class:`MarginalEstimate` with per-datum log p(x), ELBO and ESS.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    num_rows = _num_rows(data)
    row_chunk = max(1, min(row_chunk, num_rows))
    if particle_chunk is None:
        particle_chunk = max(1, min(num_samples, 200_000 // row_chunk))
    log_marginal, elbo, ess, elbo_se = [], [], [], []
    for start in range(0, num_rows, row_chunk):
        rows = {k: (v[start:start + row_chunk] if isinstance(v, Tensor) and v.dim() else v)
                for k, v in data.items()}
        chunks = []
        for k0 in range(0, num_samples, particle_chunk):
            k = min(particle_chunk, num_samples - k0)
            chunks.append(log_weights(model, guide, rows, k,
                                      max_plate_nesting=max_plate_nesting))
        weights = torch.cat(chunks)  # (K, rows)
        lse = weights.logsumexp(0)
        log_marginal.append(lse - math.log(num_samples))
        elbo.append(weights.mean(0))
        elbo_se.append(weights.std(0) / math.sqrt(num_samples) if num_samples > 1
                       else torch.full_like(lse, float("nan")))
        ess.append((2 * lse - (2 * weights).logsumexp(0)).exp())
    return MarginalEstimate(torch.cat(log_marginal), torch.cat(elbo), torch.cat(ess),
                            num_samples, torch.cat(elbo_se))
