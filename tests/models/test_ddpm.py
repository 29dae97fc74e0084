"""DDPM against exact oracles: the forward chain's marginals and posteriors in closed form,
Pyro's ELBO of the model/guide pair against the closed-form per-timestep bound, and the
bound of the optimal denoiser on Gaussian data computed exactly."""

from __future__ import annotations

import math

import numpy as np
import pyro.poutine as poutine
import pytest
import torch
from torch import nn

import ppl_gen
from ppl_gen.models.ddpm import DDPM, DiscretizedNormal, beta_schedule


class Oracle(nn.Module):
    """E[eps | x_t] when x_0 ~ N(m, diag(s^2)): linear in x_t."""

    def __init__(self, abar, m, s):
        super().__init__()
        self.register_buffer("abar", abar)
        self.m, self.s = m, s

    def forward(self, x, t):
        a = self.abar[t - 1].unsqueeze(-1)
        return (1 - a).sqrt() * (x - a.sqrt() * self.m) / (a * self.s ** 2 + 1 - a)


def test_the_forward_chain_has_its_closed_form_marginals():
    """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), simulated through the guide."""
    torch.manual_seed(0)
    model = DDPM(2, 50, schedule="cosine")
    x0 = torch.tensor([[0.5, -1.0]]).expand(20000, 2)
    trace = poutine.trace(model.guide).get_trace(x=x0)
    n = x0.shape[0]
    for t in (1, 10, 50):
        draws = trace.nodes[f"x_{t}"]["value"].double()
        abar = float(model.abar[t - 1])
        mean, var = math.sqrt(abar) * x0[0].double(), 1 - abar
        assert (draws.mean(0) - mean).abs().max() < 4 * math.sqrt(var / n)
        assert (draws.var(0) - var).abs().max() < 4 * var * math.sqrt(2 / n)


def test_the_posterior_of_the_forward_chain_is_its_closed_form():
    """q(x_{t-1} | x_t, x_0) by Bayes' rule on the two Gaussians, against q_posterior."""
    torch.set_default_dtype(torch.float64)
    try:
        model = DDPM(1, 20)
        x0, xt = torch.tensor([[0.3], [-1.2]]), torch.tensor([[0.7], [0.1]])
        for t in (2, 5, 20):
            i = t - 1
            prior_mean = model.abar_prev[i].sqrt() * x0  # x_{t-1} | x_0
            prior_var = 1 - model.abar_prev[i]
            alpha, beta = model.alphas[i], model.betas[i]  # x_t | x_{t-1}
            precision = 1 / prior_var + alpha / beta
            mean = (prior_mean / prior_var + alpha.sqrt() * xt / beta) / precision
            got_mean, got_var = model.q_posterior(x0, xt, torch.tensor([t, t]))
            torch.testing.assert_close(got_mean, mean)
            torch.testing.assert_close(got_var, (1 / precision).expand_as(got_var))
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("decoder", ["gaussian", "discretized", "discretized_unet"])
def test_pyros_elbo_of_the_pair_is_the_closed_form_bound(decoder):
    """The Monte-Carlo ELBO of the model/guide pair (whole chains drawn by Pyro) and the
    per-timestep bound (closed-form KLs, x_t drawn in closed form) estimate one number:
    per datum they agree within their Monte Carlo errors — with the Gaussian decoder on
    continuous data and with the discretised one on 5-level images (in data space, so the
    Pyro model's observed site and the bound's unit-space L_0 must agree); and with the U-Net
    as the noise predictor on 2x2 images (its output layer given weights, so it predicts)."""
    torch.manual_seed(0)
    if decoder == "discretized_unet":
        model = DDPM(4, 8, data_range=(0.0, 1.0), decoder="discretized", num_levels=5,
                     denoiser="unet", image_shape=(2, 2), unet_channels=(8,))
        nn.init.normal_(model.denoiser.out.weight, std=0.3)
        x = torch.tensor([[0.0, 0.25, 0.5, 1.0], [0.5, 1.0, 0.75, 0.0],
                          [0.75, 0.75, 0.25, 0.25]])
    elif decoder == "gaussian":
        model = DDPM(2, 8, hidden_dims=(16,))
        x = torch.tensor([[0.5, -0.2], [1.5, 0.3], [-0.7, -1.1]])
    else:
        model = DDPM(2, 8, hidden_dims=(16,), data_range=(0.0, 1.0), decoder="discretized",
                     num_levels=5)
        x = torch.tensor([[0.0, 0.25], [0.5, 1.0], [0.75, 0.75]])
    repeats = 4000
    rows = x.repeat(repeats, 1)  # each copy of a datum is one independent chain
    guide_trace = poutine.trace(model.guide).get_trace(x=rows)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(
        x=rows)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    log_p = sum(s["log_prob"] for n, s in model_trace.nodes.items()
                if s["type"] == "sample" and n != "data")
    log_q = sum(s["log_prob"] for n, s in guide_trace.nodes.items()
                if s["type"] == "sample" and n != "data")
    elbo = (log_p - log_q).detach().reshape(repeats, 3)
    if decoder == "discretized_unet":  # the U-Net predicted noise: the chain's terms moved
        assert model.bound(x).terms[:-1].std() > 0.05
    seeds = 100 if decoder == "discretized_unet" else 200
    bounds = torch.stack([model.bound(x, seed=s).nll for s in range(seeds)])
    difference = -elbo.mean(0) - bounds.mean(0)
    error = torch.sqrt(elbo.var(0) / repeats + bounds.var(0) / seeds)
    assert (difference.abs() < 4 * error).all(), (difference, error)


