import numpy as np
import pytest
import torch

import ppl_gen
from ppl_gen.models import NormalizingFlow
from ppl_gen.models.flows import FLOWS


@pytest.fixture(scope="module")
def trained():
    """Each flow after a short fit to two moons: a density far from the Gaussian base, so
    the checks below are not vacuous."""
    data = ppl_gen.load_dataset("two_moons", dtype=torch.float64, num_data=500)
    fitted = {}
    for flow in FLOWS:
        model = NormalizingFlow(2, flow=flow, num_transforms=4, hidden_dims=(32, 32)).double()
        # compile=False: tracing these flows (~4 s for nsf) costs more than 200 steps save
        ppl_gen.fit(model, data, engine="svi", num_steps=200, learning_rate=1e-2,
                    compile=False, device="cpu")
        fitted[flow] = model.eval()
    return data, fitted


@pytest.mark.parametrize("flow", FLOWS)
def test_density_integrates_to_one_on_a_grid(trained, flow):
    """Midpoint quadrature over [-6, 6]^2 with 400 x 400 cells (two moons lives inside
    [-1.5, 2.5] x [-1, 1.5]; the tails beyond 6 carry negligible mass)."""
    _, fitted = trained
    edges = torch.linspace(-6, 6, 401, dtype=torch.float64)
    centres = (edges[1:] + edges[:-1]) / 2
    grid = torch.cartesian_prod(centres, centres)
    with torch.no_grad():
        density = fitted[flow].log_prob(grid).exp()
    mass = float(density.sum() * (12 / 400) ** 2)
    assert abs(mass - 1) < 1e-2, mass


@pytest.mark.parametrize("flow", FLOWS)
def test_log_prob_of_samples_agrees_with_the_forward_pass(trained, flow):
    """Sampling runs u -> x; log_prob runs x -> u. Both must give the same log-density:
    log p(x) = log N(u) - sum_k log |det J_k| along the forward path."""
    _, fitted = trained
    model = fitted[flow]
    torch.manual_seed(0)
    with torch.no_grad():
        distribution = model.distribution()
        u = distribution.base_dist.sample((64,))
        log_density = distribution.base_dist.log_prob(u)
        x = u
        for transform in distribution.transforms:
            y = transform(x)
            log_density = log_density - transform.log_abs_det_jacobian(x, y)
            x = y
        torch.testing.assert_close(model.log_prob(x), log_density, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("flow", FLOWS)
def test_log_det_jacobian_matches_autograd(trained, flow):
    _, fitted = trained
    distribution = fitted[flow].distribution()
    torch.manual_seed(1)
    points = torch.randn(5, 2, dtype=torch.float64)
    for transform in distribution.transforms:
        for point in points:
            jacobian = torch.autograd.functional.jacobian(
                lambda v, t=transform: t(v[None])[0], point)
            expected = torch.linalg.slogdet(jacobian).logabsdet
            got = transform.log_abs_det_jacobian(point[None], transform(point[None]))
            torch.testing.assert_close(got.reshape(()), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("flow", FLOWS)
def test_flow_beats_the_best_gaussian(trained, flow):
    """Oracle: the maximum-likelihood Gaussian of two moons in closed form."""
    data, fitted = trained
    x = data["x"]
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / len(x)
    gaussian = torch.distributions.MultivariateNormal(mean, cov).log_prob(x).mean()
    with torch.no_grad():
        flow_ll = fitted[flow].log_prob(x).mean()
    assert float(flow_ll) > float(gaussian) + 0.3, (float(flow_ll), float(gaussian))


def test_flow_errors():
    with pytest.raises(ValueError, match="unknown flow 'glow'; valid values are: realnvp, maf"):
        NormalizingFlow(2, flow="glow")
    with pytest.raises(ValueError, match="needs dim >= 2.*flow='maf'"):
        NormalizingFlow(1, flow="realnvp")
    with torch.no_grad():
        assert np.isfinite(float(NormalizingFlow(1, flow="maf").log_prob(torch.zeros(3, 1))[0]))
