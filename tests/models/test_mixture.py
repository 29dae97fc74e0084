import numpy as np
import pyro.distributions as dist
import pytest
import torch
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from ppl_gen.config import EMConfig
from ppl_gen.data import load_dataset
from ppl_gen.inference import em, make_problem
from ppl_gen.models import GaussianMixture


@pytest.fixture
def data():
    return load_dataset("gaussian_mixture", dtype=torch.float64)


def _start(x, seed=1):
    rng = np.random.default_rng(seed)
    weights = np.array([0.3, 0.3, 0.4])
    locs = x.numpy()[rng.choice(len(x), 3, replace=False)]
    covs = np.stack([np.eye(2)] * 3)
    return weights, locs, covs


def test_log_prob_equals_torch_mixture_same_family(data):
    model = GaussianMixture(3, 2).double()
    model.set_parameters(*map(torch.tensor, _start(data["x"])))
    reference = dist.MixtureSameFamily(
        dist.Categorical(model.weights),
        dist.MultivariateNormal(model.locs, scale_tril=model._scale_tril()))
    torch.testing.assert_close(model.log_prob(data["x"]), reference.log_prob(data["x"]))


def test_em_matches_scikit_learn_from_the_same_start(data):
    x = data["x"]
    weights, locs, covs = _start(x)
    model = GaussianMixture(3, 2).double()
    model.set_parameters(torch.tensor(weights), torch.tensor(locs), torch.tensor(covs))
    result = em.run(make_problem(model, data, device="cpu"),
                    EMConfig(tol=1e-10, max_iter=2000), initialize=False)
    sk = SkGaussianMixture(3, covariance_type="full", weights_init=weights, means_init=locs,
                           precisions_init=np.linalg.inv(covs), tol=1e-10, max_iter=2000,
                           reg_covar=1e-6).fit(x.numpy())
    ours, theirs = result.info["mean_log_likelihood"], sk.score(x.numpy())
    assert abs(ours - theirs) / abs(theirs) < 1e-4
    order_ours = np.argsort(model.locs.detach().numpy()[:, 0])
    order_sk = np.argsort(sk.means_[:, 0])
    np.testing.assert_allclose(model.locs.detach().numpy()[order_ours], sk.means_[order_sk],
                               atol=1e-4)


@pytest.mark.parametrize("covariance,init", [("full", "kmeans"), ("diag", "random")])
def test_em_log_likelihood_never_decreases(data, covariance, init):
    model = GaussianMixture(3, 2, covariance=covariance).double()
    result = em.run(make_problem(model, data, device="cpu"),
                    EMConfig(tol=0.0, max_iter=60, init=init, check_monotone=False))
    lls = result.history["log_likelihood"]
    assert len(lls) == 61
    assert np.all(np.diff(lls) >= -1e-12 * np.abs(lls[1:])), np.diff(lls).min()


def test_em_recovers_well_separated_means():
    data = load_dataset("gaussian_mixture", dtype=torch.float64, separation=8.0,
                        num_data=2000)
    model = GaussianMixture(3, 2).double()
    em.run(make_problem(model, data, device="cpu"), EMConfig())
    truth = np.asarray(data.meta["true_locs"])
    fitted = model.locs.detach().numpy()
    distance = np.linalg.norm(truth[:, None] - fitted[None], axis=-1).min(1)
    assert distance.max() < 0.3  # sampling error of a mean of ~600 points is ~0.05


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown covariance 'tied'; valid values are"):
        GaussianMixture(2, 2, covariance="tied")
    model = GaussianMixture(2, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\), got \(5, 2\)"):
        model.log_prob(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="unknown init 'spectral'"):
        model.initialize(torch.zeros(5, 3), init="spectral")