def _expected_bound(T, m, s):
    """The DDPM bound of the oracle denoiser, averaged over x_0 ~ N(m, s^2) (1-D), in
    closed form: every mean is affine in (x_0, x_t), so each expected KL is a Gaussian
    moment."""
    betas = beta_schedule("linear", T)
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])

    def coefficients(i):  # mu_theta(x_t) = A x_t + B
        k = (1 - abar[i]).sqrt() / (abar[i] * s ** 2 + 1 - abar[i])
        a = (1 - betas[i] * k / (1 - abar[i]).sqrt()) / alphas[i].sqrt()
        b = betas[i] * k * abar[i].sqrt() * m / ((1 - abar[i]).sqrt() * alphas[i].sqrt())
        return a, b

    def expected_square(c0, c1, c):  # E (c0 x_0 + c1 x_t + c)^2, x_t ~ q(x_t | x_0), x_0
        def over_data(i):
            slope = c0 + c1 * abar[i].sqrt()
            return (slope * m + c) ** 2 + slope ** 2 * s ** 2 + c1 ** 2 * (1 - abar[i])
        return over_data

    total = 0.0
    for t in range(2, T + 1):
        i = t - 1
        a, b = coefficients(i)
        post_var = betas[i] * (1 - abar_prev[i]) / (1 - abar[i])
        c0 = abar_prev[i].sqrt() * betas[i] / (1 - abar[i])
        c1 = alphas[i].sqrt() * (1 - abar_prev[i]) / (1 - abar[i])
        diff = expected_square(c0, c1 - a, -b)(i)
        total += 0.5 * (torch.log(betas[i] / post_var) + (post_var + diff) / betas[i] - 1)
    a, b = coefficients(0)
    total += 0.5 * math.log(2 * math.pi * betas[0]) + \
        expected_square(1.0, -a, -b)(0) / (2 * betas[0])
    mean_sq = abar[-1] * (m ** 2 + s ** 2)
    total += 0.5 * ((1 - abar[-1]) + mean_sq - 1 - torch.log(1 - abar[-1]))
    return float(total)


