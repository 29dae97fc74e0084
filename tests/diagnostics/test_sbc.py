"""Simulation-based calibration: the machinery against an exact sampler (uniform ranks) and
a deliberately biased one (detected), then ChEES itself on a correlated regression."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

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


@pytest.mark.slow  # a long statistical check: CI runs it (pytest -m slow)
def test_chees_is_calibrated_on_a_correlated_regression():
    """40 simulations (~1 s each): enough to catch a gross miscalibration; the 100+-simulation
    runs on eight schools with ChEES and NUTS are in benchmarks/sbc.py."""
    result = sbc(regression, DATA, engine="chees", num_simulations=40, num_bins=5,
                 num_chains=16, num_warmup=300, num_samples=300, compile=False)
    assert result.passed(0.01), result.summary()
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
