"""The VI reliability report every SVI result carries (issue 16): PSIS k-hat, PSIS-corrected
summaries, the convergence check — against exact posteriors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppl_gen
from ppl_gen.diagnostics import ReliabilityWarning, summarize, to_inference_data
from ppl_gen.diagnostics.vi import importance_draws, khat_verdict

N, D = 40, 2


def _regression(correlation: float, seed: int = 1):
    """y = X w + noise (sd 1), w ~ N(0, I): the posterior N(mu, S) is exact and its
    correlation follows the features'."""
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(torch.tensor([[1.0, correlation], [correlation, 1.0]]))
    x = torch.randn(N, D, generator=g, dtype=torch.float64) @ chol.T.double()
    y = x @ torch.tensor([1.0, -0.5], dtype=torch.float64) + torch.randn(
        N, generator=g, dtype=torch.float64)
    cov = torch.linalg.inv(torch.eye(D, dtype=torch.float64) + x.T @ x)
    mean = cov @ x.T @ y
    return {"x": x, "y": y}, mean.numpy(), cov.numpy()


def model(x, y):
    w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=x.dtype), 1.0).to_event(1))
    with pyro.plate("data", x.shape[0]):
        # (x * w).sum(-1) broadcasts over draws of w shaped (S, 1, D) on the left
        pyro.sample("y", dist.Normal((x * w).sum(-1), 1.0), obs=y)


def _fit(data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReliabilityWarning)
        return ppl_gen.fit(model, data, engine="svi", device="cpu", **options)


def test_weights_are_the_evidence_when_the_guide_is_the_exact_posterior():
    """Oracle: with q = p(w | y) every log-weight equals log p(y), in closed form; both the
    vectorised pass and the one-at-a-time loop."""
    data, mean, cov = _regression(0.5)
    x, y = data["x"], data["y"]
    evidence = float(dist.MultivariateNormal(torch.zeros(N, dtype=torch.float64),
                                             torch.eye(N, dtype=torch.float64)
                                             + x @ x.T).log_prob(y))
    loc, scale_tril = torch.as_tensor(mean), torch.linalg.cholesky(torch.as_tensor(cov))

    def exact_guide(x, y):
        pyro.sample("w", dist.MultivariateNormal(loc, scale_tril=scale_tril))

    def looping_model(x, y):  # x @ w[0, 0] runs batched but ignores the other draws
        w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=x.dtype), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(x @ w if w.dim() == 1 else x @ w[0, 0], 1.0),
                        obs=y)

    def failing_model(x, y):  # torch.mv refuses a batch of w: the loop path
        w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=x.dtype), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(torch.mv(x, w), 1.0), obs=y)

    for fn, vectorised in ((model, True), (looping_model, False), (failing_model, False)):
        result = ppl_gen.fit(fn, data, engine="svi", guide=exact_guide, num_steps=1,
                             psis_draws=0, device="cpu")
        imp = importance_draws(result, 200, seed=3)
        assert imp.vectorised is vectorised
        np.testing.assert_allclose(imp.log_weights, evidence, rtol=0, atol=1e-8)
        assert imp.draws["w"].shape == (200, D)
        assert imp.ess == pytest.approx(200, rel=1e-6)  # equal weights


def test_psis_corrected_moments_match_the_exact_posterior_under_a_mean_field_guide():
    """A mean-field guide on a correlated posterior (correlation 0.41) stopped early:
    its sds are too small; the corrected means and sds equal the exact ones within 4 of
    their Monte-Carlo standard errors."""
    data, mean, cov = _regression(-0.5)
    sd = np.sqrt(np.diag(cov))
    result = _fit(data, guide="normal", num_steps=300, learning_rate=0.05, psis_draws=4000)
    report = result.info["psis"]
    assert report["khat"] < 0.5 and report["verdict"] == "good"
    assert abs(cov[0, 1] / (sd[0] * sd[1])) > 0.4  # the posterior really is correlated
    rows = report["summary"]
    # the raw guide is overconfident (measured: 0.81 and 0.95 of the exact sds) ...
    assert min(rows[f"w[{j}]"]["sd"] / sd[j] for j in range(D)) < 0.9
    for j in range(D):
        row = rows[f"w[{j}]"]
        assert abs(row["psis_mean"] - mean[j]) < 4 * row["psis_mcse_mean"]  # ... corrected
        assert abs(row["psis_sd"] - sd[j]) < 4 * row["psis_mcse_sd"]
        assert row["psis_q05"] < mean[j] < row["psis_q95"]
    # ... and the result says that the guide's own sds are off
    assert any("guide's own numbers are off" in m and "sd of w[" in m
               for m in result.warnings)