def test_the_optimal_denoisers_bound_is_above_the_entropy_and_closes_as_t_grows():
    """Gaussian data x_0 ~ N(m, s^2): E[eps | x_t] is linear, so the optimal denoiser is
    known; its bound, averaged over the data in closed form, is >= the data's entropy
    (the cross-entropy of any model is) and falls towards it as T grows. The library's
    Monte-Carlo bound with that denoiser plugged in matches the closed form."""
    m, s = 0.5, 0.8
    entropy = 0.5 * math.log(2 * math.pi * math.e * s ** 2)
    gaps = [_expected_bound(T, m, s) - entropy for T in (10, 100, 1000)]
    assert all(g > 0 for g in gaps) and gaps[0] > gaps[1] > gaps[2]
    # the gap closes like 1/T here: 0.0085, 0.0010, 0.00011 nats at T = 10, 100, 1000
    assert gaps[2] < 1e-3 and 5 < gaps[1] / gaps[2] < 20
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        T = 100
        abar = torch.cumprod(1 - beta_schedule("linear", T), 0)
        model = DDPM(1, T, denoiser=Oracle(abar, torch.tensor(m), torch.tensor(s)))
        # data from their own generator: bound(seed=0) must not redraw the data's noise
        x = m + s * torch.randn(4000, 1, generator=torch.Generator().manual_seed(11))
        nll = model.bound(x, num_samples=4).nll
        expected = _expected_bound(T, m, s)
        # MC error over the data and the x_t draws
        assert float(nll.mean()) == pytest.approx(expected,
                                                  abs=4 * float(nll.std()) / math.sqrt(4000))
    finally:
        torch.set_default_dtype(torch.float32)


def test_a_trained_denoiser_approaches_the_optimum_and_samples_match_the_data():
    torch.manual_seed(0)
    m, cov_factor = torch.tensor([0.5, -0.3]), torch.tensor([[0.8, 0.0], [0.4, 0.3]])
    # the data's own generator: bound(seed=0) redrawing the data's noise as its x_t noise
    # made the bound fall below the entropy here (a test artefact, found the hard way)
    x = m + torch.randn(3000, 2, generator=torch.Generator().manual_seed(11)) @ cov_factor.T
    model = DDPM(2, 50, hidden_dims=(64, 64))
    ppl_gen.fit(model, {"x": x}, engine="svi", num_steps=2000, learning_rate=3e-3,
                final_learning_rate=3e-4, batch_size=500, device="cpu")
    samples = model.sample(4000)
    n = 4000
    # 4-sigma Monte Carlo gates for the mean and the covariance entries
    cov = cov_factor @ cov_factor.T
    assert ((samples.mean(0) - m).abs() < 4 * (cov.diagonal() / n).sqrt() + 0.03).all()
    sample_cov = torch.cov(samples.T)
    assert ((sample_cov - cov).abs() < 4 * (2 / n) ** 0.5 * cov.diagonal().max() + 0.05).all()
    true_nll = float(-torch.distributions.MultivariateNormal(m, cov).log_prob(x).mean())
    bound = float(model.bound(x[:1000]).nll.mean())
    assert true_nll - 0.05 < bound < true_nll + 0.3


def test_the_discretised_decoder_is_a_distribution_over_the_levels():
    """Oracle: exact normal CDF differences (scipy, float64) for the inner bins, the tails
    for the edge bins; the K probabilities sum to one whatever the mean and scale."""
    from scipy.stats import norm

    torch.set_default_dtype(torch.float64)
    try:
        for levels, (low, high) in ((17, (0.0, 1.0)), (256, (-1.0, 1.0))):
            grid = torch.linspace(low, high, levels)
            half = (high - low) / (2 * (levels - 1))
            for loc, scale in ((0.3, 0.05), (low - 0.5, 0.2), (high, 1e-4), (0.0, 3.0)):
                d = DiscretizedNormal(torch.full((levels,), loc), torch.full((levels,), scale),
                                      levels, low, high)
                p = d.log_prob(grid).exp()
                assert float(p.sum()) == pytest.approx(1.0, abs=1e-9), (levels, loc, scale)
                up = norm.cdf((grid.numpy() + half - loc) / scale)
                down = norm.cdf((grid.numpy() - half - loc) / scale)
                up[-1], down[0] = 1.0, 0.0
                np.testing.assert_allclose(p.numpy(), np.maximum(up - down, 1e-12),
                                           rtol=1e-6, atol=1e-12)
        draws = DiscretizedNormal(torch.tensor(0.31), torch.tensor(0.02), 17, 0.0,
                                  1.0).sample((4000,))
        levels = draws * 16
        assert torch.equal(levels, levels.round()) and set(levels.unique().tolist()) <= {
            4.0, 5.0, 6.0}
    finally:
        torch.set_default_dtype(torch.float32)


