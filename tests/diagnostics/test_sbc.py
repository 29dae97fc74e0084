"""Simulation-based calibration: the machinery against an exact sampler (uniform ranks) and
a deliberately biased one (detected), then ChEES itself on a correlated regression."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from ppl_gen.diagnostics import sbc

X = torch.linspace(-1, 1, 20, dtype=torch.float64) + 3.0  # un-centred: corr(a, b) ~ -0.95
NOISE = 0.5


def regression(x, y):
    a = pyro.sample("a", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
    b = pyro.sample("b", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal(a + b * x, NOISE), obs=y)


DATA = {"x": X, "y": torch.zeros(20, dtype=torch.float64)}


def exact_sampler(shrink: float = 1.0):
    """Draws (4 chains x 250) from the exact conjugate posterior, sds scaled by shrink."""

    def sample(model, data, seed):
        design = torch.stack([torch.ones_like(data["x"]), data["x"]], -1)
        cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64)
                               + design.T @ design / NOISE ** 2)
        mean = cov @ design.T @ data["y"] / NOISE ** 2
        gen = torch.Generator().manual_seed(10_000 + seed)
        z = torch.randn(4, 250, 2, generator=gen, dtype=torch.float64)
        draws = mean + shrink * z @ torch.linalg.cholesky(cov).T
        return {"a": draws[..., 0], "b": draws[..., 1]}

    return sample


def test_exact_posterior_draws_have_uniform_ranks():
    result = sbc(regression, DATA, engine=exact_sampler(), num_simulations=200, num_bins=10)
    assert set(result.ranks) == {"a", "b"}
    assert all(r.min() >= 0 and r.max() <= result.num_draws for r in result.ranks.values())
    assert result.passed(0.01), result.summary()


def test_a_too_narrow_sampler_is_detected():
    """sds at 0.6x the truth (what skipping a correction or a mean-field fit can do): the
    true values fall outside the draws too often, a U-shaped rank histogram."""
    result = sbc(regression, DATA, engine=exact_sampler(0.6), num_simulations=200,
                 num_bins=10)
    assert not result.passed(0.01), result.summary()
    ranks = result.ranks["b"]
    assert np.mean((ranks < 10) | (ranks > 89)) > 0.3  # 0.2 if uniform


def exact_quantiles(result) -> dict[str, np.ndarray]:
    """Per simulation, the exact posterior quantile of the true value (the conjugate
    posterior of the simulated data): the rank a perfect sampler's draws give it, on
    average."""
    design = np.stack([np.ones(len(X)), X.numpy()], -1)
    cov = np.linalg.inv(np.eye(2) + design.T @ design / NOISE ** 2)
    out = {"a": [], "b": []}
    for i, simulated in enumerate(result.simulated):
        mean = cov @ design.T @ simulated["y"] / NOISE ** 2
        for j, name in enumerate("ab"):
            out[name].append(stats.norm.cdf((result.truths[name][i] - mean[j])
                                            / math.sqrt(cov[j, j])))
    return {k: np.asarray(v) for k, v in out.items()}


def paired_z(result) -> dict[str, float]:
    """How far the sampler's ranks sit from the exact posterior quantiles, in standard
    errors: D = mean |rank / L - u*| against its distribution when the L draws are
    independent exact posterior draws (rank ~ Binomial(L, u*), mean and variance summed
    exactly over the binomial). Pairing each simulation with its exact answer removes
    the simulations' own luck, which a rank histogram of 40 simulations cannot."""
    quantiles, L = exact_quantiles(result), result.num_draws
    ks = np.arange(L + 1) / L
    out = {}
    for name, u in quantiles.items():
        ranks = result.ranks[name]
        pmf = stats.binom.pmf(np.arange(L + 1)[None, :], L, u[:, None])
        gap = np.abs(ks[None, :] - u[:, None])
        mean = (pmf * gap).sum(1)
        var = (pmf * gap ** 2).sum(1) - mean ** 2
        observed = np.abs(ranks / L - u).mean()
        out[name] = float((observed - mean.mean()) * len(u) / math.sqrt(var.sum()))
    return out


def test_paired_check_against_the_exact_posterior_has_power():
    """The gate the ChEES check below uses, on the exact sampler (z near 0) and on one
    whose sds are 0.6x the truth: z 7.7 here, while a 5-bin rank histogram of the same 40
    simulations does not see it (chi-square p = 0.31 and 0.56)."""
    exact = sbc(regression, DATA, engine=exact_sampler(), num_simulations=40, num_bins=5)
    assert max(abs(z) for z in paired_z(exact).values()) < 4, paired_z(exact)
    narrow = sbc(regression, DATA, engine=exact_sampler(0.6), num_simulations=40,
                 num_bins=5)
    assert min(paired_z(narrow).values()) > 4, paired_z(narrow)
    assert narrow.passed(0.01)  # the histogram alone misses it at this size


@pytest.mark.slow  # a long statistical check: CI runs it (pytest -m slow)
def test_chees_is_calibrated_on_a_correlated_regression():
    """40 simulations (~2 s each), each rank paired with the exact posterior quantile of
    its simulation (z < 4 per parameter: a 0.6x-sd sampler scores 7.7, ChEES -0.4..0.1).
    The rank histogram is only a gross check here (Bonferroni p > 0.001): on these 40
    simulations even the exact sampler's histogram has p = 0.009 for b, and one of 0.6x
    sds passes it; the 100+-simulation histograms on eight schools are in
    benchmarks/sbc.py."""
    result = sbc(regression, DATA, engine="chees", num_simulations=40, num_bins=5,
                 num_chains=16, num_warmup=300, num_samples=300, compile=False)
    z = paired_z(result)
    assert max(z.values()) < 4, (z, result.summary())
    assert result.passed(0.001), result.summary()
    assert len(result.warned) <= 4, result.summary()  # the fits themselves mostly clean
    fig = result.plot()
    assert len(fig.axes) == 4


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at most 2 bins"):
        sbc(regression, DATA, engine=exact_sampler(), num_simulations=10, num_bins=5)
    def rescaled(x, y):  # the observed tensor is not the argument itself
        regression(x, y * 1.0)

    with pytest.raises(ValueError, match="pass observed="):
        sbc(rescaled, DATA, engine=exact_sampler(), num_simulations=20, num_bins=2)
    with pytest.raises(ValueError, match="not observed sites"):
        sbc(regression, DATA, engine=exact_sampler(), num_simulations=20, num_bins=2,
            observed={"y": "obs"})


def test_deterministic_sites_are_not_resimulated():
    """The zoo's eight schools has a pyro.deterministic theta: only y is simulated, so the
    simulated data keep the data's shape (Pyro's uncondition would resample theta too)."""
    import ppl_gen

    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    seen = []

    def record(model_fn, data, seed):
        seen.append(data["y"].shape)
        return {"mu": torch.zeros(2, 60, dtype=torch.float32),
                "tau": torch.ones(2, 60), "theta_tilde": torch.zeros(2, 60, 8)}

    result = sbc(model.model, {"y": ds["y"], "sigma": ds["sigma"]}, engine=record,
                 num_simulations=10, num_bins=2, num_draws=50)
    assert seen == [ds["y"].shape] * 10
    assert "theta[0]" not in result.ranks and "theta_tilde[7]" in result.ranks
