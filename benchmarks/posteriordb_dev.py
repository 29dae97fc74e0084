"""ChEES with engine defaults on the eight posteriordb development posteriors.

    python benchmarks/posteriordb_dev.py [--seeds 0 1 2] [--names kidiq ...]

One fresh ``fit`` per posterior and seed (16 chains, 500 + 500, 1 thread), compared with the
published reference as tests/posteriordb_dev prescribes (|z| < 4, sd ratio in [0.8, 1.25],
ESS >= 100 on every parameter). Prints a markdown table: pass/fail, whether the result warned,
min bulk ESS, ESS per second of the whole call (compile included), T, the metric chosen,
gradients and compile seconds. In-process: the first model pays Inductor's per-process
start-up, the rest reuse it (see docs/benchmarks.md for cold-process figures).
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--verbose", action="store_true", help="print each run's warnings")
    parser.add_argument("--names", nargs="+", default=None,
                        help="substrings of posterior names (default: all eight)")
    parser.add_argument("--option", nargs="*", default=[],
                        help="ChEESConfig field=value, e.g. init=pathfinder")
    args = parser.parse_args()
    options = dict(item.split("=", 1) for item in args.option)
    options = {k: int(v) if v.isdigit() else v for k, v in options.items()}
    torch.set_num_threads(1)
    names = [n for n in NAMES if not args.names or any(a in n for a in args.names)]
    print(f"options: {options or 'defaults'}")
    print("| posterior | seed | pass | warned | min ESS | ESS/s | T | metric | gradients "
          "| init gradients | compile s | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = passes = silent_failures = 0
    gradients = []
    for name in names:
        posterior = load(name)
        for seed in args.seeds:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = ppl_gen.fit(posterior.model, posterior.data, engine="chees",
                                     seed=seed, device="cpu", **options)
            wall = time.perf_counter() - start
            rows = compare(posterior, result.samples)
            ok = all(r["ok"] for r in rows.values())
            runs += 1
            passes += ok
            silent_failures += (not ok) and not result.warnings
            gradients.append(result.info["gradient_evaluations"]
                             + result.info["init"].get("gradient_evaluations", 0))
            low = min(r["ess"] for r in rows.values())
            info = result.info
            print(f"| {name} | {seed} | {'pass' if ok else 'FAIL'} | "
                  f"{'yes' if result.warnings else 'no'} | {low:.0f} | {low / wall:.0f} | "
                  f"{info['trajectory_length']:.2f} | {info['mass_matrix']} | "
                  f"{info['gradient_evaluations']} | "
                  f"{info['init'].get('gradient_evaluations', 0)} | "
                  f"{info['compile_seconds'] or 0:.1f} | "
                  f"{wall:.1f} |", flush=True)
            if args.verbose:
                for message in result.warnings:
                    print(f"    {message[:160]}")
    _report(runs, passes, silent_failures, gradients)


def _report(runs: int, passes: int, silent: int, gradients: list[int]) -> None:
    print(f"\n{passes} of {runs} runs within the bands; {silent} failed without a warning; "
          f"median gradients per run {int(sorted(gradients)[len(gradients) // 2])}")


if __name__ == "__main__":
    main()
