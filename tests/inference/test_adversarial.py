"""The adversarial engine: phase order, n_critic, no gradient leakage, clear errors."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import ppl_gen
from ppl_gen.config import AdversarialConfig
from ppl_gen.inference import adversarial, make_problem
from ppl_gen.models import GenerativeModel


class Recorder(GenerativeModel):
    """Two phases whose losses touch both players; records the calls."""

    def __init__(self):
        super().__init__()
        self.generator_net = nn.Linear(2, 2)
        self.discriminator = nn.Linear(2, 1)
        self.calls = []

    def model(self, x=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(self.generator_net.bias, 1.0).to_event(1), obs=x)

    def adversarial_phases(self):
        return {"discriminator": list(self.discriminator.parameters()),
                "generator": list(self.generator_net.parameters())}

    def adversarial_loss(self, phase, batch):
        self.calls.append((phase, batch["x"].shape[0]))
        # both losses depend on both players' parameters
        return self.discriminator(self.generator_net(batch["x"])).pow(2).mean() * (
            1.0 if phase == "generator" else -1.0)


def test_phases_run_in_order_with_n_critic_and_gradients_do_not_leak():
    model = Recorder()
    problem = make_problem(model, {"x": torch.randn(50, 2)}, device="cpu")
    config = AdversarialConfig(num_steps=1, discriminator_steps=3, batch_size=10)
    state = adversarial.init(problem, config, seed=0)
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    # only the generator phase: the discriminator must not move although its .grad is set
    state.optimizers["discriminator"].param_groups[0]["lr"] = 0.0
    adversarial.step(state, config)
    assert model.calls == [("discriminator", 10)] * 3 + [("generator", 10)]
    for p, old in zip(model.discriminator.parameters(), d_before):
        torch.testing.assert_close(p.detach(), old)
    assert all(p.grad is None for p in model.parameters())


def test_same_seed_same_result():
    data = ppl_gen.load_dataset("digits", split="train", binarize=True)
    results = []
    for _ in range(2):
        model = ppl_gen.MODELS["aae"].from_dataset(data, hidden_dims=(16,),
                                                   discriminator_dims=(8,))
        torch.manual_seed(0)
        for p in model.parameters():  # identical starting weights
            nn.init.normal_(p, std=0.1)
        results.append(ppl_gen.fit(model, data, engine="adversarial", num_steps=5,
                                   seed=3).history["loss"])
    torch.testing.assert_close(torch.tensor(results[0]), torch.tensor(results[1]))


def test_errors():
    data = ppl_gen.load_dataset("digits", split="train", binarize=True)
    vae = ppl_gen.MODELS["vae"].from_dataset(data)
    with pytest.raises(TypeError, match="adversarial_phases"):
        ppl_gen.fit(vae, data, engine="adversarial", num_steps=1)
    with pytest.raises(ValueError, match="betas"):
        AdversarialConfig(betas=(0.5, 1.5))
    with pytest.raises(ValueError, match="discriminator_steps"):
        AdversarialConfig(discriminator_steps=0)
    with pytest.raises(ValueError, match="unknown adversarial option"):
        ppl_gen.fit(ppl_gen.MODELS["aae"].from_dataset(data), data, engine="adversarial",
                    num_particles=3)
