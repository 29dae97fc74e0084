"""Continuous density models on dequantised digits: test bits per dimension.

scikit-learn's 8x8 digits have 17 intensity levels; uniform dequantisation
x = (k + u) / 17, u ~ U(0, 1) makes them continuous on [0, 1]^64. A density p on that cube
gives the discrete images probability at least p(x) / 17^64, so the usual figure is

    bits/dim = (-log p(x) + 64 log 17) / (64 log 2),

an upper bound on the discrete model's code length. Each model (RealNVP, MAF, neural spline
flow, MADE with mixture-of-Gaussian conditionals, and a full-covariance Gaussian fitted in
closed form as the baseline) is trained by maximum likelihood through ppl_gen's SVI engine on
the fixed training split and scored on the test split.

    python benchmarks/flows_bpd.py [--epochs 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import ppl_gen

LEVELS = 17  # digits' intensities 0..16
BATCH = 100


def bits_per_dim(log_density: torch.Tensor, dim: int) -> float:
    return float((-log_density.mean() + dim * math.log(LEVELS)) / (dim * math.log(2)))


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    train = ppl_gen.load_dataset("digits", split="train", dequantize=True, seed=0)
    test = ppl_gen.load_dataset("digits", split="test", dequantize=True, seed=1)
    dim = train["x"].shape[1]
    x = train["x"]
    mean = x.mean(0)
    cov = torch.cov(x.T, correction=0) + 1e-4 * torch.eye(dim)  # floor: constant pixels
    gaussian = torch.distributions.MultivariateNormal(mean, cov)
    print(f"# continuous density models on dequantised digits ({train.num_data} train / "
          f"{test.num_data} test, 64 dims); {args.epochs} epochs, batch {BATCH}, "
          f"Adam 5e-3 -> 5e-5, {args.threads} threads\n")
    print("| model | parameters | test bits/dim | train s |")
    print("| --- | --- | --- | --- |")
    print(f"| Gaussian (closed-form MLE, full covariance) | {dim + dim * (dim + 1) // 2:,} | "
          f"{bits_per_dim(gaussian.log_prob(test['x']), dim):.3f} | - |")
    steps = args.epochs * math.ceil(train.num_data / BATCH)
    for name, kwargs in (("realnvp", {"hidden_dims": (256, 256)}),
                         ("maf", {"hidden_dims": (256, 256)}),
                         ("nsf", {"hidden_dims": (256, 256), "bound": 3.0}),
                         ("made_mog", {"hidden_dims": (256, 256), "num_components": 5})):
        model = ppl_gen.MODELS[name].from_dataset(train, **kwargs)
        start = time.perf_counter()
        ppl_gen.fit(model, train, engine="svi", num_steps=steps, batch_size=BATCH,
                    learning_rate=5e-3, final_learning_rate=5e-5, device="cpu")
        seconds = time.perf_counter() - start
        with torch.no_grad():
            bpd = bits_per_dim(model.log_prob(test["x"]), dim)
        print(f"| {name} | {model.num_parameters():,} | {bpd:.3f} | {seconds:.0f} |",
              flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    main(parser.parse_args())
