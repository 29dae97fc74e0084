"""Simulation-based calibration of the MCMC engines on eight schools (non-centred) and on a
correlated (un-centred) regression.

    python benchmarks/sbc.py [--simulations 100] [--engines chees nuts] [--plot sbc.png]

Each simulation draws (mu, tau, theta) from the prior and y from the model, fits it with the
engine's defaults (ChEES: 16 chains, 500 + 500; NUTS: 2 chains, 500 + 500, jit), and ranks the
true values among 99 thinned draws; the table gives the chi-square p-value of uniform ranks per
parameter (10 bins), the Bonferroni-corrected minimum, how many fits warned about their own
convergence, and the seconds per fit. Pyro's NUTS costs ~30 s per fit here: pass fewer
``--simulations`` for it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

import ppl_gen  # noqa: E402
from ppl_gen.diagnostics import sbc  # noqa: E402
from tests.diagnostics.test_sbc import DATA, regression  # noqa: E402

OPTIONS = {"chees": {}, "nuts": {"num_chains": 2, "num_warmup": 500, "num_samples": 500,
                                 "jit_compile": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=100)
    parser.add_argument("--engines", nargs="+", default=["chees"], choices=list(OPTIONS))
    parser.add_argument("--plot", default=None, help="write the eight-schools rank plot here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    problems = {"eight_schools": (model.model, {"y": ds["y"], "sigma": ds["sigma"]},
                                  ["mu", "tau"]),
                "correlated regression": (regression, DATA, None)}
    print("| model | engine | simulations | p per parameter | min p (Bonferroni) | fits "
          "that warned | s per fit |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (fn, data, parameters) in problems.items():
        for engine in args.engines:
            start = time.perf_counter()
            result = sbc(fn, data, engine=engine, num_simulations=args.simulations,
                         num_bins=10, parameters=parameters, **OPTIONS[engine])
            seconds = (time.perf_counter() - start) / args.simulations
            ps = ", ".join(f"{k} {v:.2f}" for k, v in result.p_values.items())
            print(f"| {name} | {engine} | {result.num_simulations} | {ps} | "
                  f"{result.min_p_value:.3f} | {len(result.warned)} | {seconds:.1f} |",
                  flush=True)
            if args.plot and name == "eight_schools" and engine == args.engines[0]:
                result.plot().savefig(args.plot, dpi=100)


if __name__ == "__main__":
    main()
