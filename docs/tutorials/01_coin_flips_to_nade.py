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
# # From coin flips to NADE: how many parameters does a distribution over images need?
#
# The lecture's story, computed. A binary image of n pixels has 2^n possible values, so a
# table of their probabilities needs 2^n − 1 numbers. Independence cuts that to n, but
# throws away every relation between pixels. The chain rule
# p(x) = p(x_1) p(x_2 | x_1) ... p(x_n | x_<n) is exact for any distribution; an
# autoregressive model keeps it and shares parameters between the conditionals:
#
# | model | p(x_i given the past) | parameters |
# | --- | --- | --- |
# | full joint table | any | 2^n − 1 |
# | independent pixels | p(x_i) | n |
# | Markov chain | p(x_i given x_(i−1)) | 2n − 1 |
# | NADE | sigmoid(a_i · h_i + b_i), h_i = sigmoid(W_<i x_<i + c) | grows as n × hidden |
#
# Every model here is a Pyro model with an **exact** log-likelihood, fit by maximum
# likelihood with ppl_gen's SVI engine (an empty guide: −ELBO is exactly −log p(x)).
# Every number printed is computed by this notebook. Run it as a notebook (jupytext opens
# this file) or as a script; `PPL_GEN_SMOKE=1` gives a seconds-long run.

# %%
import itertools
import math
import os
import warnings

import matplotlib

if os.environ.get("MPLBACKEND") is None and not os.environ.get("JPY_PARENT_PID"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import ppl_gen  # noqa: E402
from ppl_gen.diagnostics import ReliabilityWarning  # noqa: E402
from ppl_gen.models.autoregressive import full_joint_parameters  # noqa: E402

SMOKE = os.environ.get("PPL_GEN_SMOKE") == "1"
OUT = os.environ.get("PPL_GEN_TUTORIAL_OUT", "tutorial_out")
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(1)
torch.manual_seed(0)
warnings.simplefilter("ignore", ReliabilityWarning)

# %% [markdown]
# ## A 2×2 patch: small enough for the full table
#
# Take the four centre pixels of scikit-learn's 8×8 digits, binarised: n = 4, so 16
# possible patches. The maximum-likelihood full joint is just the table of observed
# frequencies — no model can give the training data a higher likelihood. That makes it an
# exact yardstick.

# %%
digits = ppl_gen.load_dataset("digits", binarize=True)
patches = digits["x"].reshape(-1, 8, 8)[:, 3:5, 3:5].reshape(-1, 4)
every_patch = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)))
codes = (patches * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(-1).long()
counts = torch.bincount(codes, minlength=16).double()
table_ll = float((counts[counts > 0] * (counts[counts > 0] / counts.sum()).log()).sum()
                 / counts.sum())
print(f"{len(patches)} patches; full joint: {full_joint_parameters(4)} parameters, "
      f"training log-likelihood {table_ll:.4f} nats per patch (the maximum)")


# %%
def fit_exactly(name: str, data: torch.Tensor, steps: int, **options):
    model = ppl_gen.MODELS[name](dim=data.shape[1], **options)
    model.initialize_bias(data)  # start at the independent model's maximum likelihood
    ppl_gen.fit(model, {"x": data}, engine="svi", num_steps=steps, learning_rate=0.02,
                final_learning_rate=2e-4, device="cpu", seed=0)
    model.eval()
    return model


steps = 100 if SMOKE else 1500
small = {name: fit_exactly(name, patches, steps, **opts) for name, opts in (
    ("independent_bernoulli", {}), ("markov_chain", {}), ("nade", {"hidden_dim": 8}))}
print(f"{'model':24s}{'parameters':>11s}{'train log-lik':>15s}{'sum of p over all 16':>22s}")
for name, model in small.items():
    with torch.no_grad():
        ll = float(model.log_prob(patches).mean())
        total = float(model.log_prob(every_patch).exp().sum())
    print(f"{name:24s}{model.num_parameters():>11d}{ll:>15.4f}{total:>22.6f}")
    assert ll <= table_ll + 1e-4  # nobody beats the table on its own data

# %% [markdown]
# Two things to read off. Each model's probabilities over all 16 patches sum to 1: the
# log-likelihood is exact, not a bound. And no model's training log-likelihood is above
# the table's (the cell checks it); how close each gets is the price of its assumptions.
#
# ## The whole 8×8 image: the table is impossible
#
# With n = 64 pixels the full table has 2^64 − 1 ≈ 1.8 × 10^19 parameters. The structured
# models do not care. Fit them on the training split and score the held-out test split
# (nats per image, and bits per pixel).

# %%
train = ppl_gen.load_dataset("digits", split="train", binarize=True)
test = ppl_gen.load_dataset("digits", split="test", binarize=True)
print(f"full joint: {full_joint_parameters(64):,} parameters "
      f"(about 10^{64 * math.log10(2):.1f})")
big = {name: fit_exactly(name, train["x"], 100 if SMOKE else 3000, **opts) for name, opts in (
    ("independent_bernoulli", {}), ("markov_chain", {}), ("fvsbn", {}),
    ("nade", {"hidden_dim": 16 if SMOKE else 100}))}
print(f"{'model':24s}{'parameters':>11s}{'test NLL (nats)':>17s}{'bits/pixel':>12s}")
nll = {}
for name, model in big.items():
    with torch.no_grad():
        nll[name] = -float(model.log_prob(test["x"]).mean())
    print(f"{name:24s}{model.num_parameters():>11,d}{nll[name]:>17.2f}"
          f"{nll[name] / 64 / math.log(2):>12.3f}")
best = min(nll, key=nll.get)
print(f"best on held-out images: {best}")

# %% [markdown]
# ## Sampling: one pixel at a time
#
# Sampling an autoregressive model is ancestral: draw x_1, then x_2 given x_1, and so on —
# 64 sequential steps per image, the "slow generation" of the lecture.

# %%
figure, axes = plt.subplots(len(big), 1, figsize=(8, 1.2 * len(big)), constrained_layout=True)
for ax, (name, model) in zip(axes, big.items()):
    with torch.no_grad():
        images = model.sample(12).reshape(12, 8, 8)
    ax.imshow(torch.cat(list(images), dim=1), cmap="gray_r", interpolation="nearest")
    ax.set_title(f"{name}: test NLL {nll[name]:.1f} nats", fontsize=9)
    ax.axis("off")
figure.savefig(os.path.join(OUT, "samples.png"), dpi=90)
plt.show() if os.environ.get("JPY_PARENT_PID") else plt.close(figure)