def test_a_posterior_the_family_cannot_fit_warns():
    """Neal's funnel: a Gaussian guide cannot follow it; k-hat > 0.7 and the warning names
    the fix."""
    def funnel():
        v = pyro.sample("v", dist.Normal(0.0, 3.0))
        scale = torch.exp(v / 2).unsqueeze(-1).expand(*v.shape, 5)  # broadcasts over draws
        pyro.sample("x", dist.Normal(0.0, scale).to_event(1))
        pyro.sample("obs", dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))

    with pytest.warns(ReliabilityWarning, match=r"PSIS k-hat is [0-9.]+ \(> 0.7\)"):
        result = ppl_gen.fit(funnel, {}, engine="svi", guide="mvn", num_steps=500,
                             device="cpu")
    assert result.info["psis"]["khat"] > 0.7
    assert result.info["psis"]["verdict"] == "unreliable"
    summary = summarize(result, num_samples=100)
    assert summary["psis"]["khat"] == pytest.approx(result.info["psis"]["khat"])
    assert any("k-hat" in m for m in summary["warnings"])


def test_unconverged_fit_warns_and_a_converged_one_does_not():
    """The drift check: 60 steps from the prior median leave the guide moving; 3,000 steps
    with the default schedule (constant, then down to a tenth) converge on this posterior."""
    data, mean, cov = _regression(0.3)
    short = _fit(data, guide="mvn", num_steps=60, init="median")
    assert not short.info["convergence"]["converged"]
    assert any("had not converged" in m and "num_steps=120" in m for m in short.warnings)
    long = _fit(data, guide="mvn", num_steps=3000, learning_rate=0.02)
    check = long.info["convergence"]
    assert check["converged"] and check["mean_drift"] < 0.1, check
    assert not any("had not converged" in m for m in long.warnings)
    rows = long.info["psis"]["summary"]
    sd = np.sqrt(np.diag(cov))
    for j in range(D):  # a converged full-rank guide on a Gaussian posterior: near exact
        assert abs(rows[f"w[{j}]"]["mean"] - mean[j]) < 0.1 * sd[j]


def test_the_schedule_ends_at_a_tenth_and_is_what_the_optimiser_used():
    from ppl_gen.config import SVIConfig
    from ppl_gen.inference.svi import learning_rate_at

    config = SVIConfig(num_steps=100, learning_rate=0.01)
    rates = [learning_rate_at(config, t) for t in range(100)]
    assert rates[:50] == [0.01] * 50
    assert rates[-1] == pytest.approx(0.001 * 10 ** (1 / 50))
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    constant = SVIConfig(num_steps=100, decay_start=1.0)
    assert {learning_rate_at(constant, t) for t in range(100)} == {0.01}
    seen = []
    data, _, _ = _regression(0.3)
    _fit(data, guide="normal", num_steps=100, psis_draws=0,
         callback=lambda i, state, info: seen.append(
             state.svi.optimizer.param_groups[0]["lr"]))
    assert seen == pytest.approx(rates)


def test_report_skips_point_guides_and_can_be_switched_off():
    data, _, _ = _regression(0.3)
    delta = _fit(data, guide="delta", num_steps=50)
    assert "AutoDelta" in delta.info["psis"]["skipped"]
    off = _fit(data, guide="normal", num_steps=50, psis_draws=0)
    assert "switched off" in off.info["psis"]["skipped"]
    with pytest.raises(ValueError, match="psis_draws must be an integer >= 20"):
        _fit(data, psis_draws=5)


def test_psis_resampled_inference_data():
    data, mean, cov = _regression(-0.5)
    result = _fit(data, guide="normal", num_steps=300, learning_rate=0.05)
    raw = to_inference_data(result, num_samples=2000, log_likelihood=False,
                            posterior_predictive=False)
    fixed = to_inference_data(result, num_samples=2000, log_likelihood=False,
                              posterior_predictive=False, psis=True)
    assert fixed.attrs["psis_resampled"] == 1 and fixed.attrs["psis_verdict"] == "good"
    assert raw.attrs["psis_khat"] == pytest.approx(result.info["psis"]["khat"])
    sd = np.sqrt(np.diag(cov))
    raw_sd = np.asarray(raw.posterior["w"]).reshape(-1, D).std(0)
    fixed_sd = np.asarray(fixed.posterior["w"]).reshape(-1, D).std(0)
    # resampling 2,000 of 8,000 weighted draws: sds within ~6% of exact (their MC error)
    assert np.all(np.abs(fixed_sd / sd - 1) < 0.08), (fixed_sd, sd)
    assert np.min(raw_sd / sd) < 0.9
    assert khat_verdict(float("nan")) == "undefined"


