"""Eight schools (Rubin 1981), the hierarchical model every sampler is tested on."""

from __future__ import annotations

from typing import Any

import pyro
import pyro.distributions as dist
from torch import Tensor

from .base import GenerativeModel

__all__ = ["EightSchools"]


class EightSchools(GenerativeModel):
    """Hierarchical normal model: mu ~ N(0, 5), tau ~ HalfCauchy(5), theta_j ~ N(mu, tau),
    y_j ~ N(theta_j, sigma_j) with known sigma_j (the posteriordb priors).

    Arguments:
        centered: Sample ``theta`` directly (the centered form, whose funnel geometry makes
            NUTS diverge) or as ``mu + tau * theta_tilde`` (non-centered, which samples well).
        mu_scale: Prior scale of mu.
        tau_scale: HalfCauchy scale of tau.

    References:
        Rubin (1981), "Estimation in parallel randomized experiments"; Papaspiliopoulos,
        Roberts & Sköld (2007), "A general framework for the parametrization of hierarchical
        models"; posteriordb ``eight_schools-eight_schools_noncentered``.
    """
    engines = ("svi", "nuts", "hmc", "chees", "pathfinder")

    observed = "y"
    data_keys = ("y", "sigma")
    density = "intractable"

    def __init__(self, *, centered: bool = False, mu_scale: float = 5.0,
                 tau_scale: float = 5.0) -> None:
        super().__init__()
        self.centered = centered
        self.mu_scale = mu_scale
        self.tau_scale = tau_scale

    def model(self, y: Tensor | None = None, sigma: Tensor | None = None, **_: Any) -> None:
        if sigma is None:
            raise ValueError("EightSchools.model needs the known standard errors `sigma`")
        zero = sigma.new_zeros(())
        mu = pyro.sample("mu", dist.Normal(zero, self.mu_scale))
        tau = pyro.sample("tau", dist.HalfCauchy(zero + self.tau_scale))
        with pyro.plate("data", sigma.shape[-1]):
            if self.centered:
                theta = pyro.sample("theta", dist.Normal(mu, tau))
            else:
                theta_tilde = pyro.sample("theta_tilde", dist.Normal(zero, 1.0))
                theta = pyro.deterministic("theta", mu + tau * theta_tilde)
            pyro.sample("y", dist.Normal(theta, sigma), obs=y)

    def extra_repr(self) -> str:
        return f"centered={self.centered}, " + super().extra_repr()
