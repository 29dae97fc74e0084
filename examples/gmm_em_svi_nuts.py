"""Example: one Gaussian mixture, three ways to fit it
=====================================================

EM (exact E step, closed-form M step), SVI (TraceEnum_ELBO sums the assignments z out,
so its objective is the same marginal likelihood) and NUTS (priors on the parameters, z
marginalised). EM and SVI should agree on the maximum-likelihood point; NUTS gives a
posterior around it. Writes ``gmm.png``: the data with each fit's component ellipses, and
EM's log-likelihood per iteration (it never decreases).

    python examples/gmm_em_svi_nuts.py [--smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import ppl_gen  # noqa: E402
from ppl_gen.plots import save_figure  # noqa: E402


def ellipse(ax, loc, cov, color, label=None, **style):
    """Two-sd ellipse of N(loc, cov)."""
    angles = np.linspace(0, 2 * np.pi, 100)
    circle = np.stack([np.cos(angles), np.sin(angles)])
    points = loc[:, None] + 2 * np.linalg.cholesky(cov) @ circle
    ax.plot(*points, color=color, label=label, **style)


def relabel(locs: np.ndarray) -> np.ndarray:
    """Order components by their first coordinate (mixtures are identified up to a
    permutation of labels; chains and fits may pick different ones)."""
    return np.argsort(locs[..., 0], axis=-1)


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = ppl_gen.load_dataset("gaussian_mixture", dtype=torch.float64)
    x = data["x"].numpy()

    em_model = ppl_gen.MODELS["gmm"].from_dataset(data).double()
    by_em = ppl_gen.fit(em_model, data, engine="em", device="cpu")

    svi_model = ppl_gen.MODELS["gmm"].from_dataset(data).double()
    svi_model.initialize(data["x"], init="random", seed=1)  # a worse start than EM's k-means
    ppl_gen.fit(svi_model, data, engine="svi", num_steps=100 if args.smoke else 1500,
                         learning_rate=0.05, final_learning_rate=1e-3, device="cpu")

    bayes = ppl_gen.MODELS["bayesian_gmm"].from_dataset(data).double()
    by_nuts = ppl_gen.fit(bayes, data, engine="nuts", num_warmup=20 if args.smoke else 300,
                          num_samples=20 if args.smoke else 300, num_chains=1,
                          jit_compile=True, device="cpu")

    em_ll = by_em.info["mean_log_likelihood"]
    with torch.no_grad():
        svi_ll = float(svi_model.log_prob(data["x"]).mean())
    print(f"EM  : mean log-likelihood {em_ll:.5f} after {by_em.info['num_iterations']} "
          "iterations")
    print(f"SVI : mean log-likelihood {svi_ll:.5f} (TraceEnum_ELBO, z summed out)")
    locs = by_nuts.samples["locs"][0].numpy()  # (draw, K, D)
    order = relabel(locs)
    locs = np.take_along_axis(locs, order[..., None], axis=1)
    print("NUTS: posterior mean of the component means (relabelled):")
    print(np.round(locs.mean(0), 3))

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    left.scatter(*x.T, s=4, color="0.6")
    # EM wide and pale, SVI dashed on top: where they coincide both stay visible.
    styles = ((em_model, "C0", "EM", {"lw": 4, "alpha": 0.4}),
              (svi_model, "C1", "SVI", {"lw": 1.5, "ls": "--"}))
    for model, color, name, style in styles:
        tril = model._scale_tril().detach().numpy()
        for k in range(model.num_components):
            ellipse(left, model.locs.detach().numpy()[k], tril[k] @ tril[k].T, color,
                    name if k == 0 else None, **style)
    left.scatter(*locs.reshape(-1, 2).T, s=2, color="C3", alpha=0.3, label="NUTS draws of "
                 "the means")
    left.legend(frameon=False)
    left.set_title("fitted components (2 sd)")
    right.plot(by_em.history["log_likelihood"], marker=".")
    right.set_xlabel("EM iteration")
    right.set_ylabel("mean log-likelihood")
    right.set_title("EM never decreases the likelihood")
    save_figure(fig, out / "gmm.png")
    print(f"wrote {out / 'gmm.png'}")
    return {"em": em_ll, "svi": svi_ll}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--out", default="examples_out/gmm")
    main(parser.parse_args())
