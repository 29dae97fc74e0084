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
from ppl_gen.inference.pathfinder import _gaussian, lbfgs_path

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


def _bfgs_recursion(pairs, dim):
    """The inverse-Hessian estimate by m BFGS updates of theta I, oldest pair first, theta
    = s.y / y.y of the newest (Nocedal & Wright, eq. 6.17 and 7.20): the oracle for the
    compact form the library uses."""
    eye = torch.eye(dim, dtype=torch.float64)
    s, y = pairs[-1]
    h = eye * float(s @ y) / float(y @ y)
    for s, y in pairs:
        rho = 1.0 / float(y @ s)
        v = eye - rho * torch.outer(y, s)
        h = v.T @ h @ v + rho * torch.outer(s, s)
    return h


@pytest.mark.parametrize("dim, num_pairs", [(7, 3), (5, 6), (40, 6)])
def test_low_rank_gaussian_is_the_bfgs_inverse_hessian(dim, num_pairs):
    """Covariance = the BFGS recursion's matrix (also where 2m > D), mean = q - H g, the
    secant equation H y = s for the newest pair, log densities = torch's
    MultivariateNormal with that covariance, and draws with that covariance."""
    g = torch.Generator().manual_seed(dim)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    hessian = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)
    pairs = []
    for _ in range(num_pairs):  # pairs of a quadratic: y = A s, so s.y > 0
        step = torch.randn(dim, generator=g, dtype=torch.float64)
        pairs.append((step, hessian @ step))
    q = torch.randn(dim, generator=g, dtype=torch.float64)
    grad = torch.randn(dim, generator=g, dtype=torch.float64)
    gaussian = _gaussian(q, grad, pairs)
    exact = _bfgs_recursion(pairs, dim)
    torch.testing.assert_close(gaussian.covariance(), exact, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gaussian.mean, q - exact @ grad, rtol=1e-9, atol=1e-9)
    s_new, y_new = pairs[-1]
    torch.testing.assert_close(exact @ y_new, s_new, rtol=1e-9, atol=1e-9)
    x = torch.randn(50, dim, generator=g, dtype=torch.float64) * 2
    reference = torch.distributions.MultivariateNormal(gaussian.mean, exact)
    torch.testing.assert_close(gaussian.log_prob(x), reference.log_prob(x), rtol=1e-9,
                               atol=1e-9)
    draws = gaussian.sample(torch.randn(200000, dim, generator=g, dtype=torch.float64))
    centred = draws - gaussian.mean
    empirical = centred.T @ centred / draws.shape[0]
    sd = torch.sqrt(torch.diagonal(exact))
    # a covariance entry's sampling sd: sd_i sd_j sqrt((1 + rho^2) / n) <= sqrt(2 / n) sd_i sd_j
    bound = 5 * torch.outer(sd, sd) * (2 / draws.shape[0]) ** 0.5
    assert bool(((empirical - exact).abs() <= bound).all())


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


def test_pathfinder_at_many_dimensions_and_the_limit():
    """The low-rank form makes a 3,000-dimensional posterior cheap (dense, each iterate's
    covariance was 3,000^2 and its BFGS updates D^3); past ``MAX_DIM`` the refusal names
    the engines to use."""
    from ppl_gen.inference import pathfinder

    def wide(y):  # w_i ~ N(0, 1), y_i ~ N(w_i, 0.5): the posterior is N(0.8 y, 0.2) per site
        w = pyro.sample("w", dist.Normal(torch.zeros_like(y), 1.0).to_event(1))
        pyro.sample("y", dist.Normal(w, 0.5).to_event(1), obs=y)

    y = torch.randn(3000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReliabilityWarning)
        result = ppl_gen.fit(wide, {"y": y}, engine="pathfinder", seed=0, device="cpu",
                             num_paths=2, draws_per_path=500)
    draws = result.samples["w"].reshape(-1, 3000)
    # the Gaussian is exact here (isotropic precision 5: the L-BFGS scaling finds it), so
    # a coordinate's resampled mean errs by Monte Carlo alone: sd sqrt(1/n + 1/pool) in
    # posterior sds; 5 of them bound the largest of 3,000 coordinates
    pool = result.info["psis"]["num_draws"]
    error = (draws.mean(0) - 0.8 * y).abs() / 0.2 ** 0.5
    assert float(error.max()) < 5 * (1 / draws.shape[0] + 1 / pool) ** 0.5
    spread = draws.std(0) / 0.2 ** 0.5
    assert abs(float(spread.mean()) - 1) < 0.02
    big = torch.zeros(pathfinder.MAX_DIM + 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="100001 unconstrained dimensions.*refuses more "
                                         "than 100000: use engine='svi' or 'chees'"):
        ppl_gen.fit(wide, {"y": big}, engine="pathfinder", seed=0, device="cpu")


def test_pathfinder_extension_uses_the_svi_reports_thresholds():
    from ppl_gen.diagnostics import vi
    from ppl_gen.inference import pathfinder

    for name in ("AIM_PSIS_ESS", "EXTEND_SECONDS", "KHAT_LIMIT"):
        assert getattr(pathfinder, name) == getattr(vi, name), name