def test_vae_results_say_why_there_is_no_khat():
    ds = ppl_gen.load_dataset("digits", binarize=True)
    vae = ppl_gen.MODELS["vae"].from_dataset(ds, latent_dim=2, hidden_dims=(16,))
    result = _fit_zoo(vae, ds)
    assert "amortised" in result.info["psis"]["skipped"]
    assert result.info["convergence"]["check"].startswith(("ELBO trend", "none"))
    assert math.isfinite(result.info["final_loss"])


def _fit_zoo(model_, ds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReliabilityWarning)
        return ppl_gen.fit(model_, ds, engine="svi", num_steps=30, device="cpu")


def _conjugate_model(y):
    """mu ~ N(0, 1), y_i ~ N(mu, 1): p(mu | y) = N(sum y / (n + 1), 1 / (n + 1))."""
    mu = pyro.sample("mu", dist.Normal(torch.zeros((), dtype=y.dtype), 1.0))
    with pyro.plate("data", y.shape[-1]):
        pyro.sample("y", dist.Normal(mu.unsqueeze(-1), 1.0), obs=y)


def test_vsbc_symmetric_for_an_exact_guide_and_not_for_a_biased_one():
    """VSBC's oracle: the exact posterior as the guide gives symmetric quantiles; the same
    guide shifted by half a posterior sd does not (Yao et al. 2018, Theorem 1)."""
    from ppl_gen.diagnostics import vsbc

    y = torch.zeros(4, dtype=torch.float64)

    def guide_with(shift):
        def guide(y):
            n = y.shape[-1]
            sd = (1.0 / (n + 1)) ** 0.5
            pyro.sample("mu", dist.Normal(y.sum(-1) / (n + 1) + shift * sd, sd))
        return guide

    exact = vsbc(_conjugate_model, {"y": y}, guide=guide_with(0.0), num_simulations=100,
                 num_draws=199, num_steps=1)
    biased = vsbc(_conjugate_model, {"y": y}, guide=guide_with(0.5), num_simulations=100,
                  num_draws=199, num_steps=1)
    assert exact.passed(), exact.summary()
    assert not biased.passed(), biased.summary()
    assert "ASYMMETRIC" in biased.summary()
    assert biased.quantiles["mu"].mean() < 0.4  # the truth sits low in a guide shifted up


def test_psis_resampling_is_refused_where_it_means_nothing():
    data, _, _ = _regression(0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReliabilityWarning)
        chees = ppl_gen.fit(model, data, engine="chees", num_warmup=20, num_samples=20,
                            num_chains=2, compile=False, device="cpu")
        delta = _fit(data, guide="delta", num_steps=20)
    with pytest.raises(ValueError, match="reweights a VI guide's draws"):
        to_inference_data(chees, psis=True)
    with pytest.raises(ValueError, match="not possible for this result.*AutoDelta"):
        to_inference_data(delta, psis=True)


@pytest.mark.slow  # ~25 s of fits; CI runs it (pytest -m slow)
def test_stop_early_stops_a_converged_fit_and_not_an_unconverged_one():
    """stop_early: the ELBO flat within 2 standard errors over the last quarter and the guide
    still (< 0.1 sd) between the last two quarter averages. A 20,000-step budget on this
    posterior stops far short of the budget with the exact means; at a step size too small
    to get anywhere it never fires, and the result says so."""
    data, mean, cov = _regression(0.3)
    early = _fit(data, guide="mvn", num_steps=20000, learning_rate=0.02, stop_early=True)
    check = early.info["convergence"]
    assert check["stopped_at"] is not None and check["stopped_at"] <= 10000, check
    assert early.info["num_steps"] == check["stopped_at"] < early.info["budget_steps"]
    assert len(early.history["loss"]) == check["stopped_at"]
    assert check["converged"], check
    rows = early.info["psis"]["summary"]
    sd = np.sqrt(np.diag(cov))
    for j in range(D):
        assert abs(rows[f"w[{j}]"]["mean"] - mean[j]) < 0.1 * sd[j], (j, rows)
    # from the prior median (a Pathfinder start would already be there, and still)
    crawl = _fit(data, guide="mvn", num_steps=2000, learning_rate=1e-5, stop_early=True,
                 init="median")
    check = crawl.info["convergence"]
    assert check["stopped_at"] is None and "never fired" in check["stop_reason"]
    assert not check["converged"] and check["trend_t"] > 10, check
    assert any("creeping one way" in m for m in crawl.warnings)
    assert crawl.info["num_steps"] == 2000
    with pytest.raises(ValueError, match="use log_every=1"):
        _fit(data, num_steps=100, stop_early=True, log_every=5)


