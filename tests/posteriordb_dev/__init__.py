"""The eight posteriordb development posteriors as plain Pyro functions, with their
reference summaries and the comparison the posteriordb-dev README prescribes.

Each model follows its ``model.stan`` (beside its data in ``data/NAME/``) exactly: the same
transformed data, constraints and priors; Stan's unstated priors are improper flat priors
(:class:`pyro.distributions.ImproperUniform`), as Stan gives them. Every model broadcasts
over extra batch dimensions on the left, so the vectorised ChEES engine can run it.

Data and Stan programs: posteriordb (BSD 3-Clause, see ``data/LICENCE.md``); Magnusson,
Bürkner & Vehtari, "posteriordb: a set of posteriors for Bayesian inference and
probabilistic programming".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

DATA = Path(__file__).parent / "data"
DTYPE = torch.float64


def _t(values: Any) -> torch.Tensor:
    return torch.as_tensor(values, dtype=DTYPE)


def _flat(support: Any, size: int | None = None) -> dist.Distribution:
    event = () if size is None else (size,)
    return dist.ImproperUniform(support, batch_shape=(), event_shape=event)


def _regression(columns: list[torch.Tensor], y: torch.Tensor,
                sigma_prior: Callable[[], dist.Distribution] | None = None,
                beta_prior: dist.Distribution | None = None):
    """y ~ normal(X beta, sigma) with X = [columns], beta and sigma flat unless given."""
    design = torch.stack(columns, -1)  # (N, K)
    k = design.shape[-1]

    def model(design, y):
        beta = pyro.sample("beta", beta_prior if beta_prior is not None
                           else _flat(constraints.real, k))
        sigma = pyro.sample("sigma", sigma_prior() if sigma_prior is not None
                            else _flat(constraints.positive))
        # beta is (..., 1, K) under an outer plate: the 1 is the data plate's slot
        mean = (beta.unsqueeze(-2) * design).sum(-1) if beta.dim() == 1 else \
            (beta * design).sum(-1)
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y", dist.Normal(mean, sigma), obs=y)

    return model, {"design": design, "y": y}


def earnings_logearn_height_male(d):
    one = torch.ones(d["N"], dtype=DTYPE)
    return _regression([one, _t(d["height"]), _t(d["male"])], _t(d["earn"]).log())


def earnings_logearn_interaction(d):
    one, height, male = torch.ones(d["N"], dtype=DTYPE), _t(d["height"]), _t(d["male"])
    return _regression([one, height, male, height * male], _t(d["earn"]).log())


def kidiq_kidscore_interaction(d):
    one, hs, iq = torch.ones(d["N"], dtype=DTYPE), _t(d["mom_hs"]), _t(d["mom_iq"])
    # sigma ~ cauchy(0, 2.5) on <lower=0>: a half-Cauchy up to a constant
    return _regression([one, hs, iq, hs * iq], _t(d["kid_score"]),
                       sigma_prior=lambda: dist.HalfCauchy(_t(2.5)))


def kidiq_with_mom_work_kidscore_interaction_c(d):
    one, hs, iq = torch.ones(d["N"], dtype=DTYPE), _t(d["mom_hs"]), _t(d["mom_iq"])
    hs, iq = hs - hs.mean(), iq - iq.mean()
    return _regression([one, hs, iq, hs * iq], _t(d["kid_score"]))


def mesquite_logmesquite_logvas(d):
    d1, d2, ch = _t(d["diam1"]), _t(d["diam2"]), _t(d["canopy_height"])
    columns = [torch.ones(d["N"], dtype=DTYPE), (d1 * d2 * ch).log(), (d1 * d2).log(),
               (d1 / d2).log(), _t(d["total_height"]).log(), _t(d["density"]).log(),
               _t(d["group"])]
    return _regression(columns, _t(d["weight"]).log())


def nes2000_nes(d):
    age = torch.as_tensor(d["age_discrete"])
    columns = [torch.ones(d["N"], dtype=DTYPE), _t(d["real_ideo"]), _t(d["race_adj"]),
               (age == 2).to(DTYPE), (age == 3).to(DTYPE), (age == 4).to(DTYPE),
               _t(d["educ1"]), _t(d["gender"]), _t(d["income"])]
    return _regression(columns, _t(d["partyid7"]))


def sblri_blr(d):
    x = _t(d["X"])
    # normal_lpdf(sigma | 0, 10) on <lower=0>: a half-normal up to a constant
    return _regression(list(x.T), _t(d["y"]),
                       sigma_prior=lambda: dist.HalfNormal(_t(10.0)),
                       beta_prior=dist.Normal(torch.zeros(d["D"], dtype=DTYPE), 10.0)
                       .to_event(1))


def _log_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., K, K) x (..., K, K) in the log semiring."""
    return torch.logsumexp(a.unsqueeze(-1) + b.unsqueeze(-3), dim=-2)


