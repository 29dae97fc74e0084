"""VAE family against oracles: PPCA's closed form, exact linear-Gaussian marginals, the
closed-form Gaussian KL, the bound ordering ELBO <= IWAE_k <= IWAE_k' <= log p(x), and the
conditional VAE's Bayes-rule classifier against chance."""

import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import ppl_gen
from ppl_gen.data import load_dataset
from ppl_gen.models import VAE, ConditionalVAE, ppca_closed_form


def _ppca_data(num_data=500, dim=6, latent_dim=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(dim, latent_dim, generator=generator) * torch.tensor([3.0, 1.0])
    z = torch.randn(num_data, latent_dim, generator=generator)
    return z @ weight.T + 0.5 * torch.randn(num_data, dim, generator=generator) + 1.0


def _linear_parts(vae):
    linear = vae.decoder[0]
    return linear.weight, linear.bias, vae.decoder_scale


def exact_elbo(vae, x):
    """Closed-form ELBO of a linear-Gaussian VAE: E_q log N(x; Wz + b, s^2 I) - KL(q || p)."""
    weight, bias, scale = _linear_parts(vae)
    loc, sd = vae.encode(x)
    expected_sq = (weight.pow(2) @ sd.pow(2).T).T.sum(-1)  # E_q ||W (z - loc)||^2
    reconstruction = (torch.distributions.Normal(loc @ weight.T + bias, scale).log_prob(x)
                      .sum(-1) - expected_sq / (2 * scale**2))
    kl = 0.5 * (loc.pow(2) + sd.pow(2) - 1 - 2 * sd.log()).sum(-1)
    return reconstruction - kl


def exact_log_marginal(vae, x):
    """p(x) = N(b, W W^T + s^2 I) for a linear decoder."""
    weight, bias, scale = _linear_parts(vae)
    cov = weight @ weight.T + scale**2 * torch.eye(len(bias))
    return torch.distributions.MultivariateNormal(bias, cov).log_prob(x)


@pytest.fixture(scope="module")
def linear_vae():
    """A linear-Gaussian VAE with isotropic noise (PPCA's model) fitted by SVI."""
    torch.set_num_threads(1)
    x = _ppca_data()
    with pyro.settings.context(module_local_params=True):
        vae = VAE(6, 2, hidden_dims=(), likelihood="gaussian", noise="isotropic")
        ppl_gen.fit(vae, {"x": x}, engine="svi", loss="meanfield", num_steps=4000,
                    learning_rate=3e-2, final_learning_rate=1e-3, num_particles=4,
                    vectorize_particles=True, batch_size=None, seed=0, progress_bar=False)
    return vae, x


def test_linear_gaussian_vae_reaches_the_ppca_maximum_likelihood(linear_vae):
    """At the optimum, a linear VAE is PPCA with an exact posterior (Lucas et al. 2019): its
    ELBO approaches Tipping & Bishop's closed-form maximum log-likelihood, never above it."""
    vae, x = linear_vae
    closed_form = float(ppca_closed_form(x, 2)["mean_log_likelihood"])
    with torch.no_grad():
        elbo = float(exact_elbo(vae, x).mean())
        log_marginal = float(exact_log_marginal(vae, x).mean())
    assert elbo <= log_marginal <= closed_form + 1e-5  # exact inequalities
    # 0.05 nats per datum: the remaining distance after 4,000 noisy steps (measured 0.023);
    # an untrained model sits ~40 nats below.
    assert closed_form - elbo < 0.05
    # the encoder is (nearly) the exact posterior: the variational gap is tiny.
    assert log_marginal - elbo < 0.01


def test_importance_estimate_matches_the_exact_marginal(linear_vae):
    vae, x = linear_vae
    estimate = vae.estimate_log_marginal(x[:50], num_samples=500)
    exact = exact_log_marginal(vae, x[:50]).detach()
    # q is close to p(z | x), so the K=500 estimate's error is far below 1e-2.
    torch.testing.assert_close(estimate.log_marginal, exact, atol=1e-2, rtol=0)
    torch.testing.assert_close(estimate.elbo, exact_elbo(vae, x[:50]).detach(), atol=2e-2,
                               rtol=0)


def test_bound_ordering_elbo_iwae_logp_on_the_linear_gaussian_case():
    """E[ELBO] <= E[IWAE_5] <= E[IWAE_50] <= log p(x), exactly checkable here. The encoder is
    perturbed so that the gaps are visible; means over 4,000 groups per datum, tolerances
    3 standard errors."""
    torch.manual_seed(0)
    vae = VAE(4, 2, hidden_dims=(), likelihood="gaussian", noise="isotropic")
    with torch.no_grad():
        vae.decoder[0].weight.copy_(torch.randn(4, 2))
        vae.decoder_scale = torch.tensor(0.7)  # PyroParam: sets the unconstrained value
    x = exact_sample(vae, 20)
    with torch.no_grad():
        log_p = exact_log_marginal(vae, x).mean()
    from ppl_gen.inference.importance import log_weights

    pyro.set_rng_seed(1)
    with torch.no_grad():
        weights = log_weights(vae.model, vae.guide, {"x": x}, 200_000)  # (K, N)
    means, errors = {}, {}
    for k in (1, 5, 50):
        groups = weights[: (200_000 // k) * k].reshape(-1, k, x.shape[0])
        bound = groups.logsumexp(1) - math.log(k)  # (groups, N)
        per_group = bound.mean(-1)
        means[k] = float(per_group.mean())
        errors[k] = float(per_group.std() / math.sqrt(per_group.numel()))
    assert means[1] + 3 * errors[1] < means[5]
    assert means[5] + 3 * errors[5] < means[50]
    assert means[50] < float(log_p) + 3 * errors[50]
    assert float(log_p) - means[1] > 0.1  # the perturbed encoder leaves a real gap


def exact_sample(vae, num):
    weight, bias, scale = _linear_parts(vae)
    with torch.no_grad():
        z = torch.randn(num, weight.shape[1])
        return z @ weight.T + bias + scale * torch.randn(num, weight.shape[0])


def test_closed_form_kl_equals_monte_carlo_kl_and_the_two_elbos_agree():
    torch.manual_seed(0)
    vae = VAE(64, 5, hidden_dims=(32,), likelihood="bernoulli")
    x = torch.bernoulli(torch.rand(8, 64))
    with torch.no_grad():
        loc, scale = vae.encode(x)
        q = torch.distributions.Normal(loc, scale)
        p = torch.distributions.Normal(0.0, 1.0)
        z = q.sample((50_000,))
        per_sample = (q.log_prob(z) - p.log_prob(z)).sum(-1)  # (S, N)
        closed = vae.elbo_terms(x)["kl"]
    monte_carlo = per_sample.mean(0)
    se = per_sample.std(0) / math.sqrt(50_000)
    assert ((monte_carlo - closed).abs() < 4 * se).all()
    # Pyro's two ELBOs (Monte-Carlo KL vs closed form) agree in expectation.
    pyro.set_rng_seed(0)
    kwargs = {"num_particles": 20_000, "vectorize_particles": True, "max_plate_nesting": 1}
    with torch.no_grad():
        trace = Trace_ELBO(**kwargs).loss(vae.model, vae.guide, x=x)
        meanfield = TraceMeanField_ELBO(**kwargs).loss(vae.model, vae.guide, x=x)
        from ppl_gen.inference.importance import log_weights

        sd = float(log_weights(vae.model, vae.guide, {"x": x}, 2000).sum(-1).std())
    assert abs(trace - meanfield) < 4 * sd * math.sqrt(2 / 20_000)


def test_beta_scales_exactly_the_kl_term():
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(6, 16))
    vae = VAE(16, 3, hidden_dims=(8,))
    beta_vae = VAE(16, 3, hidden_dims=(8,), beta=4.0)
    beta_vae.load_state_dict(vae.state_dict())
    elbo = TraceMeanField_ELBO(max_plate_nesting=1)
    terms = vae.elbo_terms(x)
    pyro.set_rng_seed(0)
    loss_1 = elbo.loss(vae.model, vae.guide, x=x)
    pyro.set_rng_seed(0)
    loss_4 = elbo.loss(beta_vae.model, beta_vae.guide, x=x)
    assert loss_4 - loss_1 == pytest.approx(3.0 * float(terms["kl"].sum()), rel=1e-4)
    # likelihood estimates are about p(x): evaluated at beta = 1 whatever beta trained with.
    torch.testing.assert_close(beta_vae.log_prob(x, 50), vae.log_prob(x, 50))
    assert beta_vae.beta == 4.0


@pytest.fixture(scope="module")
def digits_cvae():
    torch.set_num_threads(1)
    train = load_dataset("digits", split="train", binarize=True)
    test = load_dataset("digits", split="test", binarize=True)
    with pyro.settings.context(module_local_params=True):
        cvae = ConditionalVAE.from_dataset(train, latent_dim=8, hidden_dims=(256,))
        ppl_gen.fit(cvae, train, engine="svi", num_steps=3000, learning_rate=3e-3,
                    batch_size=100, seed=0, progress_bar=False)
    return cvae, train, test


def test_cvae_bayes_rule_classifier_beats_chance_by_a_wide_margin(digits_cvae):
    cvae, _, test = digits_cvae
    x, y = test["x"][:200], test["y"][:200]
    log_proba = cvae.predict_log_proba(x, num_samples=50)
    torch.testing.assert_close(log_proba.exp().sum(-1), torch.ones(200))
    accuracy = float((log_proba.argmax(-1) == y).float().mean())
    # chance is 0.10; a binomial sd at 200 rows is ~0.03.
    assert accuracy > 0.8, accuracy


def test_cvae_rejects_noise_images_as_outliers(digits_cvae):
    cvae, train, test = digits_cvae
    threshold = cvae.outlier_threshold(test["x"][:200], quantile=0.05, num_samples=50)
    noise = torch.bernoulli(torch.full((50, 64), 0.5), generator=torch.Generator()
                            .manual_seed(0))
    labels = cvae.classify(noise, threshold=threshold, num_samples=50)
    assert (labels == -1).all()
    gap = cvae.log_prob(test["x"][:200], 50).median() - cvae.log_prob(noise, 50).median()
    assert gap > 10.0  # nats: noise is far less likely than any digit


def test_cvae_generates_the_requested_class(digits_cvae):
    cvae, train, _ = digits_cvae
    images = cvae.sample(100, y=3, mean=True)
    log_proba = cvae.predict_log_proba(torch.bernoulli(images.clamp(0, 1),
                                                       generator=torch.Generator()
                                                       .manual_seed(0)), 20)
    assert float((log_proba.argmax(-1) == 3).float().mean()) > 0.6


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="unknown likelihood"):
        VAE(4, likelihood="poisson")
    with pytest.raises(ValueError, match="unknown architecture"):
        VAE(4, architecture="transformer")
    with pytest.raises(ValueError, match="noise"):
        VAE(4, likelihood="gaussian", noise=-1.0)
    with pytest.raises(ValueError, match="beta"):
        VAE(4, beta=0.0)
    with pytest.raises(ValueError, match="multiples of 4"):
        VAE(36, architecture="conv")
    with pytest.raises(ValueError, match="binarize"):
        VAE.from_dataset(load_dataset("digits"), likelihood="bernoulli")
    with pytest.raises(ValueError, match="shape"):
        VAE(4).log_prob(torch.zeros(3, 5))
    cvae = ConditionalVAE(4, 3, 2, hidden_dims=(4,))
    with pytest.raises(ValueError, match="needs labels"):
        cvae.guide(x=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="labels y must lie"):
        cvae.log_prob(torch.zeros(2, 4), y=torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="num_classes"):
        ConditionalVAE(4, 1)


def test_conv_vae_on_8x8_digits_trains_and_broadcasts_over_particles():
    train = load_dataset("digits", split="train", binarize=True)
    vae = VAE.from_dataset(train, architecture="conv", latent_dim=4, hidden_dims=(32,),
                           conv_channels=8)
    assert vae.image_shape == (8, 8)
    result = ppl_gen.fit(vae, train, engine="svi", loss="iwae", num_particles=3,
                         vectorize_particles=True, num_steps=30, learning_rate=3e-3, seed=0,
                         progress_bar=False)
    assert result.history["loss"][-1] < result.history["loss"][0]
    estimate = vae.estimate_log_marginal(train["x"][:5], num_samples=20)
    assert estimate.log_marginal.shape == (5,) and (estimate.gap >= -1e-4).all()