@pytest.mark.slow  # three fits of ~1,500 steps (~9 s); CI runs it (pytest -m slow)
def test_stop_early_resumes_bit_identically(tmp_path):
    """The iterate blocks and the rule's looks live in the records, so a fit interrupted
    before the rule fired and resumed from its checkpoint stops at the same step with the
    same parameters as one that ran straight through."""
    data, _, _ = _regression(0.3)
    options = dict(guide="mvn", num_steps=6000, learning_rate=0.02, stop_early=True, seed=2,
                   init="median")  # a far start, so the rule fires late enough to cut
    straight = _fit(data, **options)
    stopped = straight.info["convergence"]["stopped_at"]
    assert stopped is not None and stopped > 1300

    def crash(index, state, info):
        if index == 1234:
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        _fit(data, checkpoint=tmp_path / "resume.pt", checkpoint_every=500, callback=crash,
             **options)
    resumed = _fit(data, resume=tmp_path / "resume.pt", **options)
    assert resumed.info["convergence"]["stopped_at"] == stopped
    assert np.array_equal(resumed.history["loss"], straight.history["loss"])
    a, b = straight.param_state["params"], resumed.param_state["params"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _model_without_broadcasting(x, y):
    w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=x.dtype), 1.0).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)  # x @ w: no batch of draws


def test_autoguides_start_at_pathfinders_gaussian_of_the_exact_posterior():
    """SVIConfig.init='pathfinder' (the default): before any step the full-rank guide is
    Pathfinder's Gaussian — on a correlated (0.9) conjugate posterior, means within 4 sd /
    sqrt(400) of the exact ones (400 pooled draws), sds within 20 %, the correlation within
    0.1; the mean-field guide's scales are the marginal sds. A model that does not
    vectorise starts at the prior median with the reason, and its fit is bit-identical to
    init='median' (the failed try leaves the random stream alone)."""
    from ppl_gen.config import SVIConfig
    from ppl_gen.inference import make_problem, svi

    data, mean, cov = _regression(0.9)
    sd = np.sqrt(np.diag(cov))
    problem = make_problem(model, data, device="cpu")
    state = svi.init(problem, SVIConfig(guide="mvn"), seed=0)
    how = svi.guide_start(state.guide)
    assert how["init"] == "pathfinder" and how["paths"] == 4
    posterior = state.guide.get_posterior()
    assert np.all(np.abs(posterior.loc.detach().numpy() - mean) < 4 * sd / np.sqrt(400))
    got = posterior.covariance_matrix.detach().numpy()
    assert np.allclose(np.sqrt(np.diag(got)), sd, rtol=0.2)
    exact_corr = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    assert abs(got[0, 1] / np.sqrt(got[0, 0] * got[1, 1]) - exact_corr) < 0.1
    meanfield = svi.init(problem, SVIConfig(guide="normal"), seed=0).guide
    assert np.allclose(meanfield.scales.w.detach().numpy(), sd, rtol=0.2)

    start = _fit(data, guide="mvn", num_steps=20)
    assert start.info["init"]["init"] == "pathfinder"
    plain = {k: v for k, v in data.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReliabilityWarning)
        a = ppl_gen.fit(_model_without_broadcasting, plain, engine="svi", guide="mvn",
                        num_steps=20, seed=4, device="cpu")
        b = ppl_gen.fit(_model_without_broadcasting, plain, engine="svi", guide="mvn",
                        num_steps=20, seed=4, device="cpu", init="median")
    assert a.info["init"]["init"] == "median"
    assert "does not vectorise" in a.info["init"]["pathfinder_skipped"] or \
        "fails when evaluated" in a.info["init"]["pathfinder_skipped"]
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])


def test_the_report_draws_again_when_too_few_draws_are_effective():
    """A mean-field guide on a 0.7-correlated posterior: 1,000 draws give k-hat <= 0.7 but
    ~300 effective draws, so the report draws again (aiming at 2,000 effective, and at
    least the 2,200 draws from which a k-hat of 0.7 is reliable) and says so; at 0.5
    correlation 4,000 draws are enough (~2,000 effective) and it does not."""
    data, _, _ = _regression(0.7)
    report = _fit(data, guide="normal", num_steps=300, learning_rate=0.05).info["psis"]
    extended = report["extended"]
    assert extended["from_draws"] == 1000 and extended["from_ess"] < 400
    assert extended["reason"].startswith("PSIS ESS")
    assert report["num_draws"] >= 2200 and report["ess"] > extended["from_ess"]
    data, _, _ = _regression(0.5)
    report = _fit(data, guide="normal", num_steps=300, learning_rate=0.05,
                  psis_draws=4000).info["psis"]
    assert "extended" not in report and report["num_draws"] == 4000
    assert report["ess"] >= 1000
