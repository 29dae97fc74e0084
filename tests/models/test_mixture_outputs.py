import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm

import ppl_gen
from ppl_gen.models import MADEMoG


def _randomised(model, seed=0, scale=0.5):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model.double().eval()


@pytest.fixture(scope="module")
def grid():
    edges = torch.linspace(-8, 8, 481, dtype=torch.float64)
    centres = (edges[1:] + edges[:-1]) / 2
    return torch.cartesian_prod(centres, centres), (16 / 480) ** 2


def test_density_integrates_to_one(grid):
    points, cell = grid
    model = _randomised(MADEMoG(2, (16,), num_components=3), scale=0.3)
    with torch.no_grad():
        mass = float(model.log_prob(points).exp().sum() * cell)
    assert abs(mass - 1) < 1e-2, mass


def test_log_prob_is_the_mixture_formula():
    """Oracle: sum_i logsumexp_k [log softmax(w_i)_k + log N(x_i | mu_ik, sigma_ik)] with
    the conditionals read off the network, computed in NumPy/SciPy."""
    model = _randomised(MADEMoG(3, (8,), num_components=4), seed=1)
    x = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        logits, means, scales = (t.numpy() for t in model.conditionals(x))
        got = model.log_prob(x).numpy()
    log_weights = logits - logsumexp(logits, axis=-1, keepdims=True)
    per_dim = logsumexp(log_weights + norm.logpdf(x.numpy()[..., None], means, scales), -1)
    np.testing.assert_allclose(got, per_dim.sum(-1), rtol=1e-10)


def test_conditionals_are_autoregressive():
    model = _randomised(MADEMoG(5, (16, 16), num_components=2), seed=2)
    x = torch.randn(5, dtype=torch.float64)
    for output in (0, 1, 2):  # logits, means, scales
        jacobian = torch.autograd.functional.jacobian(
            lambda v, o=output: model.conditionals(v[None])[o][0, :, 0], x)
        assert torch.all(torch.triu(jacobian) == 0)


def test_ancestral_samples_follow_the_conditionals():
    """x_0 ~ p(x_0): its sample mean equals the closed-form mixture mean; x_1 ~ p(x_1 | x_0):
    the mean of x_1 - E[x_1 | x_0] (evaluated at each sampled x_0) is zero. Both within
    4 Monte Carlo standard errors of 20,000 draws."""
    model = _randomised(MADEMoG(2, (16,), num_components=3), seed=3, scale=0.3)
    torch.manual_seed(0)
    with torch.no_grad():
        draws = model.sample(20_000)
        logits, means, _ = model.conditionals(draws)
        expected = (logits.softmax(-1) * means).sum(-1)  # E[x_i | x_<i], (N, D)
    residual = draws - expected
    error = residual.std(0) / np.sqrt(len(draws))
    assert torch.all(residual.mean(0).abs() < 4 * error), (residual.mean(0), error)
    # x_0's conditional has no inputs: expected[:, 0] is one number, its mixture mean.
    assert torch.allclose(expected[:, 0], expected[0, 0])


def test_beats_the_best_gaussian_on_two_moons():
    data = ppl_gen.load_dataset("two_moons", dtype=torch.float64, num_data=500)
    model = ppl_gen.MODELS["made_mog"].from_dataset(data, hidden_dims=(32, 32)).double()
    ppl_gen.fit(model, data, engine="svi", num_steps=400, learning_rate=5e-3, device="cpu")
    x = data["x"]
    mean, cov = x.mean(0), torch.cov(x.T, correction=0)
    gaussian = torch.distributions.MultivariateNormal(mean, cov).log_prob(x).mean()
    with torch.no_grad():
        assert float(model.log_prob(x).mean()) > float(gaussian) + 0.3


def test_errors():
    with pytest.raises(ValueError, match="num_components must be >= 1"):
        MADEMoG(2, num_components=0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        MADEMoG(2).log_prob(torch.zeros(3, 4))
