"""One adapter, both ArviZ lines (issue 15).

These tests run unchanged on ArviZ 0.x (Python 3.11: InferenceData) and on ArviZ 1.x
(Python >= 3.12: xarray.DataTree; CI's third leg). The oracles are closed forms — the
exact leave-one-out and WAIC of a conjugate normal model, a known Pareto tail — and ArviZ
0.x's own WAIC where it still has one.
"""

from __future__ import annotations

import math
import warnings

import matplotlib
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppl_gen
from ppl_gen.diagnostics import (
    ARVIZ_1,
    ELPD,
    ess,
    group_names,
    loo,
    to_inference_data,
    waic,
)
from ppl_gen.diagnostics.convert import psis_smooth
from ppl_gen.io import load_run, save_run

matplotlib.use("Agg")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import arviz as az

PRIOR_SD, NOISE_SD, N = 10.0, 1.0, 30


def normal_mean(y=None):
    """theta ~ N(0, 10^2); y_i ~ N(theta, 1): the posterior and LOO are closed forms."""
    theta = pyro.sample("theta", dist.Normal(0.0, PRIOR_SD))
    with pyro.plate("data", N):
        pyro.sample("y", dist.Normal(theta, NOISE_SD), obs=y)


def _y() -> torch.Tensor:
    return 3.0 + NOISE_SD * torch.randn(N, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def fitted():
    y = _y()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nuts = ppl_gen.fit(normal_mean, {"y": y}, engine="nuts", num_chains=4,
                           num_warmup=200, num_samples=500, seed=1, device="cpu")
        vi = ppl_gen.fit(normal_mean, {"y": y}, engine="svi", num_steps=300,
                         learning_rate=0.05, seed=1, device="cpu")
    return y.double().numpy(), nuts, to_inference_data(nuts), to_inference_data(
        vi, num_samples=500)


def _posterior(y: np.ndarray, drop: int | None = None) -> tuple[float, float]:
    keep = np.delete(y, drop) if drop is not None else y
    var = 1.0 / (1.0 / PRIOR_SD**2 + len(keep) / NOISE_SD**2)
    return var * keep.sum() / NOISE_SD**2, var


def _normal_logpdf(x: float, mean: float, var: float) -> float:
    return -0.5 * (x - mean) ** 2 / var - 0.5 * math.log(2 * math.pi * var)


def test_the_container_is_the_installed_lines_own(fitted):
    _, nuts, idata, _ = fitted
    if ARVIZ_1:
        import xarray as xr

        assert isinstance(idata, xr.DataTree)
    else:
        assert isinstance(idata, az.InferenceData)
    assert set(group_names(idata)) == {"posterior", "sample_stats", "log_likelihood",
                                       "posterior_predictive", "observed_data"}
    assert idata["posterior"]["theta"].dims == ("chain", "draw")
    assert idata["log_likelihood"]["y"].shape == (4, 500, N)
    np.testing.assert_array_equal(idata["posterior"]["theta"].values,
                                  nuts.samples["theta"].numpy())
    assert idata.attrs["engine"] == "nuts"


def _per_draw_density(nuts, y: np.ndarray) -> np.ndarray:
    """p(y_i | theta_s) shaped (chain, draw, i)."""
    theta = nuts.samples["theta"].double().numpy()
    return np.exp(-0.5 * (y - theta[..., None]) ** 2 / NOISE_SD**2) / math.sqrt(
        2 * math.pi * NOISE_SD**2)


def _mc_sd_of_log_mean(values: np.ndarray) -> float:
    """Delta-method Monte Carlo sd of log(mean(values)) for (chain, draw) draws, with the
    ESS of these values themselves."""
    return float(values.std() / values.mean() / math.sqrt(ess(values)))


def test_loo_matches_the_exact_leave_one_out_predictive(fitted):
    """Oracle: p(y_i | y_-i) = N(y_i | m_-i, 1 + s_-i^2) in closed form. Importance
    sampling estimates it by 1 / mean_s(1 / p(y_i | theta_s)); the tolerance is 4 Monte
    Carlo sds of that (per term, from the ESS of 1 / p), summed as if fully correlated."""
    y, nuts, idata, _ = fitted
    exact = []
    for i in range(N):
        mean, var = _posterior(y, drop=i)
        exact.append(_normal_logpdf(y[i], mean, NOISE_SD**2 + var))
    result = loo(idata)
    assert isinstance(result, ELPD) and result.kind == "loo"
    assert result.pointwise.shape == (N,) and result.pareto_k.shape == (N,)
    assert result.elpd == pytest.approx(result.pointwise.sum(), rel=1e-9)
    assert np.all(result.pareto_k < 0.7)
    dens = _per_draw_density(nuts, y)
    bound = sum(_mc_sd_of_log_mean(1.0 / dens[..., i]) for i in range(N))
    assert abs(result.elpd - sum(exact)) < 4 * bound, (result.elpd, sum(exact), bound)
    np.testing.assert_allclose(result.pointwise, exact, atol=4 * bound)


def test_waic_matches_its_closed_form(fitted):
    """Oracle: with theta | y ~ N(m, s^2), lppd_i = log N(y_i | m, 1 + s^2) and
    Var_theta log N(y_i | theta, 1) = (2 s^4 + 4 d_i^2 s^2) / 4 with d_i = y_i - m. The
    tolerance is 4 Monte Carlo sds per term, summed: log mean p by the delta method with the
    ESS of p; the variance term with the ESS of the centred squares of log p."""
    y, nuts, idata, _ = fitted
    m, s2 = _posterior(y)
    d = y - m
    lppd = np.array([_normal_logpdf(v, m, NOISE_SD**2 + s2) for v in y])
    var = (2 * s2**2 + 4 * d**2 * s2) / (4 * NOISE_SD**4)
    result = waic(idata)
    assert result.kind == "waic" and result.pareto_k is None
    dens = _per_draw_density(nuts, y)
    sd_lppd = sd_var = 0.0
    for i in range(N):
        log_p = np.log(dens[..., i])
        squares = (log_p - log_p.mean()) ** 2
        sd_lppd += _mc_sd_of_log_mean(dens[..., i])
        sd_var += float(squares.std() / math.sqrt(ess(squares)))
    assert abs(result.p - var.sum()) < 4 * sd_var, (result.p, var.sum(), sd_var)
    assert abs(result.elpd - (lppd - var).sum()) < 4 * (sd_lppd + sd_var)


@pytest.mark.skipif(ARVIZ_1, reason="ArviZ 1.x has no WAIC to compare with (the closed-form "
                    "test above covers this line)")
def test_waic_is_arviz_0x_waic(fitted):
    _, _, idata, _ = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = az.waic(idata, pointwise=True)
    ours = waic(idata)  # in float64; ArviZ keeps the draws' float32
    assert ours.elpd == pytest.approx(float(theirs.elpd_waic), rel=1e-5)
    assert ours.se == pytest.approx(float(theirs.se), rel=1e-4)
    assert ours.p == pytest.approx(float(theirs.p_waic), rel=1e-4)
    np.testing.assert_allclose(ours.pointwise, np.asarray(theirs.waic_i), rtol=1e-5)


def test_psis_recovers_a_known_pareto_tail():
    """Weights w = U^(-k) have a generalised-Pareto tail of shape k. With 100,000 draws
    PSIS fits ~950 tail draws: k-hat's sd is about (1 + k) / sqrt(950); gate 4 sds. Below
    the tail the smoothed log-weights are the raw ones up to the normalising constant."""
    rng = np.random.default_rng(7)
    for k in (0.3, 0.8):
        log_w = -k * np.log(rng.uniform(size=100_000))
        smoothed, khat = psis_smooth(log_w)
        assert abs(khat - k) < 4 * (1 + k) / math.sqrt(950), (k, khat)
        assert np.exp(smoothed).sum() == pytest.approx(1.0, rel=1e-9)
        body = log_w < np.quantile(log_w, 0.95)
        shift = smoothed[body] - log_w[body]
        np.testing.assert_allclose(shift, shift[0], atol=1e-9)
    with_zero = np.r_[rng.normal(size=999), -np.inf]
    smoothed, _ = psis_smooth(with_zero)
    assert smoothed[-1] == -np.inf and np.isfinite(smoothed[:-1]).all()


def test_psis_with_too_few_draws_says_so_the_same_way_on_both_lines():
    """Ten draws leave too short a tail to fit, and identical weights no tail at all:
    ArviZ 0.x then returns the normalised raw weights with k-hat = inf (arviz-stats raises
    instead); ppl_gen gives 0.x's answer on both lines, so such a fit reads "unreliable"."""
    rng = np.random.default_rng(3)
    for log_w in (rng.normal(size=10), np.zeros(50)):
        smoothed, khat = psis_smooth(log_w)
        assert khat == np.inf
        np.testing.assert_allclose(smoothed, log_w - np.log(np.exp(log_w).sum()), atol=1e-12)


def test_loo_by_observation_is_arvizs_loo_and_takes_ties(fitted):
    """The fallback for observations arviz-stats refuses (tied log-likelihoods) against
    ArviZ's own LOO with r_eff = 1; then a tied observation gets k-hat = inf, not an
    error."""
    from ppl_gen.diagnostics.convert import _loo_by_observation

    _, _, idata, _ = fitted
    values = np.asarray(idata["log_likelihood"]["y"], dtype=float).reshape(2000, N)
    ours = _loo_by_observation(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = az.loo(idata, pointwise=True, reff=1.0)
    elpd = float(theirs.elpd if ARVIZ_1 else theirs.elpd_loo)
    assert ours.elpd == pytest.approx(elpd, abs=1e-3)
    tied = values.copy()
    tied[:, 0] = -1e-9  # a saturated observation: the same log-likelihood at every draw
    result = _loo_by_observation(tied)
    assert result.pareto_k[0] == np.inf and result.warning
    assert np.isfinite(result.elpd) and result.pointwise[0] == pytest.approx(-1e-9)


def test_arviz_compare_and_plots_take_the_conversion(fitted):
    _, _, nuts_idata, vi_idata = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare({"nuts": nuts_idata, "svi": vi_idata})
    assert set(table.index) == {"nuts", "svi"}
    assert table["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    import matplotlib.pyplot as plt

    plt.close("all")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ARVIZ_1:
            az.plot_ppc_dist(nuts_idata)
            az.plot_loo_pit(nuts_idata)
        else:
            az.plot_ppc(nuts_idata)
            az.plot_loo_pit(nuts_idata, y="y")
    figures = [plt.figure(n) for n in plt.get_fignums()]
    assert len(figures) == 2
    for figure in figures:  # each plot drew something
        assert sum(len(a.lines) + len(a.collections) for a in figure.axes) > 0
    plt.close("all")


def test_a_run_folder_reads_back_on_this_line(fitted, tmp_path):
    _, nuts, idata, _ = fitted
    save_run(tmp_path / "run", nuts, idata=idata)
    back = load_run(tmp_path / "run")["idata"]
    assert type(back) is type(idata)
    assert set(group_names(back)) == set(group_names(idata))
    np.testing.assert_array_equal(back["posterior"]["theta"].values,
                                  idata["posterior"]["theta"].values)
    assert back["sample_stats"]["diverging"].dtype == bool
    assert back.attrs["engine"] == "nuts"
