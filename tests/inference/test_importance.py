"""The importance-sampling marginal likelihood against closed forms."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_gen.inference.importance import estimate_log_marginal, log_weights

X = torch.tensor([-1.5, 0.0, 0.7, 2.0])


def model(x):
    """z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(0, 2), p(z | x) = N(x / 2, 1 / 2)."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def exact_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x / 2, math.sqrt(0.5)))


def prior_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))


def exact_log_marginal(x):
    return dist.Normal(0.0, math.sqrt(2.0)).log_prob(x)


def test_exact_posterior_proposal_gives_the_exact_answer_with_any_k():
    """With q = p(z | x) every weight equals p(x): the estimate is exact, the gap 0, ESS K."""
    estimate = estimate_log_marginal(model, exact_guide, {"x": X}, num_samples=7)
    torch.testing.assert_close(estimate.log_marginal, exact_log_marginal(X))
    torch.testing.assert_close(estimate.elbo, exact_log_marginal(X))
    torch.testing.assert_close(estimate.ess, torch.full((4,), 7.0))


def test_prior_proposal_converges_and_elbo_is_the_closed_form():
    """With q = p(z), ELBO = E[log p(x | z)] = log N(x; 0, 1) - 1/2 in closed form, and
    the K-sample estimate approaches log p(x) from below."""
    estimate = estimate_log_marginal(model, prior_guide, {"x": X}, num_samples=20000,
                                     particle_chunk=5000)
    elbo = dist.Normal(0.0, 1.0).log_prob(X) - 0.5
    weights = log_weights(model, prior_guide, {"x": X}, 20000)
    se = weights.std(0) / math.sqrt(20000)
    assert ((estimate.elbo - elbo).abs() < 4 * se).all()
    # relative weights have variance < 2 for these x, so the error is ~1e-2 at K = 2e4.
    torch.testing.assert_close(estimate.log_marginal, exact_log_marginal(X), atol=0.03,
                               rtol=0)
    assert (estimate.gap > 0).all()


def test_chunks_of_particles_and_rows_combine_into_one_k_sample_estimate():
    """Chunks of 3 particles and 1 row, K = 10: normalising by anything but K (or dropping
    a chunk) would move the exact-proposal estimate off log p(x)."""
    estimate = estimate_log_marginal(model, exact_guide, {"x": X}, 10, particle_chunk=3,
                                     row_chunk=1)
    torch.testing.assert_close(estimate.log_marginal, exact_log_marginal(X))
    torch.testing.assert_close(estimate.ess, torch.full((4,), 10.0))


def test_global_latent_is_refused_with_an_explanation():
    def global_model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def global_guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="not inside pyro.plate"):
        estimate_log_marginal(global_model, global_guide, {"x": X}, 10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_samples"):
        estimate_log_marginal(model, prior_guide, {"x": X}, 0)
    with pytest.raises(ValueError, match="same number of rows"):
        estimate_log_marginal(model, prior_guide, {"x": X, "y": torch.zeros(3)}, 10)
