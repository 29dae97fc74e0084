"""Adversarial autoencoder: the aggregate posterior matches the prior it was given (checked
by a two-sample energy distance against its own null distribution), while the plain
autoencoder's codes do not — the seed's "is an autoencoder a generative model?"."""

import math

import pytest
import torch

import ppl_gen
from ppl_gen.data import load_dataset
from ppl_gen.models import AdversarialAutoencoder, energy_distance

SMALL = {"hidden_dims": (128,), "discriminator_dims": (64, 64)}


@pytest.fixture(scope="module")
def digits():
    return (load_dataset("digits", split="train", binarize=True),
            load_dataset("digits", split="test", binarize=True))


def _fit(train, **kwargs):
    torch.manual_seed(0)
    model = AdversarialAutoencoder.from_dataset(train, **SMALL, **kwargs)
    result = ppl_gen.fit(model, train, engine="adversarial", num_steps=1500,
                         learning_rate=1e-3, batch_size=100, seed=0, num_threads=1)
    return model, result


def _null_quantile(prior, num_a, num_b, quantile=0.95, repeats=40):
    """Energy distance between two samples of the prior itself: the statistic's null."""
    torch.manual_seed(1)
    values = [float(energy_distance(prior.sample((num_a,)), prior.sample((num_b,))))
              for _ in range(repeats)]
    return float(torch.tensor(values).quantile(quantile))


@pytest.fixture(scope="module")
def plain(digits):
    return _fit(digits[0], adversarial=False)[0]


@pytest.mark.parametrize("prior", ["gaussian", "uniform"])
def test_aae_codes_follow_the_prior_and_autoencoder_codes_do_not(digits, plain, prior):
    train, test = digits
    model, result = _fit(train, prior=prior)
    assert set(result.history) == {"loss", "reconstruction", "discriminator", "generator"}
    null = _null_quantile(model.prior(), test.num_data, 2000)
    aae = model.prior_mismatch(test["x"])
    plain.prior_name = prior  # the same autoencoder, judged against the same prior
    autoencoder = plain.prior_mismatch(test["x"])
    # Adversarial play leaves a residual mismatch, but within a few null quantiles (measured
    # 0.012 Gaussian / 0.003 uniform); the plain autoencoder is >100x further away.
    assert aae < 5 * null + 0.01, (aae, null)
    assert autoencoder > 20 * aae, (autoencoder, aae)
    codes = model.encode(test["x"])
    if prior == "uniform":  # U[-1, 1]: sd 1/sqrt(3), support kept
        torch.testing.assert_close(codes.std(0), torch.full((2,), 1 / math.sqrt(3)),
                                   atol=0.1, rtol=0)
        assert float((codes.abs() <= 1.1).all(-1).float().mean()) > 0.95


def test_mixture_prior_is_matched_far_better_than_by_the_autoencoder(digits, plain):
    train, test = digits
    model, _ = _fit(train, prior="mixture")
    plain.prior_name = "mixture"
    assert model.prior_mismatch(test["x"]) < plain.prior_mismatch(test["x"]) / 3


def test_energy_distance_is_zero_for_equal_samples_and_positive_for_shifted():
    torch.manual_seed(0)
    a = torch.randn(500, 2)
    assert float(energy_distance(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(energy_distance(a, a + 1.0)) > 0.5


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown prior"):
        AdversarialAutoencoder(4, prior="cauchy")
    with pytest.raises(ValueError, match="latent_dim must be >= 2"):
        AdversarialAutoencoder(4, 1, prior="mixture")
    with pytest.raises(ValueError, match="unknown phase"):
        AdversarialAutoencoder(4).adversarial_loss("critic", {"x": torch.zeros(2, 4)})
