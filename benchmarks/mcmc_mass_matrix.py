"""ChEES with a diagonal vs a dense mass matrix, on the three models of benchmarks/mcmc.py.

Gradient evaluations and min bulk ESS per run (500 + 500 per chain, compiled, 1 thread),
for 16 and 64 chains and two seeds: a dense (pooled D x D) matrix pays off on correlated
posteriors (logistic regression on breast_cancer) and not on diagonal ones.

    python benchmarks/mcmc_mass_matrix.py [--seeds 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from mcmc import latent_only, min_ess, targets, warm_up_inductor

import ppl_gen


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    warm_up_inductor()
    print("| model | chains | mass matrix | gradient evaluations per run | min bulk ESS per "
          "run | ESS/s per run |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (model, data) in targets().items():
        for chains in (16, 64):
            for mass in ("diagonal", "dense"):
                grads, values, rates = [], [], []
                for seed in range(args.seeds):
                    start = time.perf_counter()
                    result = ppl_gen.fit(model, data, engine="chees", num_chains=chains,
                                         num_warmup=500, num_samples=500, seed=seed,
                                         device="cpu", mass_matrix=mass)
                    seconds = time.perf_counter() - start
                    value = min_ess(latent_only(result, model, data))
                    grads.append(f"{result.info['gradient_evaluations']:,}")
                    values.append(f"{value:,.0f}")
                    rates.append(f"{value / seconds:,.0f}")
                print(f"| {name} | {chains} | {mass} | {', '.join(grads)} | "
                      f"{', '.join(values)} | {', '.join(rates)} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    main(parser.parse_args())
