import numpy as np
import pytest
import torch

import ppl_gen
from ppl_gen.diagnostics import (
    group_names,
    khat_verdict,
    loo,
    summarize,
    to_inference_data,
    waic,
)


@pytest.fixture(scope="module")
def nuts_result():
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    return ppl_gen.fit(model, ds, engine="nuts", num_warmup=100, num_samples=100,
                       num_chains=2, jit_compile=True, seed=0, device="cpu")


def test_mcmc_inference_data_has_every_group(nuts_result):
    idata = to_inference_data(nuts_result)
    assert set(group_names(idata)) == {"posterior", "sample_stats", "log_likelihood",
                                   "posterior_predictive", "observed_data"}
    assert idata.posterior["mu"].shape == (2, 100)
    assert idata.posterior["theta"].shape == (2, 100, 8)
    assert idata.log_likelihood["y"].shape == (2, 100, 8)
    assert idata.posterior_predictive["y"].shape == (2, 100, 8)
    np.testing.assert_array_equal(idata.observed_data["y"], [28, 8, -3, 7, -1, 1, 18, 12])
    assert idata.sample_stats["diverging"].dtype == bool


def test_pointwise_log_likelihood_is_the_normal_density(nuts_result):
    """Oracle: log N(y_j | theta_j, sigma_j) computed by hand at every draw."""
    idata = to_inference_data(nuts_result, posterior_predictive=False)
    theta = nuts_result.samples["theta"].numpy()
    y = np.array([28, 8, -3, 7, -1, 1, 18, 12.0])
    sigma = np.array([15, 10, 16, 11, 9, 11, 10, 18.0])
    expected = -0.5 * ((y - theta) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(idata.log_likelihood["y"].values, expected, rtol=1e-4,
                               atol=1e-4)
    assert np.isfinite(loo(idata).elpd) and np.isfinite(waic(idata).elpd)


def test_posterior_predictive_has_the_right_spread(nuts_result):
    idata = to_inference_data(nuts_result)
    replicated = idata.posterior_predictive["y"].values - nuts_result.samples["theta"].numpy()
    sigma = np.array([15, 10, 16, 11, 9, 11, 10, 18.0])
    # y_rep - theta ~ N(0, sigma): 200 draws per school give the sd to ~5%.
    np.testing.assert_allclose(replicated.reshape(-1, 8).std(0) / sigma, 1, atol=0.2)


def test_svi_and_em_results_convert(nuts_result):
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    vi = ppl_gen.fit(model, ds, engine="svi", num_steps=50, device="cpu")
    idata = to_inference_data(vi, num_samples=30)
    assert idata.posterior["theta"].shape == (1, 30, 8)  # deterministic site from guide draws
    assert "log_likelihood" in group_names(idata)
    mix = ppl_gen.load_dataset("gaussian_mixture")
    by_em = ppl_gen.fit(ppl_gen.MODELS["gmm"].from_dataset(mix), mix, engine="em",
                        device="cpu")
    idata = to_inference_data(by_em)
    assert idata.posterior["locs"].shape == (1, 1, 3, 2)
    np.testing.assert_allclose(idata.log_likelihood["x"].values.mean(),
                               by_em.info["mean_log_likelihood"], rtol=1e-5)
    with pytest.raises(ValueError, match="loo needs posterior draws"):
        loo(idata)


def test_summary_holds_what_the_issue_asks(nuts_result):
    summary = summarize(nuts_result)
    mu = summary["parameters"]["mu"]
    assert set(mu) == {"mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"}
    assert "theta[7]" in summary["parameters"]
    assert summary["divergences"] == int(nuts_result.sample_stats["diverging"].sum())
    mix = ppl_gen.load_dataset("gaussian_mixture")
    by_em = ppl_gen.fit(ppl_gen.MODELS["gmm"].from_dataset(mix), mix, engine="em",
                        device="cpu")
    em_summary = summarize(by_em)
    assert em_summary["log_likelihood"] == pytest.approx(list(by_em.history["log_likelihood"]))
    assert em_summary["parameters"]["locs[0, 1]"]["sd"] is None
    ds = ppl_gen.load_dataset("eight_schools")
    vi = ppl_gen.fit(ppl_gen.MODELS["eight_schools"].from_dataset(ds), ds, engine="svi",
                     num_steps=20, device="cpu")
    vi_summary = summarize(vi, num_samples=50)
    assert len(vi_summary["elbo"]) == 20 and set(vi_summary["parameters"]["mu"]) == {
        "mean", "sd", "psis_mean", "psis_sd", "psis_mcse_mean", "psis_mcse_sd", "psis_q05",
        "psis_q50", "psis_q95"}
    assert vi_summary["psis"]["verdict"] == khat_verdict(vi_summary["psis"]["khat"])
    assert vi_summary["psis"]["num_draws"] == 1000


def test_enumerated_mixture_log_likelihood_is_marginal():
    """For the Bayesian mixture the pointwise log-likelihood sums out z exactly: compare
    with log sum_k pi_k N(x | mu_k, Sigma_k) at the drawn parameters."""
    import pyro.distributions as dist

    from ppl_gen.inference import evaluate_draws, make_problem

    ds = ppl_gen.load_dataset("gaussian_mixture")
    model = ppl_gen.MODELS["bayesian_gmm"].from_dataset(ds)
    problem = make_problem(model, {"x": ds["x"][:20]}, device="cpu")
    traces = [problem.trace() for _ in range(3)]
    names = ["weights", "locs", "scales", "corr_tril"]
    draws = {k: torch.stack([t.nodes[k]["value"] for t in traces]) for k in names}
    got = evaluate_draws(problem, draws, posterior_predictive=False).log_likelihood["x"]
    for s in range(3):
        tril = draws["scales"][s].unsqueeze(-1) * draws["corr_tril"][s]
        mixture = dist.MixtureSameFamily(dist.Categorical(draws["weights"][s]),
                                         dist.MultivariateNormal(draws["locs"][s],
                                                                 scale_tril=tril))
        torch.testing.assert_close(got[s], mixture.log_prob(ds["x"][:20]), rtol=1e-4,
                                   atol=1e-4)
