"""Pathfinder (issue 16): exact on Gaussian posteriors, honest where it cannot fit."""

from __future__ import annotations

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppl_gen
from ppl_gen.diagnostics import ReliabilityWarning, group_names, summarize, to_inference_data
from ppl_gen.inference import make_problem
from ppl_gen.inference.batched import BatchedPotential
from ppl_gen.inference.pathfinder import lbfgs_path

D = 4


def _regression(seed=3):
    """y = X w + noise (sd 1), w ~ N(0, I), features correlated at 0.9: the posterior
    N(mean, cov) is exact and strongly correlated."""
    g = torch.Generator().manual_seed(seed)
    corr = 0.9 * torch.ones(D, D, dtype=torch.float64) + 0.1 * torch.eye(D, dtype=torch.float64)
    x = torch.randn(30, D, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(corr).T
    y = x @ torch.linspace(-1, 1, D, dtype=torch.float64) + torch.randn(
        30, generator=g, dtype=torch.float64)
    cov = torch.linalg.inv(torch.eye(D, dtype=torch.float64) + x.T @ x)
    return {"x": x, "y": y}, (cov @ x.T @ y).numpy(), cov.numpy()


def model(x, y):
    w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=x.dtype), 1.0).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal((x * w).sum(-1), 1.0), obs=y)


def test_lbfgs_finds_the_mode_of_a_quadratic():
    data, mean, cov = _regression()
    potential = BatchedPotential(make_problem(model, data, device="cpu"))
    q0 = torch.full((D,), 2.0, dtype=torch.float64)
    xs, gs, pairs, evaluations, stopped = lbfgs_path(potential, q0, history_size=6,
                                                     max_iterations=200, tolerance=1e-12)
    # the posterior mode of a Gaussian is its mean
    np.testing.assert_allclose(xs[-1].numpy(), mean, atol=1e-5)
    assert float(gs[-1].norm()) < 1e-4
    assert len(pairs) == len(xs) and len(pairs[-1]) <= 6


def test_pathfinder_recovers_a_correlated_gaussian_posterior():
    """The mean and covariance of the resampled draws equal the exact posterior's within
    4 Monte Carlo standard errors (from the PSIS effective sample size)."""
    data, mean, cov = _regression()
    result = ppl_gen.fit(model, data, engine="pathfinder", seed=0, device="cpu")
    assert result.kind == "approximation" and not result.warnings
    psis = result.info["psis"]
    assert psis["khat"] <= 0.7  # measured 0.53 (10,000 pooled draws)
    draws = result.samples["w"].reshape(-1, D).numpy()
    assert draws.shape == (1000, D)
    sd = np.sqrt(np.diag(cov))
    n = min(psis["ess"], len(draws))
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * sd / np.sqrt(n))
    corr = np.corrcoef(draws.T)
    exact_corr = cov / np.outer(sd, sd)
    assert np.abs(corr - exact_corr).max() < 0.1
    assert np.all(np.abs(draws.std(0) / sd - 1) < 4 * np.sqrt(1 / (2 * n)) + 0.02)
    again = ppl_gen.fit(model, data, engine="pathfinder", seed=0, device="cpu")
    torch.testing.assert_close(again.samples["w"], result.samples["w"])


def test_pathfinder_warns_where_a_gaussian_cannot_fit():
    def funnel():
        v = pyro.sample("v", dist.Normal(0.0, 3.0))
        scale = torch.exp(v / 2).unsqueeze(-1).expand(*v.shape, 8)
        pyro.sample("x", dist.Normal(0.0, scale).to_event(1))
        pyro.sample("obs", dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))

    with pytest.warns(ReliabilityWarning, match=r"Pathfinder's PSIS k-hat is [0-9.]+ \(> 0.7"):
        result = ppl_gen.fit(funnel, {}, engine="pathfinder", max_iterations=100, seed=0,
                             device="cpu")
    assert result.info["psis"]["verdict"] == "unreliable"
    # the funnel's density is unbounded as v -> -inf: L-BFGS never converges, and says so
    assert any("every Pathfinder path (4) stopped at max_iterations" in m
               and "the draws may be wrong" in m for m in result.warnings)


