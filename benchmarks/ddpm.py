"""DDPM figures: the bound in bits/dim on dequantised digits (beside the flows' exact
figures), mode coverage on PacGAN's ring and grid (beside the GANs), and sampling speed for
the full chain and a strided one.

    python benchmarks/ddpm.py [--steps 5000] [--ring-steps 5000] [--seeds 2]

Digits: scikit-learn's 8x8 digits, 17 levels, uniformly dequantised to [0, 1]^64, the fixed
1,438 / 359 split of benchmarks/flows_bpd.py; bits/dim = (bound + 64 log 17) / (64 log 2),
an upper bound on the discrete code length, as for the flows there. T = 1000, linear betas,
the MLP noise predictor (3 x 128 hidden, SiLU), Adam 2e-3 decayed to 2e-5, batch 100.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import torch

import ppl_gen
from ppl_gen.diagnostics import mode_coverage


def _fit(model, data, loss: str, steps: int, seed: int) -> float:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ppl_gen.fit(model, data, engine="svi", loss=loss, num_steps=steps, batch_size=100,
                    learning_rate=2e-3, final_learning_rate=2e-5, num_threads=1,
                    device="cpu", seed=seed)
    return time.perf_counter() - started


def _sampling(model, num: int, steps: int | None) -> tuple[torch.Tensor, float]:
    started = time.perf_counter()
    x = model.sample(num, num_steps=steps)
    return x, num / (time.perf_counter() - started)


def digits(steps: int, seeds: int) -> None:
    train = ppl_gen.load_dataset("digits", split="train", dequantize=True)
    test = ppl_gen.load_dataset("digits", split="test", dequantize=True)
    print("\n| objective | seed | test bits/dim (bound) | train s | samples/s T=1000 | "
          "samples/s 50 steps |")
    print("| --- | --- | --- | --- | --- | --- |")
    for loss in ("ddpm_simple", "ddpm_rb"):
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = ppl_gen.MODELS["ddpm"].from_dataset(train, data_range=(0.0, 1.0))
            seconds = _fit(model, train, loss, steps, seed)
            bound = model.bound(test["x"], seed=1000 + seed)
            bpd = float((bound.nll.mean() + 64 * math.log(17)) / (64 * math.log(2)))
            _, full = _sampling(model, 200, None)
            _, fast = _sampling(model, 200, 50)
            print(f"| {loss} | {seed} | {bpd:.3f} | {seconds:.0f} | {full:.1f} | {fast:.1f} |",
                  flush=True)


def modes(steps: int, seeds: int) -> None:
    print("\n| data | seed | modes (T=1000) | high-quality % (T=1000) | modes (50 steps) | "
          "high-quality % (50 steps) | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in ("gaussian_ring", "gaussian_grid"):
        for seed in range(seeds):
            torch.manual_seed(seed)
            ds = ppl_gen.load_dataset(name, num_data=100000, seed=seed)
            model = ppl_gen.MODELS["ddpm"].from_dataset(ds)
            seconds = _fit(model, ds, "ddpm_simple", steps, seed)
            cells = []
            for sample_steps in (None, 50):
                x, _ = _sampling(model, 2500, sample_steps)
                coverage = mode_coverage(x, ds.meta["modes"], ds.meta["mode_std"])
                cells += [f"{coverage.covered} of {coverage.num_modes}",
                          f"{100 * coverage.high_quality:.1f}"]
            print(f"| {name} | {seed} | {' | '.join(cells)} | {seconds:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--ring-steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--only", choices=["digits", "modes"])
    args = parser.parse_args()
    np.set_printoptions(precision=3)
    if args.only in (None, "digits"):
        digits(args.steps, args.seeds)
    if args.only in (None, "modes"):
        modes(args.ring_steps, args.seeds)


if __name__ == "__main__":
    main()
