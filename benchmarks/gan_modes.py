"""Mode coverage of the GAN objectives on PacGAN's 2-D ring and grid (Lin et al. 2018,
Table 1), with PacGAN's networks and metric and a stated fraction of its training budget.

PacGAN's configuration (repository fjxmlzn/PacGAN, synthetic_data_experiments/*/config.py):
ring of 8 Gaussians (radius 1, sd 0.01) and 5 x 5 grid ({-4,...,4}^2, sd 0.05); generator
2 -> 4 x 400 (batch norm, ReLU) -> 2; discriminator 3 maxout layers (200 units, 5 pieces) ->
1; Adam(1e-4, beta1 = 0.8), batch 100, 400 epochs of 100,000 points (400,000 steps); 2,500
samples scored: a sample is high quality within 3 sd of its nearest mode, a mode covered
with at least one. Published (10 runs): GAN ring 6.3 of 8 modes, grid 17.3 of 25 with
94.8% high quality; PacGAN4 7.8 and 24.8.

    python benchmarks/gan_modes.py [--steps 5000] [--seeds 3] [--objectives ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np
import torch
from torch import nn

import ppl_gen
from ppl_gen.diagnostics import mode_coverage
from ppl_gen.models import GAN

#: Lin et al. (2018), Table 1 (as quoted in issue 12; "-": not quoted there, not claimed).
PUBLISHED = {"gaussian_ring": {"GAN": ("6.3", "-"), "PacGAN4": ("7.8", "-")},
             "gaussian_grid": {"GAN": ("17.3", "94.8%"), "PacGAN4": ("24.8", "-")}}


class Maxout(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, pieces: int) -> None:
        super().__init__()
        self.linear, self.pieces = nn.Linear(in_dim, out_dim * pieces), pieces

    def forward(self, x):
        out = self.linear(x)
        return out.reshape(*out.shape[:-1], -1, self.pieces).max(-1).values


def pacgan_networks(bias: bool) -> tuple[nn.Module, nn.Module]:
    layers, width = [], 2
    for _ in range(4):
        layers += [nn.Linear(width, 400, bias=False), nn.BatchNorm1d(400), nn.ReLU()]
        width = 400
    generator = nn.Sequential(*layers, nn.Linear(400, 2))
    discriminator = nn.Sequential(Maxout(2, 200, 5), Maxout(200, 200, 5), Maxout(200, 200, 5),
                                  nn.Linear(200, 1, bias=bias))
    for module in [*generator.modules(), *discriminator.modules()]:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return generator, discriminator


def run(dataset: str, objective: str, seed: int, steps: int,
        penalty_weight: float = 10.0) -> dict:
    torch.manual_seed(seed)
    ds = ppl_gen.load_dataset(dataset, num_data=100000, seed=seed)
    generator, discriminator = pacgan_networks(bias=objective not in ("wgan", "wgan_gp"))
    model = GAN(2, 2, objective=objective, generator=generator, discriminator=discriminator,
                penalty_weight=penalty_weight)
    options = {"learning_rate": 1e-4, "betas": (0.8, 0.999)}
    if objective == "wgan_gp":  # Gulrajani et al.'s settings
        options = {"learning_rate": 1e-4, "betas": (0.5, 0.9), "discriminator_steps": 5}
    if objective == "wgan":  # Arjovsky et al.'s settings
        options = {"learning_rate": 5e-5, "betas": (0.5, 0.999), "discriminator_steps": 5}
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ppl_gen.fit(model, ds, engine="adversarial", num_steps=steps, batch_size=100,
                    num_threads=1, device="cpu", seed=seed, **options)
    seconds = time.perf_counter() - started
    coverage = mode_coverage(model.sample(2500), ds.meta["modes"], ds.meta["mode_std"])
    return {"dataset": dataset, "objective": objective, "seed": seed, "steps": steps,
            "modes": coverage.covered, "high_quality": 100 * coverage.high_quality,
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--objectives", nargs="*",
                        default=["minimax", "non_saturating", "wgan", "wgan_gp"])
    parser.add_argument("--datasets", nargs="*", default=["gaussian_ring", "gaussian_grid"])
    parser.add_argument("--penalty-weight", type=float, default=10.0,
                        help="WGAN-GP's lambda (10 for images; Gulrajani et al.'s toy code "
                        "uses 0.1)")
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets:
        for objective in args.objectives:
            for seed in range(args.seeds):
                row = run(dataset, objective, seed, args.steps, args.penalty_weight)
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(f"\n{args.steps} steps ({100 * args.steps / 400000:.2g}% of PacGAN's 400,000), "
          f"{args.seeds} seeds; mean (min-max) over seeds:\n")
    print("| data | objective | modes covered | high-quality % | s / run | published "
          "(GAN; PacGAN4) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for dataset in args.datasets:
        total = len(ppl_gen.load_dataset(dataset, num_data=10).meta["modes"])
        published = PUBLISHED[dataset]
        for objective in args.objectives:
            sel = [r for r in rows if r["dataset"] == dataset and r["objective"] == objective]
            modes = [r["modes"] for r in sel]
            good = [r["high_quality"] for r in sel]
            print(f"| {dataset} | {objective} | {statistics.mean(modes):.1f} of {total} "
                  f"({min(modes)}-{max(modes)}) | {statistics.mean(good):.1f} "
                  f"({min(good):.1f}-{max(good):.1f}) | "
                  f"{statistics.median(r['seconds'] for r in sel):.0f} | "
                  f"{published['GAN'][0]}, {published['GAN'][1]}; "
                  f"{published['PacGAN4'][0]}, {published['PacGAN4'][1]} |")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