def bball_drive_event_0_hmm_drive_0(d):
    """Two-state HMM with exponential emissions, states summed out by the forward
    algorithm, written as a log-semiring product of per-step matrices reduced pairwise
    (depth log2 N instead of N sequential steps)."""
    u, v, alpha = _t(d["u"]), _t(d["v"]), _t(d["alpha"])
    k = d["K"]

    def model(u, v):
        theta1 = pyro.sample("theta1", dist.Dirichlet(alpha[0]))
        theta2 = pyro.sample("theta2", dist.Dirichlet(alpha[1]))
        phi = pyro.sample("phi", _flat(constraints.positive_ordered_vector, k))
        lam = pyro.sample("lambda", _flat(constraints.positive_ordered_vector, k))
        prior_loc = _t([0.0, 3.0])
        pyro.factor("phi_prior", dist.Normal(prior_loc, 1.0).log_prob(phi).sum(-1))
        pyro.factor("lambda_prior", dist.Normal(prior_loc, 1.0).log_prob(lam).sum(-1))
        # emission log-density per step and state: (..., N, K)
        emit = (dist.Exponential(phi.unsqueeze(-2)).log_prob(u.unsqueeze(-1))
                + dist.Exponential(lam.unsqueeze(-2)).log_prob(v.unsqueeze(-1)))
        log_theta = torch.stack([theta1, theta2], -2).log()  # (..., K, K), rows j -> k
        # step t >= 2: M_t[j, k] = log theta[j, k] + emit[t, k]
        steps = log_theta.unsqueeze(-3) + emit[..., 1:, :].unsqueeze(-2)  # (..., N-1, K, K)
        while steps.shape[-3] > 1:
            if steps.shape[-3] % 2:
                eye = torch.full((k, k), -math.inf, dtype=DTYPE).fill_diagonal_(0.0)
                steps = torch.cat([steps, eye.expand(*steps.shape[:-3], 1, k, k)], -3)
            steps = _log_matmul(steps[..., 0::2, :, :], steps[..., 1::2, :, :])
        total = torch.logsumexp(emit[..., 0, :].unsqueeze(-1) + steps[..., 0, :, :], -2)
        pyro.factor("forward", torch.logsumexp(total, -1))

    return model, {"u": u, "v": v}


BUILDERS = {
    "earnings-logearn_height_male": earnings_logearn_height_male,
    "earnings-logearn_interaction": earnings_logearn_interaction,
    "kidiq-kidscore_interaction": kidiq_kidscore_interaction,
    "kidiq_with_mom_work-kidscore_interaction_c": kidiq_with_mom_work_kidscore_interaction_c,
    "mesquite-logmesquite_logvas": mesquite_logmesquite_logvas,
    "nes2000-nes": nes2000_nes,
    "sblri-blr": sblri_blr,
    "bball_drive_event_0-hmm_drive_0": bball_drive_event_0_hmm_drive_0,
}
NAMES = tuple(BUILDERS)


@dataclass(frozen=True)
class Posterior:
    name: str
    model: Callable[..., None]
    data: dict[str, torch.Tensor]
    reference: dict[str, Any]


def load(name: str) -> Posterior:
    """The model, its data arguments and the reference summary of one posterior."""
    folder = DATA / name
    raw = json.loads((folder / "data.json").read_text())
    model, data = BUILDERS[name](raw)
    reference = json.loads((folder / "reference.json").read_text())
    return Posterior(name, model, data, reference)


def flatten(samples: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Draws (chain, draw, ...) per site -> Stan's 1-based scalar names (``beta[1]``)."""
    out = {}
    for site, value in samples.items():
        array = np.asarray(value)
        if array.ndim == 2:
            out[site] = array
            continue
        for j in range(array.shape[-1]):
            out[f"{site}[{j + 1}]"] = array[..., j]
    return out


def compare(posterior: Posterior, samples: dict[str, torch.Tensor]) -> dict[str, dict]:
    """The README's comparison per parameter: z of the mean (reference MCSE and ours),
    sd ratio, our bulk ESS and whether all three hold (|z| < 4, sd ratio in [0.8, 1.25],
    ESS >= 100)."""
    import arviz as az

    draws = flatten(samples)
    rows = {}
    for name in posterior.reference["parameter_names"]:
        ref = posterior.reference["summary"][name]
        x = draws[name]
        ess = float(az.ess(x))
        sd = float(x.std(ddof=1))
        mcse = sd / math.sqrt(max(ess, 1.0))
        z = (float(x.mean()) - ref["mean"]) / math.hypot(ref["mcse_mean_approx"], mcse)
        ratio = sd / ref["sd"]
        rows[name] = {"z": z, "sd_ratio": ratio, "ess": ess,
                      "ok": abs(z) < 4 and 0.8 <= ratio <= 1.25 and ess >= 100}
    return rows
