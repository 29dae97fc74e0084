"""Example: explicit densities — from independent pixels to NADE, MADE and flows
===============================================================================

The lecture's story in one script:

1. How many parameters does each factorisation of a binary image need? (the full joint
   2^n - 1, independent pixels n, a Markov chain 2n - 1, FVSBN, NADE, MADE, PixelCNN)
2. Fit each by maximum likelihood (the SVI engine with an empty guide: -ELBO is exactly
   -log p(x)) and compare exact test log-likelihoods: more structure, better density.
3. Sample them — one pixel at a time, the seed's "slow sequential generation" — and time it.
4. Normalizing flows on two moons: exact density by change of variables, drawn as contours.

Writes ``samples.png`` and ``flows.png``; prints both tables.

    python examples/explicit_density.py [--smoke] [--data mnist|digits] [--num-steps N]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import ppl_gen  # noqa: E402
from ppl_gen.models.autoregressive import full_joint_parameters  # noqa: E402
from ppl_gen.plots import save_figure  # noqa: E402

MODELS = ["independent_bernoulli", "markov_chain", "fvsbn", "nade", "made", "pixelcnn"]


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_name = "digits" if args.smoke else args.data
    options = {"binarize": True} if data_name == "digits" else {}
    train = ppl_gen.load_dataset(data_name, split="train", **options)
    test = ppl_gen.load_dataset(data_name, split="test", **options)
    dim = train["x"].shape[1]
    side = int(math.isqrt(dim))
    steps = 20 if args.smoke else args.num_steps
    hidden = 32 if args.smoke else 500

    print(f"{data_name}: {train.num_data} training and {test.num_data} test images of "
          f"{side}x{side} binary pixels\n")
    print(f"{'model':24s}{'parameters':>14s}{'test NLL (nats)':>18s}{'samples/s':>12s}")
    if dim > 60:  # 2^784 - 1 has 237 digits: show its size instead
        count = f"2^{dim} - 1"
        print(f"{'full joint':24s}{count:>14s}   (about 10^{dim * math.log10(2):.0f})")
    else:
        print(f"{'full joint':24s}{full_joint_parameters(dim):>14,d}")
    results, grids = {}, {}
    for name in MODELS:
        kwargs = {"nade": {"hidden_dim": hidden}, "made": {"hidden_dims": (hidden,)},
                  "pixelcnn": {"channels": 8 if args.smoke else 64}}.get(name, {})
        model = ppl_gen.MODELS[name].from_dataset(train, **kwargs)
        model.initialize_bias(train["x"])  # marginal log-odds: the independent model's MLE
        ppl_gen.fit(model, train, engine="svi", num_steps=steps, learning_rate=1e-2,
                    final_learning_rate=1e-4, batch_size=100, device="cpu")
        model.eval()
        with torch.no_grad():
            nll = -float(model.log_prob(test["x"]).mean())
            start = time.perf_counter()
            grids[name] = model.sample(16)
            rate = 16 / (time.perf_counter() - start)
        results[name] = {"parameters": model.num_parameters(), "test_nll": nll,
                         "samples_per_second": rate}
        print(f"{name:24s}{model.num_parameters():>14,d}{nll:>18.2f}{rate:>12.1f}")

    fig, axes = plt.subplots(len(MODELS), 1, figsize=(8, 1.0 * len(MODELS) + 0.5),
                             constrained_layout=True)
    for ax, name in zip(axes, MODELS):
        images = grids[name].reshape(16, side, side)
        ax.imshow(torch.cat(list(images), dim=1), cmap="gray_r", interpolation="nearest")
        ax.set_title(f"{name} (test NLL {results[name]['test_nll']:.1f} nats)", fontsize=9)
        ax.axis("off")
    save_figure(fig, out / "samples.png")

    moons = ppl_gen.load_dataset("two_moons")
    flows = {}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), constrained_layout=True)
    grid_x, grid_y = torch.meshgrid(torch.linspace(-2, 3, 150), torch.linspace(-1.5, 2, 120),
                                    indexing="xy")
    grid = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1)
    print(f"\n{'flow':10s}{'parameters':>12s}{'train log-lik/point':>22s}")
    for ax, flow in zip(axes, ("realnvp", "maf", "nsf")):
        model = ppl_gen.MODELS[flow].from_dataset(moons)
        ppl_gen.fit(model, moons, engine="svi", num_steps=50 if args.smoke else 3000,
                    learning_rate=5e-3, final_learning_rate=5e-5, device="cpu")
        with torch.no_grad():
            density = model.log_prob(grid).exp().reshape(grid_x.shape)
            ll = float(model.log_prob(moons["x"]).mean())
        flows[flow] = ll
        print(f"{flow:10s}{model.num_parameters():>12,d}{ll:>22.3f}")
        ax.contourf(grid_x, grid_y, density, levels=30, cmap="viridis")
        ax.set_title(f"{flow}: exact density")
    save_figure(fig, out / "flows.png")
    print(f"\nwrote {out / 'samples.png'} and {out / 'flows.png'}")
    return {"binary": results, "flows": flows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--data", default="mnist", choices=["mnist", "digits"])
    parser.add_argument("--num-steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (the networks are big enough to use them)")
    parser.add_argument("--out", default="examples_out/explicit_density")
    main(parser.parse_args())
