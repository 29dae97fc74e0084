"""Example: GANs and diffusion on a ring of eight Gaussians
=========================================================

The lecture notes' trilemma on the smallest data set that shows it: PacGAN's ring of eight
Gaussians (sd 0.01). Three implicit or bound-based models, all Pyro programs:

* a GAN with the non-saturating generator loss (``gan``) — the generator is ``model()``:
  z ~ N(0, I), x = G(z) a deterministic site;
* a Wasserstein GAN with gradient penalty (``wgan_gp``), five critic steps per generator
  step, lambda = 0.1 (the toy setting of Gulrajani et al.; 10, their image setting, made the
  game oscillate here and covered no mode);
* DDPM (``ddpm``) — the guide is the fixed forward chain, the model the learned reverse
  chain, trained on L_simple.

Printed: modes covered and the share of high-quality samples (PacGAN's metric: within 3 sd
of a mode), training seconds, samples per second; DDPM's bound in nats. Written:
``samples.png`` (each model's samples over the data's density).

    python examples/gans_and_diffusion.py [--smoke] [--gan-steps 3000] [--ddpm-steps 20000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import ppl_gen
from ppl_gen.diagnostics import mode_coverage
from ppl_gen.plots import save_figure


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ring = ppl_gen.load_dataset("gaussian_ring", num_data=2000 if args.smoke else 50000)
    modes, std = ring.meta["modes"], ring.meta["mode_std"]
    gan_steps = 50 if args.smoke else args.gan_steps
    ddpm_steps = 50 if args.smoke else args.ddpm_steps

    models = {
        "GAN (non-saturating)": (ppl_gen.MODELS["gan"].from_dataset(ring), "adversarial",
                                 {"num_steps": gan_steps, "batch_size": 100,
                                  "learning_rate": 1e-3}),
        # lambda = 0.1 as in Gulrajani et al.'s toy experiments: the image setting
        # (lambda = 10) oscillates on this ring and covered no mode in 3,000 steps here
        "WGAN-GP": (ppl_gen.MODELS["wgan_gp"].from_dataset(ring, penalty_weight=0.1),
                    "adversarial",
                    {"num_steps": gan_steps, "batch_size": 100, "learning_rate": 1e-4,
                     "betas": (0.5, 0.9), "discriminator_steps": 5}),
        "DDPM (T = 1000)": (ppl_gen.MODELS["ddpm"].from_dataset(ring), "svi",
                            {"num_steps": ddpm_steps, "batch_size": 100,
                             "learning_rate": 2e-3, "final_learning_rate": 2e-5}),
    }
    results, samples = {}, {}
    for label, (model, engine, options) in models.items():
        started = time.perf_counter()
        ppl_gen.fit(model, ring, engine=engine, device="cpu", seed=0, **options)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        x = model.sample(2500)
        rate = 2500 / (time.perf_counter() - started)
        coverage = mode_coverage(x, modes, std)
        results[label] = {"modes": coverage.covered, "high_quality": coverage.high_quality,
                          "train_seconds": seconds, "samples_per_second": rate}
        samples[label] = x
        print(f"{label:<22} {coverage.covered} of 8 modes, "
              f"{100 * coverage.high_quality:5.1f}% high quality, trained {seconds:5.1f} s, "
              f"{rate:9.0f} samples/s")
    ddpm = models["DDPM (T = 1000)"][0]
    bound = ddpm.bound(ring["x"][:500]).nll.mean()
    print(f"DDPM bound on -log p(x): {float(bound):.2f} nats per point")
    results["ddpm_bound"] = float(bound)

    fig, axes = plt.subplots(1, len(samples), figsize=(4 * len(samples), 4),
                             constrained_layout=True)
    data = ring["x"].numpy()
    for ax, (label, x) in zip(axes, samples.items()):
        ax.scatter(data[:2000, 0], data[:2000, 1], s=2, color="0.7")
        ax.scatter(x[:, 0], x[:, 1], s=2, color="C3", alpha=0.4)
        ax.set_title(label)
        ax.set_xlim(-1.5, 1.5)
        ax.set_ylim(-1.5, 1.5)
        ax.set_aspect("equal")
    save_figure(fig, out / "samples.png")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes")
    parser.add_argument("--gan-steps", type=int, default=3000)
    parser.add_argument("--ddpm-steps", type=int, default=20000)
    parser.add_argument("--out", default="examples_out/gans_and_diffusion")
    main(parser.parse_args())
