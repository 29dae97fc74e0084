# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # GANs and diffusion: the theory checked, then the trilemma on a ring of Gaussians
#
# Two families without a tractable density, both written as Pyro programs:
#
# * a **GAN**'s generator is `model()`: z ~ N(0, I), x = G(z) a deterministic site. Its
#   discriminator D plays V(G, D) = E_data[log D(x)] + E_G[log(1 − D(x))]. For a fixed G the
#   best D is D*(x) = p_data(x) / (p_data(x) + p_G(x)), and V(G, D*) = 2 JSD(p_data ‖ p_G)
#   − log 4 (Goodfellow et al. 2014) — checked below by quadrature;
# * **DDPM**'s guide is the fixed forward (noising) chain and its model the learned
#   reverse chain, so Pyro's ELBO of the pair is the diffusion bound.
#
# Then all of them on PacGAN's ring of eight Gaussians (sd 0.01): modes covered, the share
# of high-quality samples, training time and sampling speed — the notes' claim "GANs fast
# and sharp, diffusion best but slow", measured at this scale. Every number printed is
# computed here; `PPL_GEN_SMOKE=1` gives a seconds-long run.

# %%
import math
import os
import time
import warnings

import matplotlib

if os.environ.get("MPLBACKEND") is None and not os.environ.get("JPY_PARENT_PID"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import integrate, stats  # noqa: E402
from torch import nn  # noqa: E402

import ppl_gen  # noqa: E402
from ppl_gen.diagnostics import ReliabilityWarning, mode_coverage  # noqa: E402
from ppl_gen.models import GAN  # noqa: E402
from ppl_gen.nn import MLP  # noqa: E402

SMOKE = os.environ.get("PPL_GEN_SMOKE") == "1"
OUT = os.environ.get("PPL_GEN_TUTORIAL_OUT", "tutorial_out")
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(1)
torch.manual_seed(0)
warnings.simplefilter("ignore", ReliabilityWarning)


# %% [markdown]
# ## The optimal discriminator, in one dimension
#
# Hold the generator fixed at G(z) = z + 1, so p_G = N(1, 1), with data N(0, 1). Then
# D*(x) = sigmoid(1/2 − x). Train only the discriminator and compare.

# %%
class Shift(nn.Module):
    def forward(self, z):
        return z + 1.0


gan = GAN(1, 1, objective="minimax", generator=Shift(), discriminator=MLP(1, 1, (32, 32)))
optimizer = torch.optim.Adam(gan.discriminator.parameters(), lr=3e-3)
for _ in range(200 if SMOKE else 1500):
    optimizer.zero_grad()
    gan.adversarial_loss("discriminator", {"x": torch.randn(512, 1)}).backward()
    optimizer.step()
grid = torch.linspace(-2, 3, 201).unsqueeze(-1)
with torch.no_grad():
    learned = torch.sigmoid(gan.discriminate(grid)).numpy().reshape(-1)
optimal = 1 / (1 + np.exp(grid.numpy()[:, 0] - 0.5))
print(f"largest |D - D*| on [-2, 3]: {np.abs(learned - optimal).max():.3f}")


def d(x):
    with torch.no_grad():
        return float(torch.sigmoid(gan.discriminate(torch.tensor([[x]]))))


value = integrate.quad(lambda x: stats.norm(0, 1).pdf(x) * math.log(d(x))
                       + stats.norm(1, 1).pdf(x) * math.log(1 - d(x)), -8, 9, limit=200)[0]


def mixture(x):
    return 0.5 * (stats.norm(0, 1).pdf(x) + stats.norm(1, 1).pdf(x))


jsd = 0.5 * sum(integrate.quad(lambda x, p=p: p.pdf(x) * math.log(p.pdf(x) / mixture(x)),
                               -8, 9, limit=200)[0]
                for p in (stats.norm(0, 1), stats.norm(1, 1)))
print(f"V(G, D) = {value:.4f}; 2 JSD - log 4 = {2 * jsd - math.log(4):.4f} "
      "(the most any discriminator can reach)")

# %% [markdown]
# ## Three models on the ring
#
# PacGAN's metric: a sample is high quality when it lies within 3 sd of a mode; a mode is
# covered when it has a high-quality sample.

# %%
ring = ppl_gen.load_dataset("gaussian_ring", num_data=2000 if SMOKE else 50000)
modes, spread = ring.meta["modes"], ring.meta["mode_std"]
steps_gan = 50 if SMOKE else 3000
steps_ddpm = 50 if SMOKE else 20000
candidates = {
    "GAN (non-saturating)": (ppl_gen.MODELS["gan"].from_dataset(ring), "adversarial",
                             {"num_steps": steps_gan, "batch_size": 100,
                              "learning_rate": 1e-3}),
    "WGAN-GP": (ppl_gen.MODELS["wgan_gp"].from_dataset(ring, penalty_weight=0.1),
                "adversarial", {"num_steps": steps_gan, "batch_size": 100,
                                "learning_rate": 1e-4, "betas": (0.5, 0.9),
                                "discriminator_steps": 5}),
    "DDPM": (ppl_gen.MODELS["ddpm"].from_dataset(ring), "svi",
             {"num_steps": steps_ddpm, "batch_size": 100, "learning_rate": 2e-3,
              "final_learning_rate": 2e-5}),
}
samples = {}
print(f"{'model':28s}{'modes':>7s}{'high quality':>14s}{'train s':>9s}{'samples/s':>11s}")
for label, (model, engine, options) in candidates.items():
    started = time.perf_counter()
    ppl_gen.fit(model, ring, engine=engine, device="cpu", seed=0, **options)
    seconds = time.perf_counter() - started
    samplers = {label: {}}
    if label == "DDPM":
        samplers = {"DDPM, ancestral T = 1000": {},
                    "DDPM, DDIM 50 steps": {"num_steps": 50, "method": "ddim"}}
    for name, how in samplers.items():
        started = time.perf_counter()
        x = model.sample(2500, **how)
        rate = 2500 / (time.perf_counter() - started)
        coverage = mode_coverage(x, modes, spread)
        samples[name] = x
        print(f"{name:28s}{coverage.covered:>5d}/8{100 * coverage.high_quality:>13.1f}%"
              f"{seconds:>9.1f}{rate:>11.0f}")

# %%
figure, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 3.4),
                            constrained_layout=True)
data = ring["x"].numpy()
for ax, (name, x) in zip(axes, samples.items()):
    ax.scatter(data[:2000, 0], data[:2000, 1], s=2, color="0.7")
    ax.scatter(x[:, 0], x[:, 1], s=2, color="C3", alpha=0.4)
    ax.set_title(name, fontsize=9)
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
figure.savefig(os.path.join(OUT, "ring.png"), dpi=90)
plt.show() if os.environ.get("JPY_PARENT_PID") else plt.close(figure)

# %% [markdown]
# Read the printed table for this run: which models cover all eight modes, how much of each
# model's mass sits on them, and what each costs to train and to sample. At this scale the
# GANs train in seconds; DDPM needs far more steps, and its 1,000-step ancestral sampler is
# the slowest to sample — DDIM's 50 deterministic steps buy most of that back.