def test_pathfinder_results_summarise_and_convert():
    data, _, _ = _regression()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReliabilityWarning)
        result = ppl_gen.fit(model, data, engine="pathfinder", num_paths=2, num_draws=200,
                             draws_per_path=200, seed=1, device="cpu")
    summary = summarize(result)
    assert summary["kind"] == "approximation"
    assert set(summary["parameters"]["w[0]"]) == {"mean", "sd"}
    # 400 draws hold fewer than 2,000 effective ones: the report draws more (the same
    # number from each path) before it resamples
    psis = summary["psis"]
    assert psis["draws_added"] > 0 and psis["draws_added"] % 2 == 0
    assert psis["num_draws"] == 400 + psis["draws_added"]
    idata = to_inference_data(result, posterior_predictive=False)
    assert idata.posterior["w"].shape == (1, 200, D)
    assert "sample_stats" not in group_names(idata)
    assert len(result.info["paths"]) == 2
    with pytest.raises(ValueError, match="cannot checkpoint or resume"):
        ppl_gen.fit(model, data, engine="pathfinder", checkpoint="x.pt", device="cpu")


def test_chees_starts_from_pathfinder_by_default_and_uniform_on_request():
    data, mean, cov = _regression()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReliabilityWarning)
        default = ppl_gen.fit(model, data, engine="chees", num_warmup=50, num_samples=50,
                              compile=False, seed=0, device="cpu")
        uniform = ppl_gen.fit(model, data, engine="chees", num_warmup=50, num_samples=50,
                              compile=False, seed=0, device="cpu", init="uniform")
    assert default.info["init"]["init"] == "pathfinder"
    assert default.info["init"]["paths"] == 4 and default.info["init"]["gradient_evaluations"]
    assert uniform.info["init"] == {"init": "uniform"}


def test_nuts_pathfinder_starts_are_in_the_posterior_and_fall_back_with_the_reason():
    from ppl_gen.inference import mcmc

    data, mean, cov = _regression()
    problem = make_problem(model, data, device="cpu")
    starts, info = mcmc._pathfinder_starts(problem, 3, seed=0)
    assert info["init"] == "pathfinder" and len(starts) == 3
    sd = np.sqrt(np.diag(cov))
    for start in starts:  # every chain starts inside the posterior (w is unconstrained)
        assert np.all(np.abs(start["w"].numpy() - mean) < 5 * sd)

    def looping(x, y):  # torch.mv refuses a batch of draws: no batched potential
        w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=x.dtype), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(torch.mv(x, w), 1.0), obs=y)

    starts, info = mcmc._pathfinder_starts(make_problem(looping, data, device="cpu"), 2, 0)
    assert starts is None and info["init"] == "median" and info["pathfinder_failed"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReliabilityWarning)
        result = ppl_gen.fit(looping, data, engine="nuts", num_warmup=20, num_samples=20,
                             num_chains=1, init_strategy="pathfinder", seed=0, device="cpu")
    assert result.info["init"]["init"] == "median"


def test_nuts_and_autoguides_start_under_flat_improper_priors():
    """Stan's unstated priors (ImproperUniform) cannot be sampled: Pyro's median start
    failed at NUTS's first trace and autoguides' (found on posteriordb's regressions)."""
    data, _, _ = _regression()

    def flat(x, y):
        w = pyro.sample("w", dist.ImproperUniform(dist.constraints.real, (), (D,)))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal((x * w).sum(-1), 1.0), obs=y)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReliabilityWarning)
        nuts = ppl_gen.fit(flat, data, engine="nuts", num_chains=1, num_warmup=20,
                           num_samples=20, seed=0, device="cpu")
        svi = ppl_gen.fit(flat, data, engine="svi", guide="mvn", num_steps=20, seed=0,
                          device="cpu")
    assert nuts.samples["w"].shape == (1, 20, D)
    assert torch.isfinite(nuts.samples["w"]).all()
    assert np.isfinite(svi.history["loss"]).all()


def test_pathfinder_refuses_what_it_cannot_store_with_the_fix():
    def wide():
        pyro.sample("z", dist.Normal(torch.zeros(4001), 1.0).to_event(1))
        pyro.sample("obs", dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))

    with pytest.raises(ValueError, match="4001 unconstrained dimensions.*engine='svi' or "
                                         "'chees'"):
        ppl_gen.fit(wide, {}, engine="pathfinder", device="cpu")
