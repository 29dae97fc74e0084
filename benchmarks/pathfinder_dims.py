"""Pathfinder's cost against the number of dimensions, and ChEES's default Pathfinder start
on a wide model (issue 16: the low-rank Gaussians).

    python benchmarks/pathfinder_dims.py [--dims 500 1000 2000] [--wide 2000 20000]

First table: a logistic regression with D features on 4 D simulated rows,
``fit(engine="pathfinder")`` with defaults. Second: w_i ~ N(0, 1), y_i ~ N(w_i, 0.5) with D
sites, ``fit(engine="chees", num_warmup=100, num_samples=100, compile=False)``: the
Pathfinder start's seconds, the whole call's, and the process's peak memory. One thread.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import pyro
import pyro.distributions as dist
import torch

import ppl_gen


def logistic(dim: int) -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4 * dim, dim, generator=g)
    y = torch.bernoulli(torch.sigmoid(x @ (torch.randn(dim, generator=g) / dim ** 0.5)),
                        generator=g)
    model = ppl_gen.MODELS["logistic_regression"](dim)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ppl_gen.fit(model, {"x": x, "y": y}, engine="pathfinder", seed=0, device="cpu")
    return time.perf_counter() - started


def wide(y):
    w = pyro.sample("w", dist.Normal(torch.zeros_like(y), 1.0).to_event(1))
    pyro.sample("y", dist.Normal(w, 0.5).to_event(1), obs=y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="*", default=[500, 1000, 2000])
    parser.add_argument("--wide", type=int, nargs="*", default=[2000, 20000])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| D (logistic regression) | Pathfinder s |\n| --- | --- |")
    for dim in args.dims:
        print(f"| {dim:,} | {logistic(dim):.1f} |", flush=True)
    print("\n| D (wide Gaussian) | ChEES call s | Pathfinder start s | peak GB |")
    print("| --- | --- | --- | --- |")
    for dim in args.wide:
        y = torch.randn(dim, generator=torch.Generator().manual_seed(0))
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = ppl_gen.fit(wide, {"y": y}, engine="chees", num_warmup=100,
                                 num_samples=100, compile=False, seed=0, device="cpu")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"| {dim:,} | {time.perf_counter() - started:.1f} | "
              f"{result.info['init'].get('seconds', float('nan')):.1f} | {peak:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