def test_ddim_with_the_optimal_denoiser_converges_to_the_data():
    """Oracle: Gaussian data and E[eps | x_t] in closed form, so a sampler's only error is
    its discretisation. DDIM (eta = 0) is deterministic: the same x_T gives the same
    sample, and its sd error shrinks as the steps grow (the same x_T for every step count,
    so the comparison is paired); at S = T it is under 1 % plus 4 Monte Carlo sds. The means
    are within 4 Monte Carlo sds at every step count. eta = 1 adds the noise back."""
    torch.set_default_dtype(torch.float64)
    try:
        m, s = torch.tensor([0.5, -0.3]), torch.tensor([0.8, 0.3])
        model = DDPM(2, 1000)
        model.denoiser = Oracle(model.abar, m, s)
        n, errors = 20_000, []
        for steps in (10, 50, 200, 1000):
            torch.manual_seed(5)
            x = model.sample(n, num_steps=steps, method="ddim")
            assert ((x.mean(0) - m).abs() < 4 * s / math.sqrt(n)).all(), (steps, x.mean(0))
            errors.append((x.std(0) / s - 1).abs())
        assert (errors[0] > errors[1]).all() and (errors[1] > errors[2]).all(), errors
        assert (errors[3] < 0.01 + 4 / math.sqrt(2 * n)).all(), errors
        torch.manual_seed(5)
        again = model.sample(n, num_steps=1000, method="ddim")
        torch.manual_seed(5)
        first = model.sample(n, num_steps=1000, method="ddim")
        assert torch.equal(again, first)
        torch.manual_seed(5)
        noisy = model.sample(n, num_steps=1000, method="ddim", eta=1.0)
        assert not torch.allclose(noisy, first)
        assert ((noisy.mean(0) - m).abs() < 4 * s / math.sqrt(n)).all()
        assert ((noisy.std(0) / s - 1).abs() < 0.01 + 4 / math.sqrt(2 * n)).all()
    finally:
        torch.set_default_dtype(torch.float32)


def test_objectives_samplers_and_bad_input():
    ds = ppl_gen.load_dataset("digits")
    model = ppl_gen.MODELS["ddpm"].from_dataset(ds, num_steps=20, hidden_dims=(32,))
    assert model.data_range == (0.0, 1.0)
    for loss in ("ddpm_simple", "ddpm_rb"):
        result = ppl_gen.fit(model, ds, engine="svi", loss=loss, num_steps=3, device="cpu")
        assert np.isfinite(result.history["loss"]).all()
    bound = model.bound(ds["x"][:10])
    assert bound.terms.shape == (21, 10) and torch.isfinite(bound.bits_per_dim).all()
    assert model.sample(3).shape == (3, 64) and model.sample(3, num_steps=5).shape == (3, 64)
    with pytest.raises(ValueError, match="num_steps must be an integer in 1..20"):
        model.sample(3, num_steps=50)
    assert model.sample(3, num_steps=5, method="ddim").shape == (3, 64)
    with pytest.raises(ValueError, match="unknown method 'euler'"):
        model.sample(3, method="euler")
    with pytest.raises(ValueError, match="pass method='ddim' with it"):
        model.sample(3, eta=0.5)
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        model.sample(3, method="ddim", eta=-1.0)
    with pytest.raises(ValueError, match="x holds only 0 and 1"):
        ppl_gen.MODELS["ddpm"].from_dataset(ppl_gen.load_dataset("mnist"))
    with pytest.raises(ValueError, match="unknown schedule"):
        DDPM(2, 10, schedule="quadratic")
    with pytest.raises(ValueError, match="unknown decoder 'logistic'"):
        DDPM(2, 10, decoder="logistic")
    with pytest.raises(ValueError, match="give data_range"):
        DDPM(2, 10, decoder="discretized", num_levels=17)
    with pytest.raises(ValueError, match="needs num_levels"):
        DDPM(2, 10, decoder="discretized", data_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="num_levels applies to decoder='discretized'"):
        DDPM(2, 10, num_levels=17)
    discrete = ppl_gen.MODELS["ddpm"].from_dataset(ds, num_steps=20, hidden_dims=(32,),
                                                   decoder="discretized", num_levels=17)
    assert torch.isfinite(discrete.bound(ds["x"][:10]).bits_per_dim).all()
    dequantised = ppl_gen.load_dataset("digits", dequantize=True)
    with pytest.raises(ValueError, match="x is not on the grid of 17 levels"):
        discrete.bound(dequantised["x"][:10])
    gmm_ds = ppl_gen.load_dataset("gaussian_mixture")
    with pytest.raises(ValueError, match="diffusion objective; it needs a DDPM"):
        ppl_gen.fit(ppl_gen.MODELS["gmm"].from_dataset(gmm_ds), gmm_ds, loss="ddpm_rb",
                    device="cpu")


