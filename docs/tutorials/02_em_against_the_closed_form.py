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
# # EM for latent-variable models, checked against the closed form and scikit-learn
#
# A latent-variable model p(x) = ∫ p(x | z) p(z) dz is fit by maximum likelihood with EM:
# the E step sets q(z) to the exact posterior p(z | x, θ), which makes the ELBO touch
# log p(x | θ); the M step maximises the ELBO over θ. So the log-likelihood never goes
# down. This notebook checks three things rather than asserting them:
#
# 1. EM's log-likelihood is monotone, iteration by iteration;
# 2. on a Gaussian mixture, EM reaches the same maximum as scikit-learn's `GaussianMixture`
#    (a trusted, independent implementation);
# 3. on probabilistic PCA, EM climbs to the closed-form maximum-likelihood solution of
#    Tipping & Bishop (1999), whose log-likelihood is known without any iteration.
#
# Every number printed is computed here; `PPL_GEN_SMOKE=1` gives a seconds-long run.

# %%
import os

import matplotlib

if os.environ.get("MPLBACKEND") is None and not os.environ.get("JPY_PARENT_PID"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402

import ppl_gen  # noqa: E402
from ppl_gen.models import ppca_closed_form  # noqa: E402

SMOKE = os.environ.get("PPL_GEN_SMOKE") == "1"
OUT = os.environ.get("PPL_GEN_TUTORIAL_OUT", "tutorial_out")
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(1)

# %% [markdown]
# ## A Gaussian mixture
#
# Three 2-D Gaussian components with full covariances; z is the component of each point.
# The E step computes each point's responsibilities p(z = k | x), the M step the weighted
# means, covariances and weights. ppl_gen's `gmm` is a Pyro model with z enumerated; its EM
# engine starts from k-means.

# %%
data = ppl_gen.load_dataset("gaussian_mixture", dtype=torch.float64)
gmm = ppl_gen.MODELS["gmm"].from_dataset(data).double()
by_em = ppl_gen.fit(gmm, data, engine="em", tol=1e-10, max_iter=20 if SMOKE else 2000,
                    device="cpu")
trace = np.asarray(by_em.history["log_likelihood"])
drops = np.diff(trace)
print(f"EM: {by_em.info['num_iterations']} iterations, mean log-likelihood "
      f"{by_em.info['mean_log_likelihood']:.6f} nats per point")
print(f"largest decrease between iterations: {max(0.0, -drops.min()):.2e} (never negative "
      f"beyond rounding: {bool((drops > -1e-9).all())})")

# %%
reference = GaussianMixture(gmm.num_components, covariance_type="full", tol=1e-10,
                            max_iter=2000, n_init=5, random_state=0).fit(data["x"].numpy())
theirs = float(reference.score(data["x"].numpy()))
print(f"scikit-learn GaussianMixture (best of 5 starts): {theirs:.6f} nats per point")
print(f"difference: {by_em.info['mean_log_likelihood'] - theirs:+.2e}")

# %% [markdown]
# The two agree to the printed digits when both reach the same optimum (mixture
# likelihoods have several; a different start can land in a worse one, which is why
# scikit-learn was given five).
#
# ## Probabilistic PCA: the closed form
#
# PPCA is p(z) = N(0, I), p(x | z) = N(W z + μ, σ² I). Its maximum-likelihood W spans the top
# principal directions of the data, and σ² is the mean of the discarded eigenvalues
# (Tipping & Bishop 1999, eqs. 7–8), so the optimum is known exactly. EM does not know that;
# watch it get there on scikit-learn's 8×8 digits with a 2-D latent space.

# %%
digits = ppl_gen.load_dataset("digits", dtype=torch.float64)
ppca = ppl_gen.MODELS["ppca"].from_dataset(digits, latent_dim=2).double()
by_em_ppca = ppl_gen.fit(ppca, digits, engine="em", tol=1e-10,
                         max_iter=20 if SMOKE else 2000, device="cpu")
closed = float(ppca_closed_form(digits["x"], 2)["mean_log_likelihood"])
fitted = by_em_ppca.info["mean_log_likelihood"]
print(f"EM after {by_em_ppca.info['num_iterations']} iterations: {fitted:.6f} nats per image")
print(f"closed form:                 {closed:.6f} nats per image")
print(f"relative gap: {abs(fitted - closed) / abs(closed):.2e}")

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
left.plot(trace, label="EM")
left.axhline(theirs, color="k", ls="--", label="scikit-learn")
left.set_title("Gaussian mixture: mean log-likelihood")
left.set_xlabel("EM iteration")
left.legend(frameon=False)
right.plot(by_em_ppca.history["log_likelihood"], label="EM")
right.axhline(closed, color="k", ls="--", label="closed form")
right.set_title("PPCA on digits: mean log-likelihood")
right.set_xlabel("EM iteration")
right.legend(frameon=False)
figure.savefig(os.path.join(OUT, "em.png"), dpi=90)
plt.show() if os.environ.get("JPY_PARENT_PID") else plt.close(figure)
