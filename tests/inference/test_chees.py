"""ChEES-HMC (the vectorised many-chain engine) against exact posteriors and posteriordb.

Tolerances are ESS-gated: means within 4 MCSE (ArviZ's, over all chains), variances within
4 standard errors of a variance estimate, sd(s²)/σ² ≈ sqrt(2 / ESS)."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppl_gen
from ppl_gen.diagnostics import ess, mcse, rhat
from ppl_gen.inference.batched import VectorizationError
from ppl_gen.inference.chees import warmup_windows
from tests.conftest import assert_within_mcse

REFERENCE = {"mu": 4.41, "tau": 3.60}  # posteriordb eight_schools_noncentered
REFERENCE_SE = {"mu": 0.033, "tau": 0.032}


def _check_gaussian(draws: np.ndarray, mean: np.ndarray, var: np.ndarray, label: str):
    """draws (C, S, D) against exact marginal means and variances."""
    for j in range(draws.shape[-1]):
        x = draws[..., j]
        assert rhat(x) < 1.02, f"{label}[{j}] r_hat {rhat(x):.3f}"
        assert_within_mcse(float(x.mean()), float(mean[j]), mcse(x), label=f"{label}[{j}]")
        n_eff = ess(x)
        relative = abs(float(x.var()) / float(var[j]) - 1)
        assert relative < 4 * math.sqrt(2 / n_eff) + 0.02, (label, j, relative, n_eff)


def test_eight_schools_noncentered_matches_posteriordb():
    ds = ppl_gen.load_dataset("eight_schools", dtype=torch.float64)
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds).double()
    result = ppl_gen.fit(model, ds, engine="chees", num_chains=16, num_warmup=400,
                         num_samples=400, seed=1, device="cpu")
    assert result.samples["theta"].shape == (16, 400, 8)  # deterministic site included
    for name, truth in REFERENCE.items():
        draws = result.samples[name].numpy()
        assert rhat(draws) < 1.01 and ess(draws) > 1000
        error = float(np.hypot(mcse(draws), REFERENCE_SE[name]))
        assert_within_mcse(float(draws.mean()), truth, error, label=name)
    stats = result.sample_stats
    assert stats["diverging"].shape == (16, 400) and stats["diverging"].dtype == bool
    assert np.all(stats["step_size"] == stats["step_size"][:, :1])  # fixed after warmup
    assert result.info["num_divergences"] == int(stats["diverging"].sum())


def test_conjugate_linear_regression_with_correlated_features():
    """Features correlated at 0.95: a strongly correlated posterior, known exactly."""
    ds = ppl_gen.load_dataset("linear_regression", dtype=torch.float64, num_data=40,
                              correlation=0.95)
    model = ppl_gen.MODELS["linear_regression"].from_dataset(ds).double()
    mean, cov = model.exact_posterior(ds["x"], ds["y"])
    result = ppl_gen.fit(model, ds, engine="chees", num_chains=16, num_warmup=400,
                         num_samples=400, seed=0, device="cpu")
    draws = torch.cat([result.samples["weight"], result.samples["bias"].unsqueeze(-1)], -1)
    _check_gaussian(draws.numpy(), mean.numpy(), cov.diagonal().numpy(), "linreg")


def test_100d_gaussian_with_scales_over_two_orders_of_magnitude():
    scales = torch.logspace(-1, 1, 100, dtype=torch.float64)
    y = torch.linspace(-1, 1, 100, dtype=torch.float64)

    def model(y):
        w = pyro.sample("w", dist.Normal(torch.zeros(100, dtype=torch.float64), 10.0)
                        .to_event(1))
        pyro.sample("y", dist.Normal(w, scales).to_event(1), obs=y)

    precision = 1 / 100.0 + 1 / scales**2
    mean, var = (y / scales**2) / precision, 1 / precision
    result = ppl_gen.fit(model, {"y": y}, engine="chees", num_chains=32, num_warmup=500,
                         num_samples=300, seed=0, device="cpu")
    _check_gaussian(result.samples["w"].numpy(), mean.numpy(), var.numpy(), "w")


def test_agrees_with_pyro_nuts_on_logistic_regression():
    ds = ppl_gen.load_dataset("breast_cancer", dtype=torch.float64)
    data = {"x": ds["x"][:, :3], "y": ds["y"]}
    model = ppl_gen.MODELS["logistic_regression"].from_dataset(data).double()
    nuts = ppl_gen.fit(model, data, engine="nuts", num_warmup=200, num_samples=300,
                       num_chains=2, seed=0, device="cpu")
    chees = ppl_gen.fit(model, data, engine="chees", num_chains=16, num_warmup=300,
                        num_samples=300, seed=0, device="cpu")
    for name in ("weight", "bias"):
        a = chees.samples[name].reshape(*chees.samples[name].shape[:2], -1).numpy()
        b = nuts.samples[name].reshape(*nuts.samples[name].shape[:2], -1).numpy()
        for j in range(a.shape[-1]):
            error = math.hypot(mcse(a[..., j]), mcse(b[..., j]))
            assert_within_mcse(float(a[..., j].mean()), float(b[..., j].mean()), error,
                               label=f"{name}[{j}]")


def test_same_seed_same_draws_and_chains_differ():
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    runs = [ppl_gen.fit(model, ds, engine="chees", num_chains=4, num_warmup=30,
                        num_samples=20, seed=5, device="cpu") for _ in range(2)]
    torch.testing.assert_close(runs[0].samples["mu"], runs[1].samples["mu"])
    assert not torch.equal(runs[0].samples["mu"][0], runs[0].samples["mu"][1])


def test_model_that_mixes_chains_is_refused_naming_the_site():
    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        # .mean() over everything pools the chains' values: not vectorisable
        pyro.sample("y", dist.Normal(mu.mean(), 1.0).expand([len(y)]).to_event(1), obs=y)

    with pytest.raises(VectorizationError, match="site 'y'.*engine='nuts'"):
        ppl_gen.fit(model, {"y": torch.zeros(3)}, engine="chees", num_chains=4,
                    num_warmup=5, num_samples=5, device="cpu")


def test_enumerated_discrete_sites_are_refused():
    ds = ppl_gen.load_dataset("gaussian_mixture")
    model = ppl_gen.MODELS["bayesian_gmm"].from_dataset(ds)
    with pytest.raises(ValueError, match="enumeration.*engine='nuts'"):
        ppl_gen.fit(model, ds, engine="chees", num_chains=2, num_warmup=2, num_samples=2,
                    device="cpu")


def test_stan_warmup_windows():
    assert warmup_windows(1000) == (75, [100, 150, 250, 450, 950])
    assert warmup_windows(100) == (15, [90])
    assert warmup_windows(10) == (10, [])


def test_bad_settings():
    with pytest.raises(ValueError, match="num_chains"):
        ppl_gen.fit(ppl_gen.MODELS["eight_schools"].from_dataset(
            ppl_gen.load_dataset("eight_schools")), ppl_gen.load_dataset("eight_schools"),
            engine="chees", num_chains=1)
    with pytest.raises(ValueError, match="unknown chees option"):
        ppl_gen.fit(ppl_gen.MODELS["eight_schools"].from_dataset(
            ppl_gen.load_dataset("eight_schools")), ppl_gen.load_dataset("eight_schools"),
            engine="chees", max_tree_depth=5)
