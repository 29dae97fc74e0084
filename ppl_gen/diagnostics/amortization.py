"""The amortization gap, measured against MCMC: how far a VAE's encoder q_φ(z | x) is from
the best Gaussian for each x, and how far that is from the true posterior.

For a trained decoder and a few data points, each x gets:

* NUTS on p(z | x) (the decoder frozen): the reference posterior;
* q*(z | x), a diagonal Gaussian fitted to that one x by SVI — the best the variational
  family can do without amortisation;
* the encoder's q_φ(z | x);

and, with log p(x) estimated by importance sampling from q* with K draws,

    approximation gap = log p(x) − ELBO(q*)          (the Gaussian family's limit)
    amortization gap  = ELBO(q*) − ELBO(q_φ)          (the cost of one shared encoder)

(Cremer, Li & Duvenaud 2018). Both q's are also compared with the NUTS draws by the
foundation's :func:`~ppl_gen.diagnostics.compare_posteriors` (moments, PSIS k-hat).

References:
    Cremer, Li & Duvenaud (2018), "Inference suboptimality in variational autoencoders",
    ICML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._rng import seeded_call
from ..config import SVIConfig
from ..inference import fit, make_problem
from ..inference.base import FitResult, param_scope
from ..inference.importance import estimate_log_marginal
from .compare import PosteriorComparison, compare_posteriors

__all__ = ["AmortizationGap", "amortization_gap"]


@dataclass(frozen=True)
class AmortizationGap:
    """Gaps for one data point (nats).

    Attributes:
        index: Row of ``x`` this is about.
        log_marginal: log p(x), importance-sampled from q* with ``num_importance`` draws.
        elbo_encoder: ELBO of the encoder's q_φ(z | x).
        elbo_optimal: ELBO of the per-datum optimum q*(z | x).
        ess: Effective sample size of the log p(x) estimate's weights.
        elbo_encoder_se, elbo_optimal_se: Monte-Carlo standard errors of the two ELBOs.
        comparison: Encoder and q* against NUTS (moments, k-hat).
        mcmc: The NUTS result on p(z | x).
    """

    index: int
    log_marginal: float
    elbo_encoder: float
    elbo_optimal: float
    ess: float
    elbo_encoder_se: float
    elbo_optimal_se: float
    comparison: PosteriorComparison
    mcmc: FitResult

    @property
    def approximation_gap(self) -> float:
        return self.log_marginal - self.elbo_optimal

    @property
    def amortization_gap(self) -> float:
        return self.elbo_optimal - self.elbo_encoder

    @property
    def total_gap(self) -> float:
        return self.log_marginal - self.elbo_encoder

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "log_marginal": self.log_marginal,
                "elbo_encoder": self.elbo_encoder, "elbo_optimal": self.elbo_optimal,
                "approximation_gap": self.approximation_gap,
                "amortization_gap": self.amortization_gap, "total_gap": self.total_gap,
                "ess": self.ess, "elbo_encoder_se": self.elbo_encoder_se,
                "elbo_optimal_se": self.elbo_optimal_se, "khat": dict(self.comparison.khat)}


@seeded_call
def amortization_gap(vae: Any, x: Tensor, *, num_warmup: int = 500, num_samples: int = 500,
                     num_chains: int = 2, local_steps: int = 3000,
                     local_learning_rate: float = 0.02, num_importance: int = 5000,
                     seed: int = 0, device: str = "cpu") -> list[AmortizationGap]:
    """Approximation and amortization gaps of a VAE's encoder on each row of ``x``.

    Arguments:
        vae: A trained :class:`~ppl_gen.models.VAE` (any model whose ``model(x=...)`` and
            ``guide(x=...)`` have one local latent site ``"z"`` in plate ``"data"``).
        x: A few data points, (N, D); each is handled separately (N NUTS runs).
        num_warmup, num_samples, num_chains: NUTS settings per data point.
        local_steps, local_learning_rate: SVI for the per-datum Gaussian q* (AutoNormal,
            learning rate decayed 100-fold so the optimum is not blurred by Adam's jitter).
        num_importance: K for log p(x) and for each ELBO.
        seed: Seeds NUTS, SVI and the importance draws.
        device: Where NUTS and SVI run.

    Returns:
        One :class:`AmortizationGap` per row.
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (N, D), got {tuple(x.shape)}")
    beta = getattr(vae, "beta", 1.0)
    if beta != 1.0:
        raise ValueError(f"the gaps are about the ELBO (beta = 1); this model has beta="
                         f"{beta} — evaluate a copy with beta=1")
    vae.eval()
    for p in vae.parameters():  # the decoder is fixed: only z is inferred
        p.requires_grad_(False)
    try:
        return [_one(vae, x[i:i + 1], i, num_warmup, num_samples, num_chains, local_steps,
                     local_learning_rate, num_importance, seed, device)
                for i in range(x.shape[0])]
    finally:
        for p in vae.parameters():
            p.requires_grad_(True)


def _one(vae: Any, row: Tensor, index: int, num_warmup: int, num_samples: int,
         num_chains: int, local_steps: int, local_learning_rate: float,
         num_importance: int, seed: int, device: str) -> AmortizationGap:
    def posterior_model(x: Tensor) -> Any:
        """p(z, x) for this one x, decoder frozen: NUTS and the local SVI target."""
        return vae.model(x=x)

    def encoder_guide(x: Tensor) -> Any:
        return vae.guide(x=x)

    data = {"x": row}
    mcmc = fit(posterior_model, data, engine="nuts", num_warmup=num_warmup,
               num_samples=num_samples, num_chains=num_chains, seed=seed, device=device)
    local = fit(posterior_model, data, engine="svi", guide="normal", num_steps=local_steps,
                learning_rate=local_learning_rate,
                final_learning_rate=local_learning_rate / 100, init_scale=0.1, seed=seed,
                device=device)
    # The encoder as a (not fitted, already trained) SVI result, so that the foundation's
    # comparison treats both approximations alike.
    encoder = FitResult("svi", make_problem(posterior_model, data, guide=encoder_guide,
                                            device=device), SVIConfig(), seed, {},
                        guide=encoder_guide, param_state=None)
    comparison = compare_posteriors({"encoder": encoder, "optimal": local}, mcmc,
                                    num_samples=2000, num_psis_samples=1000, seed=seed)
    with param_scope(local.param_state), torch.no_grad():
        optimal = estimate_log_marginal(posterior_model, local.guide, data, num_importance,
                                        seed=seed)
    with torch.no_grad():  # the encoder's ELBO (its log p(x) estimate is not used)
        amortised = estimate_log_marginal(posterior_model, encoder_guide, data,
                                          num_importance, seed=seed)
    # log p(x) from q* only: the encoder's weights can be heavy-tailed (k-hat > 0.7), and
    # then its estimate is erratic in either direction.
    return AmortizationGap(index, float(optimal.log_marginal), float(amortised.elbo),
                           float(optimal.elbo), float(optimal.ess),
                           float(amortised.elbo_se), float(optimal.elbo_se), comparison, mcmc)
