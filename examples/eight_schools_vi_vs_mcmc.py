"""Example: eight schools — the funnel, divergences, and VI against NUTS
=======================================================================

The centered hierarchy theta_j ~ N(mu, tau) has a funnel between tau and theta: NUTS cannot
follow it into its neck and reports divergences. Reparameterising (theta = mu + tau *
theta_tilde, the non-centered form) removes the funnel. Then mean-field and full-rank VI
are compared with NUTS parameter by parameter, with PSIS k-hat saying whether each
approximation can be trusted (Yao et al. 2018). Writes ``funnel.png`` and
``comparison.png``, and prints the comparison table.

    python examples/eight_schools_vi_vs_mcmc.py [--smoke] [--out DIR]
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
from ppl_gen.diagnostics import compare_posteriors  # noqa: E402
from ppl_gen.plots import plot_comparison, save_figure  # noqa: E402


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = ppl_gen.load_dataset("eight_schools")
    size = dict(num_warmup=50, num_samples=50, num_chains=2) if args.smoke else \
        dict(num_warmup=1000, num_samples=1000, num_chains=4)
    fits = {}
    for name in ("eight_schools_centered", "eight_schools"):
        model = ppl_gen.MODELS[name].from_dataset(data)
        fits[name] = ppl_gen.fit(model, data, engine="nuts", jit_compile=True,
                                 target_accept_prob=0.9, device="cpu", **size)
        print(f"{name:24s} divergences: {fits[name].info['num_divergences']}")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, constrained_layout=True)
    for ax, (name, fit) in zip(axes, fits.items()):
        theta0 = fit.samples["theta"][..., 0].reshape(-1).numpy()
        log_tau = np.log(fit.samples["tau"].reshape(-1).numpy())
        diverging = fit.sample_stats["diverging"].reshape(-1)
        ax.scatter(theta0, log_tau, s=3, alpha=0.4)
        ax.scatter(theta0[diverging], log_tau[diverging], s=10, color="red",
                   label="divergent")
        ax.set_title(name.replace("eight_schools", "eight schools").replace("_", " "))
        ax.set_xlabel("theta[0]")
    axes[0].set_ylabel("log tau")
    axes[0].legend(frameon=False)
    save_figure(fig, out / "funnel.png")

    model = ppl_gen.MODELS["eight_schools"].from_dataset(data)
    vi_size = dict(num_steps=200 if args.smoke else 4000, learning_rate=0.02,
                   final_learning_rate=2e-4, num_particles=4, vectorize_particles=True)
    vi = {name: ppl_gen.fit(model, data, engine="svi", guide=guide, device="cpu", **vi_size)
          for name, guide in (("meanfield", "normal"), ("fullrank", "mvn"))}
    comparison = compare_posteriors(vi, fits["eight_schools"],
                                    num_samples=200 if args.smoke else 4000,
                                    num_psis_samples=200 if args.smoke else 2000)
    print(comparison.to_markdown())
    save_figure(plot_comparison(comparison), out / "comparison.png")
    print(f"wrote {out / 'funnel.png'} and {out / 'comparison.png'}")
    return {"divergences": {k: v.info["num_divergences"] for k, v in fits.items()},
            "khat": comparison.khat}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--out", default="examples_out/eight_schools")
    main(parser.parse_args())
