"""The lean ELBO paths give Pyro's values and gradients exactly."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from ppl_gen.inference.losses import LeanTrace_ELBO, LeanTraceMeanField_ELBO
from ppl_gen.models import VAE


def _loss_and_grads(elbo, model, guide, params, **data):
    for p in params:
        p.grad = None
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(False):
        loss = elbo.loss_and_grads(model, guide, **data)
    return loss, [p.grad.clone() for p in params]


@pytest.mark.parametrize("lean, pyro_elbo", [(LeanTrace_ELBO, Trace_ELBO),
                                              (LeanTraceMeanField_ELBO, TraceMeanField_ELBO)])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_minibatch_loss_and_gradients_equal_pyro(lean, pyro_elbo, likelihood):
    torch.manual_seed(0)
    vae = VAE(12, 3, hidden_dims=(8,), likelihood=likelihood,
              noise="isotropic" if likelihood == "gaussian" else "learned")
    x = torch.bernoulli(torch.rand(40, 12))
    params = list(vae.parameters())
    data = {"x": x, "subsample_size": 10}  # a subsampled plate: every site scaled by 4
    ours = _loss_and_grads(lean(max_plate_nesting=1), vae.model, vae.guide, params, **data)
    theirs = _loss_and_grads(pyro_elbo(max_plate_nesting=1), vae.model, vae.guide, params,
                             **data)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-6)
    for a, b in zip(ours[1], theirs[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_non_reparameterised_guide_gets_pyros_score_function_estimator():
    def model(x):
        c = pyro.sample("c", dist.Bernoulli(0.4))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(pyro.param("loc", torch.tensor(0.3)) + c, 1.0),
                        obs=x)

    def guide(x):
        pyro.sample("c", dist.Bernoulli(logits=pyro.param("logit", torch.tensor(-0.2))))

    x = torch.tensor([0.5, 1.5, 1.0])
    with pyro.settings.context(module_local_params=False):
        pyro.clear_param_store()
        model(x), guide(x)
        params = [pyro.param("loc").unconstrained(), pyro.param("logit").unconstrained()]
        ours = _loss_and_grads(LeanTrace_ELBO(), model, guide, params, x=x)
        theirs = _loss_and_grads(Trace_ELBO(), model, guide, params, x=x)
        pyro.clear_param_store()
    assert ours[0] == pytest.approx(theirs[0], rel=1e-6)
    for a, b in zip(ours[1], theirs[1]):
        torch.testing.assert_close(a, b)


def test_validation_on_or_several_particles_use_pyros_path(monkeypatch):
    calls = []
    monkeypatch.setattr(Trace_ELBO, "loss_and_grads",
                        lambda self, *a, **k: calls.append("pyro") or 0.0)
    vae = VAE(4, 2, hidden_dims=(4,))
    x = torch.bernoulli(torch.rand(5, 4))
    with pyro.validation_enabled(True):
        LeanTrace_ELBO().loss_and_grads(vae.model, vae.guide, x=x)
    with pyro.validation_enabled(False):
        LeanTrace_ELBO(num_particles=2).loss_and_grads(vae.model, vae.guide, x=x)
    assert calls == ["pyro", "pyro"]


def test_every_configurable_loss_is_a_registered_objective():
    from ppl_gen.config import SVI_LOSSES
    from ppl_gen.inference.objectives import OBJECTIVES

    assert set(OBJECTIVES) == set(SVI_LOSSES) - {"auto"}
