import numpy as np
import pyro.poutine as poutine
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.decomposition import FactorAnalysis as SkFactorAnalysis

from ppl_gen.config import EMConfig
from ppl_gen.data import load_dataset
from ppl_gen.inference import em, make_problem
from ppl_gen.models import PPCA, FactorAnalysis, ppca_closed_form


def _ppca_data(num_data=400, dim=10, latent_dim=3, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(dim, latent_dim)) * np.linspace(3, 1, latent_dim)
    x = rng.normal(size=(num_data, latent_dim)) @ w.T + 2.0 + noise * rng.normal(
        size=(num_data, dim))
    return torch.tensor(x)


def test_closed_form_matches_scikit_learn_pca_likelihood():
    """scikit-learn's PCA.score is the PPCA log-likelihood at Tipping & Bishop's MLE (with
    an N-1 covariance; hence the 1e-4 rather than exact agreement)."""
    x = load_dataset("digits", dtype=torch.float64)["x"]
    ours = float(ppca_closed_form(x, 5)["mean_log_likelihood"])
    theirs = PCA(5).fit(x.numpy()).score(x.numpy())
    assert abs(ours - theirs) / abs(theirs) < 1e-4


@pytest.mark.parametrize("dataset,latent_dim", [("synthetic", 3), ("digits", 5)])
def test_em_reaches_the_closed_form_maximum(dataset, latent_dim):
    if dataset == "digits":
        x = load_dataset("digits", dtype=torch.float64)["x"]
    else:
        x = _ppca_data()
    model = PPCA(x.shape[1], latent_dim).double()
    result = em.run(make_problem(model, {"x": x}, device="cpu"),
                    EMConfig(tol=1e-10, max_iter=5000))
    closed = float(ppca_closed_form(x, latent_dim)["mean_log_likelihood"])
    fitted = result.info["mean_log_likelihood"]
    assert abs(fitted - closed) / abs(closed) < 1e-4
    assert fitted <= closed + 1e-9 * abs(closed)  # the MLE is the maximum
    assert np.all(np.diff(result.history["log_likelihood"]) >= -1e-9)
    # The fitted W spans the same principal subspace as the closed form (W is identified
    # only up to rotation): compare projectors.
    w_closed = ppca_closed_form(x, latent_dim)["weight"]
    proj = lambda w: w @ torch.linalg.pinv(w)  # noqa: E731
    torch.testing.assert_close(proj(model.weight.detach()), proj(w_closed), atol=2e-3,
                               rtol=0)


def test_factor_analysis_em_matches_scikit_learn():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(12, 3))
    x = rng.normal(size=(500, 3)) @ w.T + rng.normal(size=(500, 12)) * rng.uniform(0.3, 1.5, 12)
    model = FactorAnalysis(12, 3).double()
    result = em.run(make_problem(model, {"x": torch.tensor(x)}, device="cpu"),
                    EMConfig(tol=1e-10, max_iter=5000))
    theirs = SkFactorAnalysis(3, tol=1e-10, max_iter=5000).fit(x).score(x)
    assert abs(result.info["mean_log_likelihood"] - theirs) / abs(theirs) < 1e-4


def test_exact_guide_is_the_posterior_so_the_elbo_equals_log_likelihood():
    """With q(z|x) = p(z|x) the ELBO has zero gap: log p(x,z) - log q(z|x) = log p(x) for
    every z (the seed's 'E step: q(z) = p(z|x)')."""
    x = _ppca_data(num_data=20)
    model = FactorAnalysis(10, 3).double()
    model.initialize(x)
    guide_trace = poutine.trace(model.guide).get_trace(x=x)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x=x)
    log_weight = (model_trace.nodes["x"]["fn"].log_prob(x)
                  + model_trace.nodes["z"]["fn"].log_prob(model_trace.nodes["z"]["value"])
                  - guide_trace.nodes["z"]["fn"].log_prob(guide_trace.nodes["z"]["value"]))
    torch.testing.assert_close(log_weight, model.log_prob(x), atol=1e-8, rtol=1e-8)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"latent_dim must lie in \[1, dim=4\], got 5"):
        PPCA(4, 5)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\)"):
        PPCA(4, 2).log_prob(torch.zeros(3, 5))
