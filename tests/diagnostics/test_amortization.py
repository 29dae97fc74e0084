"""The amortization gap on a linear-Gaussian VAE, where everything has a closed form: the
posterior p(z | x) is Gaussian (diagonal when W's columns are orthogonal), so q* is exact
(approximation gap 0) and the total gap is KL(q_encoder || p(z | x))."""

import pytest
import torch

from ppl_gen.diagnostics import amortization_gap
from ppl_gen.models import VAE
from tests.conftest import assert_within_mcse


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    vae = VAE(4, 2, hidden_dims=(), likelihood="gaussian", noise="isotropic")
    weight = torch.linalg.qr(torch.randn(4, 4))[0][:, :2] * torch.tensor([2.0, 1.0])
    with torch.no_grad():
        vae.decoder[0].weight.copy_(weight)
        vae.decoder[0].bias.zero_()
    vae.decoder_scale = torch.tensor(0.5)  # the encoder stays at its random start
    x = torch.randn(2, 2) @ weight.T + 0.5 * torch.randn(2, 4)
    gaps = amortization_gap(vae, x, num_warmup=300, num_samples=500, num_chains=2,
                            local_steps=1500, num_importance=5000, seed=0)
    precision = weight.T @ weight / 0.25 + torch.eye(2)
    cov = torch.linalg.inv(precision)
    mean = x @ weight @ cov / 0.25
    marginal = torch.distributions.MultivariateNormal(torch.zeros(4), weight @ weight.T
                                                      + 0.25 * torch.eye(4)).log_prob(x)
    with torch.no_grad():
        loc, scale = vae.encode(x)
    kl = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(loc, torch.diag_embed(scale**2)),
        torch.distributions.MultivariateNormal(mean, cov))
    return gaps, mean, cov, marginal, kl


@pytest.mark.slow  # a 20 s shared NUTS fixture: CI runs it (pytest -m slow)
def test_log_marginal_and_gaps_match_the_closed_forms(setup):
    gaps, _, _, marginal, kl = setup
    for gap in gaps:
        i = gap.index
        # q* is the exact posterior: the K=5000 estimate has ESS ~K and tiny error.
        assert gap.log_marginal == pytest.approx(float(marginal[i]), abs=0.01)
        assert 0 <= gap.approximation_gap < 0.01
        # total gap = KL(q_enc || posterior) up to the encoder ELBO's Monte-Carlo error.
        assert abs(gap.total_gap - float(kl[i])) < 4 * gap.elbo_encoder_se + 0.01
        assert gap.amortization_gap > 1.0  # an untrained encoder is far from q*


@pytest.mark.slow  # a 20 s shared NUTS fixture: CI runs it (pytest -m slow)
def test_nuts_reference_matches_the_exact_posterior(setup):
    gaps, mean, cov, _, _ = setup
    for gap in gaps:
        rows = {r["parameter"]: r for r in gap.comparison.rows
                if r["approximation"] == "optimal"}
        for j in range(2):
            row = rows[f"z[0, {j}]"]
            assert_within_mcse(row["mcmc_mean"], float(mean[gap.index, j]), row["mcmc_mcse"])
            assert row["mcmc_sd"] == pytest.approx(float(cov[j, j].sqrt()), rel=0.15)
        assert gap.comparison.khat["optimal"] < 0.5


def test_beta_vae_is_refused():
    with pytest.raises(ValueError, match="beta"):
        amortization_gap(VAE(4, 2, beta=2.0), torch.zeros(1, 4))
