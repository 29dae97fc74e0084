"""Example: many chains as one batch — ChEES-HMC against Pyro's NUTS
====================================================================

Pyro's NUTS evaluates the model once per leapfrog step per chain, and each evaluation
costs about a millisecond of Python whatever the model's size. ``engine="chees"`` runs all
chains in lockstep as one batch (the model inside an outer ``pyro.plate`` over chains), and
by default traces that batched leapfrog step once and compiles it, so a step for 64 chains
costs microseconds. This script samples eight schools (non-centered) with Pyro's NUTS and
with ChEES at a growing number of chains, checks that they agree, and shows where the time
goes:

- ``scaling.png``: effective samples per second (min bulk ESS over mu, tau) against the
  number of chains, ChEES compiled and eager, with Pyro NUTS as the reference line;
- ``posteriors.png``: the marginals of tau from NUTS and from ChEES overlaid;
- a table with ESS, seconds, divergences and the compile backend per run.

    python examples/many_chains.py [--smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import ppl_gen  # noqa: E402
from ppl_gen.diagnostics import ess, mcse  # noqa: E402
from ppl_gen.plots import save_figure  # noqa: E402


def min_ess(result) -> float:
    return min(ess(result.samples[name].numpy()) for name in ("mu", "tau"))


def timed_fit(model, data, **options):
    start = time.perf_counter()
    result = ppl_gen.fit(model, data, device="cpu", seed=0, **options)
    return result, time.perf_counter() - start


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(data)
    iters = dict(num_warmup=60, num_samples=60) if args.smoke else \
        dict(num_warmup=500, num_samples=500)
    chains = [4, 8] if args.smoke else [4, 16, 64, 256]

    nuts, nuts_seconds = timed_fit(model, data, engine="nuts", num_chains=1,
                                   **({"num_warmup": 60, "num_samples": 60} if args.smoke
                                      else {"num_warmup": 1000, "num_samples": 1000}))
    rows = [("Pyro NUTS", 1, "-", min_ess(nuts), nuts_seconds, nuts.info["num_divergences"])]
    rates: dict[str, list[float]] = {"compiled": [], "eager": []}
    runs = {}
    for num_chains in chains:
        for mode, compile_ in (("compiled", "auto"), ("eager", False)):
            if mode == "eager" and num_chains > 64:
                rates[mode].append(np.nan)  # the point is made; eager 256 chains is slow
                continue
            result, seconds = timed_fit(model, data, engine="chees", num_chains=num_chains,
                                        compile=compile_, **iters)
            runs[(mode, num_chains)] = result
            value = min_ess(result)
            rates[mode].append(value / seconds)
            rows.append((f"ChEES {mode}", num_chains, result.info["compiled"], value,
                         seconds, result.info["num_divergences"]))

    print("| sampler | chains | backend | min bulk ESS (mu, tau) | seconds | ESS/s | "
          "divergences |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, num_chains, backend, value, seconds, divergences in rows:
        print(f"| {name} | {num_chains} | {backend} | {value:,.0f} | {seconds:.1f} | "
              f"{value / seconds:,.0f} | {divergences} |")

    fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    for mode, marker in (("compiled", "o"), ("eager", "s")):
        ax.plot(chains, rates[mode], marker=marker, label=f"ChEES, {mode}")
    ax.axhline(min_ess(nuts) / nuts_seconds, color="grey", ls="--", label="Pyro NUTS")
    ax.set(xscale="log", yscale="log", xlabel="chains (one batch)",
           ylabel="min bulk ESS per second", title="eight schools, warmup included")
    ax.legend(frameon=False)
    save_figure(fig, out / "scaling.png")

    biggest = runs[("compiled", chains[-1])]
    fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    bins = np.linspace(0, 20, 60)
    ax.hist(nuts.samples["tau"].reshape(-1).numpy(), bins=bins, density=True, alpha=0.5,
            label="Pyro NUTS, 1 chain")
    ax.hist(biggest.samples["tau"].reshape(-1).numpy(), bins=bins, density=True, alpha=0.5,
            label=f"ChEES, {chains[-1]} chains")
    ax.set(xlabel="tau", ylabel="density", title="the same posterior")
    ax.legend(frameon=False)
    save_figure(fig, out / "posteriors.png")

    a, b = biggest.samples["tau"].numpy(), nuts.samples["tau"].numpy()
    gap = abs(a.mean() - b.mean()) / np.hypot(mcse(a), mcse(b))
    print(f"E[tau]: ChEES {a.mean():.3f}, NUTS {b.mean():.3f} ({gap:.1f} combined MCSE "
          "apart)")
    print(f"wrote {out / 'scaling.png'} and {out / 'posteriors.png'}")
    return {"rates": rates, "tau_gap_in_mcse": float(gap)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--out", default="examples_out/many_chains")
    main(parser.parse_args())
