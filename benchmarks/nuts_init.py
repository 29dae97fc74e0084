"""Pyro NUTS from its default start (``init_strategy="median"``) and from Pathfinder's
draws (``init_strategy="pathfinder"``) on posteriordb development posteriors.

    python benchmarks/nuts_init.py [--names earnings sblri ...] [--seeds 0] [--chains 4]

Same comparison as benchmarks/posteriordb_dev.py (|z| < 4, sd ratio in [0.8, 1.25],
ESS >= 100); prints pass/fail, whether the result warned, min bulk ESS and the wall time
of the whole fit (the Pathfinder start included), ``--warmup`` + ``--samples`` iterations
(500 + 500), 1 thread. Pyro's NUTS on the un-centred regressions runs at tree depth 10
for much of warmup (hours for 500 + 500): pick the posteriors accordingly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

import ppl_gen  # noqa: E402
from tests.posteriordb_dev import NAMES, compare, load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = [n for n in NAMES if not args.names or any(a in n for a in args.names)]
    print("| posterior | seed | start | pass | warned | min ESS | start s | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        posterior = load(name)
        for seed in args.seeds:
            for init in ("median", "pathfinder"):
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = ppl_gen.fit(posterior.model, posterior.data, engine="nuts",
                                         num_chains=args.chains, num_warmup=args.warmup,
                                         num_samples=args.samples, init_strategy=init,
                                         seed=seed,
                                         device="cpu")
                wall = time.perf_counter() - start
                rows = compare(posterior, result.samples)
                ok = all(r["ok"] for r in rows.values())
                low = min(r["ess"] for r in rows.values())
                used = result.info["init"]
                print(f"| {name} | {seed} | {used['init']} | {'pass' if ok else 'FAIL'} | "
                      f"{'yes' if result.warnings else 'no'} | {low:.0f} | "
                      f"{used.get('seconds', 0):.1f} | {wall:.1f} |", flush=True)


if __name__ == "__main__":
    main()
