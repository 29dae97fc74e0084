"""``stop_early`` against the whole budget (issue 16): steps and seconds saved, and how far
the early result is from the full-budget one.

For each model the same fit (same seed, a generous budget) runs once with the whole budget
and once with ``stop_early=True``; the table gives where it stopped, both wall times, the
largest difference of the two results' guide means in the full run's posterior sds, and
both k-hats. A VAE (amortised guide: the ELBO rule only) is reported by its final ELBO.

    python benchmarks/svi_stop_early.py [--budget 20000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import torch

import ppl_gen
from ppl_gen.diagnostics import ReliabilityWarning


def conjugate():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 2, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -0.5], dtype=torch.float64) + torch.randn(
        40, generator=g, dtype=torch.float64)

    def model(x, y):
        w = pyro.sample("w", dist.Normal(torch.zeros(2, dtype=x.dtype), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal((x * w).sum(-1), 1.0), obs=y)

    return model, {"x": x, "y": y}, {"guide": "mvn", "learning_rate": 0.02}


def zoo(name: str, **options):
    def build():
        ds = ppl_gen.load_dataset(ppl_gen.models.DEFAULT_DATASETS[name])
        return ppl_gen.MODELS[name].from_dataset(ds), ds, options
    return build


CASES = {
    "conjugate regression (2 weights), mvn": conjugate,
    "eight schools (non-centred), mvn": zoo("eight_schools", guide="mvn"),
    "logistic regression (breast cancer, 31 weights), mvn": zoo("logistic_regression",
                                                                guide="mvn"),
    "linear regression (diabetes), mvn": zoo("linear_regression", guide="mvn"),
}


def run(build, budget: int, stop_early: bool):
    model, data, options = build()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReliabilityWarning)
        result = ppl_gen.fit(model, data, engine="svi", num_steps=budget, device="cpu",
                             num_threads=1, seed=0, stop_early=stop_early, **options)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=20000)
    args = parser.parse_args()
    print(f"budget {args.budget} steps; seed 0; torch {torch.__version__}, 1 thread\n")
    print("| model | stopped at | s (early / full) | max mean diff, full-run sds | "
          "k-hat early / full |")
    print("| --- | --- | --- | --- | --- |")
    for name, build in CASES.items():
        full, t_full = run(build, args.budget, False)
        early, t_early = run(build, args.budget, True)
        rows_f, rows_e = full.info["psis"]["summary"], early.info["psis"]["summary"]
        diff = max(abs(rows_e[k]["mean"] - rows_f[k]["mean"]) / rows_f[k]["sd"]
                   for k in rows_f)
        stopped = early.info["convergence"]["stopped_at"]
        print(f"| {name} | {stopped if stopped else 'never'} | {t_early:.1f} / "
              f"{t_full:.1f} | {diff:.3f} | {early.info['psis']['khat']:.2f} / "
              f"{full.info['psis']['khat']:.2f} |", flush=True)
    ds = ppl_gen.load_dataset("digits", binarize=True)
    results = {}
    for stop in (False, True):
        model = ppl_gen.MODELS["vae"].from_dataset(ds, latent_dim=2, hidden_dims=(64,))
        started = time.perf_counter()
        r = ppl_gen.fit(model, ds, engine="svi", num_steps=args.budget,
                        learning_rate=1e-3, device="cpu", seed=0, stop_early=stop)
        results[stop] = (r, time.perf_counter() - started)
    (full, t_full), (early, t_early) = results[False], results[True]
    print(f"| VAE 64-2 on binarised digits (ELBO rule) | "
          f"{early.info['convergence']['stopped_at'] or 'never'} | {t_early:.1f} / "
          f"{t_full:.1f} | final ELBO {-np.mean(early.history['loss'][-200:]):.1f} vs "
          f"{-np.mean(full.history['loss'][-200:]):.1f} | - |")


if __name__ == "__main__":
    main()