def test_the_unet_predicts_per_image_with_any_batch_shape_and_learns():
    """The U-Net noise predictor: flattened images in, the same shape out, for (N, D),
    (S, N, D), one and three channels, 8x8 and 28x28 (odd 7x7 inner grid); a row's output
    does not depend on the other rows (GroupNorm, no batch statistics); it starts at
    eps = 0 (zero output layer) and every parameter gets a gradient; DDPM builds it from
    an image data set, and a short fit on the digits lowers L_simple."""
    from ppl_gen.nn import UNet
    torch.manual_seed(0)
    for shape, size in (((8, 8), 64), ((28, 28), 784), ((3, 4, 4), 48)):
        net = UNet(shape, (8, 16, 16))
        x, t = torch.randn(5, size), torch.randint(1, 1000, (5,))
        assert net(x, t).abs().max() == 0  # zero-initialised output
        nn.init.normal_(net.out.weight, std=0.1)
        out = net(x, t)
        assert out.shape == (5, size)
        assert torch.allclose(net(x[2:3], t[2:3]), out[2:3], atol=1e-5)
        assert net(x.expand(2, 5, size), t.expand(2, 5)).shape == (2, 5, size)
        out.square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert 200_000 < sum(p.numel() for p in UNet((8, 8)).parameters()) < 400_000

    data = ppl_gen.load_dataset("digits", split="train")
    model = DDPM.from_dataset(data, denoiser="unet", num_steps=50, unet_channels=(8, 16))
    assert model.denoiser.image_shape == (1, 8, 8) and model.data_range == (0.0, 1.0)
    x0 = model._to_unit(data["x"][:200])
    with torch.no_grad():
        before = model._objective(x0, "ddpm_simple").mean()
    ppl_gen.fit(model, {"x": data["x"][:200]}, engine="svi", loss="ddpm_simple",
                num_steps=80, batch_size=50, learning_rate=3e-3, seed=0, device="cpu")
    torch.manual_seed(1)
    with torch.no_grad():
        after = torch.stack([model._objective(x0, "ddpm_simple").mean() for _ in range(5)])
    # L_simple starts at E||eps||^2 = D = 64 (eps_theta = 0); the fit must cut it to under a third
    # (80 steps reach ~10 here)
    assert abs(float(before) - 64) < 3 and float(after.mean()) < 20, (before, after)


@pytest.mark.parametrize("kwargs, message", [
    ({"denoiser": "resnet"}, "unknown denoiser 'resnet'"),
    ({"denoiser": "unet", "image_shape": (3, 3)}, "does not have dim=16"),
    ({"denoiser": "unet", "image_shape": (2, 2, 2)}, "does not have dim=16 values"),
    ({"image_shape": (4, 4)}, "image_shape is for denoiser='unet'"),
    ({"denoiser": "unet", "unet_channels": (4, 4, 4, 4)}, "cannot be halved 3 times"),
    ({"denoiser": "unet", "unet_channels": ()}, "channels must be a non-empty tuple"),
])
def test_bad_denoiser_options_are_refused_naming_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        DDPM(16, 10, **kwargs)
