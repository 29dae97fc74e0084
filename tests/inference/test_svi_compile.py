"""SVI with the step traced once (``compile=``): the same losses as Pyro's eager step."""

import copy

import pytest
import torch

import ppl_gen
from ppl_gen.inference.compiled import CompileError
from ppl_gen.models import VAE


@pytest.fixture(scope="module")
def digits():
    return ppl_gen.load_dataset("digits", binarize=True, split="train")


def _fit(model, data, **options):
    options = {"engine": "svi", "num_steps": 15, "batch_size": 32, "learning_rate": 1e-2,
               "seed": 3, "device": "cpu", **options}
    return ppl_gen.fit(copy.deepcopy(model), data, **options)


@pytest.mark.parametrize("loss", ["trace", "meanfield"])
def test_traced_step_replays_the_eager_step_exactly(digits, loss):
    """Same seed: the replayed graph draws the same minibatches and normals, so every loss
    and the final parameters are bit-for-bit those of the eager steps."""
    model = VAE(64, latent_dim=4, hidden_dims=(32,))
    eager = _fit(model, digits, loss=loss, compile=False)
    traced = _fit(model, digits, loss=loss)  # the default traces
    assert traced.info["compiled"] == "fx" and traced.info["compile_reason"] is None
    assert traced.info["compile_seconds"] > 0
    assert list(traced.history["loss"]) == list(eager.history["loss"])
    for (name, value), other in zip(eager.model.named_parameters(),
                                    traced.model.parameters()):
        torch.testing.assert_close(other, value, rtol=0, atol=0, msg=name)


def test_inductor_step_matches_eager_to_rounding(digits):
    model = VAE(64, latent_dim=4, hidden_dims=(32,))
    eager = _fit(model, digits, loss="trace", num_steps=6, compile=False)
    compiled = _fit(model, digits, loss="trace", num_steps=6, compile="inductor")
    assert compiled.info["compiled"] == "inductor"
    torch.testing.assert_close(torch.as_tensor(compiled.history["loss"]),
                               torch.as_tensor(eager.history["loss"]), rtol=1e-4, atol=0)


def test_loss_without_a_traceable_path_runs_eagerly_or_raises(digits):
    model = VAE(64, latent_dim=4, hidden_dims=(32,))
    result = _fit(model, digits, loss="iwae", num_particles=3, num_steps=3, compile=True)
    assert result.info["compiled"] == "eager"
    assert "RenyiELBO cannot be traced" in result.info["compile_reason"]
    with pytest.raises(CompileError, match="loss='trace' or 'meanfield'.*compile=False"):
        _fit(model, digits, loss="iwae", num_particles=3, num_steps=3, compile="fx")


def test_user_guide_is_not_traced():
    import pyro
    import pyro.distributions as dist

    from tests.conftest import normal_normal

    def guide(y):
        loc = pyro.param("loc", torch.tensor(0.0))
        pyro.sample("mu", dist.Normal(loc, 1.0))

    result = ppl_gen.fit(normal_normal, {"y": torch.ones(4)}, engine="svi", guide=guide,
                         num_steps=3, compile="auto", device="cpu")
    assert result.info["compiled"] == "eager" and "zoo model" in result.info["compile_reason"]


def test_bad_compile_setting():
    with pytest.raises(ValueError, match="compile must be"):
        ppl_gen.SVIConfig(compile="yes")


def test_new_data_objects_every_step_stop_the_retracing(digits):
    """Each new set of data tensors needs a new trace; after three the step runs eagerly
    rather than paying a trace per step."""
    from ppl_gen.config import SVIConfig
    from ppl_gen.inference import make_problem, svi
    from ppl_gen.inference.base import param_scope

    model = VAE(64, latent_dim=4, hidden_dims=(32,))
    problem = make_problem(model, digits, device="cpu")
    state = svi.init(problem, SVIConfig(num_steps=8, batch_size=None))
    backends = []
    with param_scope(state.param_state):
        for _ in range(7):
            state.svi.step(x=digits["x"][:50].clone())  # a new tensor every step
            compiled = state.svi.compiled
            backends.append(compiled.backend if compiled else None)
    assert backends[:4] == [None, "fx", "fx", "fx"]  # step 1 gathers the parameters
    assert backends[4:] == ["eager"] * 3 and "changed on every step" in compiled.reason
