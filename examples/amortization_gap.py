"""Example: the amortization gap, with NUTS as the reference posterior
==================================================================

A VAE's encoder answers "what is q(z | x)?" for every x with one network. How much does that
sharing cost? For a trained decoder and a few test images, ppl_gen runs NUTS on p(z | x),
fits the best diagonal Gaussian q*(z | x) to each image by SVI, and reports (Cremer, Li &
Duvenaud 2018):

    approximation gap = log p(x) − ELBO(q*)       the Gaussian family's limit
    amortization gap  = ELBO(q*) − ELBO(q_enc)    the price of amortisation

with log p(x) by importance sampling, plus PSIS k-hat of each q against the NUTS draws.
Writes ``posteriors.png`` (NUTS, encoder and q* draws for the first image; 2-D latent).

    python examples/amortization_gap.py [--smoke] [--num-steps 5000] [--num-images 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ppl_gen
from ppl_gen.diagnostics import amortization_gap
from ppl_gen.inference import draw_from_guide
from ppl_gen.plots import plot_posterior_2d, save_figure


def main(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "digits" if args.smoke else "mnist"
    train = ppl_gen.load_dataset(name, split="train", binarize=True)
    test = ppl_gen.load_dataset(name, split="test", binarize=True)
    vae = ppl_gen.MODELS["vae"].from_dataset(train, latent_dim=2,
                                             hidden_dims=(64,) if args.smoke else (400,))
    ppl_gen.fit(vae, train, engine="svi", num_steps=100 if args.smoke else args.num_steps,
                learning_rate=1e-3, progress_bar=not args.smoke)
    num_images = 1 if args.smoke else args.num_images
    gaps = amortization_gap(
        vae, test["x"][:num_images], num_warmup=100 if args.smoke else 500,
        num_samples=100 if args.smoke else 1000, num_chains=2,
        local_steps=200 if args.smoke else 3000,
        num_importance=500 if args.smoke else 5000)
    print(f"{'image':>5s}{'log p(x)':>10s}{'ELBO q*':>10s}{'ELBO enc':>10s}"
          f"{'approx. gap':>13s}{'amort. gap':>12s}{'k-hat q*':>10s}{'k-hat enc':>11s}")
    for gap in gaps:
        print(f"{gap.index:>5d}{gap.log_marginal:>10.2f}{gap.elbo_optimal:>10.2f}"
              f"{gap.elbo_encoder:>10.2f}{gap.approximation_gap:>13.2f}"
              f"{gap.amortization_gap:>12.2f}{gap.comparison.khat['optimal']:>10.2f}"
              f"{gap.comparison.khat['encoder']:>11.2f}")
    print("\nk-hat < 0.5: the Gaussian is close to the NUTS posterior; > 0.7: it is not.")

    first = gaps[0]
    nuts = first.mcmc.samples["z"].reshape(-1, 2)
    encoder = draw_from_guide(first.mcmc.problem, lambda x: vae.guide(x=x), 1000)["z"]
    optimal = first.comparison.draws["optimal"]
    q_star = torch.stack([torch.as_tensor(optimal["z[0, 0]"]),
                          torch.as_tensor(optimal["z[0, 1]"])], -1)
    fig = plot_posterior_2d({"NUTS": nuts, "encoder q(z|x)": encoder, "optimal q*": q_star},
                            title=f"p(z | x) for test image {first.index}")
    save_figure(fig, out / "posteriors.png")
    print(f"wrote {out / 'posteriors.png'}")
    return [g.to_dict() for g in gaps]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--num-steps", type=int, default=5000)
    parser.add_argument("--num-images", type=int, default=3)
    parser.add_argument("--out", default="examples_out/amortization_gap")
    main(parser.parse_args())
