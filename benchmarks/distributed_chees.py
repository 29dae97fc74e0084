"""ChEES chains over processes: wall time of one batch in 1 process against 2 (issue 14).

A Bayesian logistic regression on synthetic data (N rows, D covariates; the gradient is
the cost: a (chains x D) @ (D x N) product per leapfrog step), 16 chains, the engine's
defaults otherwise (Pathfinder start, ``compile="auto"``):

* one process with 1 thread, one process with 2 threads (what a user of one machine would
  try first) and two processes with 1 thread each under ``torchrun`` (gloo: every rank
  holds the whole batch and integrates its 8 chains, one ``all_gather`` per iteration);
* fresh process (or pair) each, in alternating order, ``--repeats`` times; medians of the
  sampler's wall time (``info["wall_time"]``: init, Pathfinder, compile and sampling), of
  its parts (Pathfinder and compiling run whole on every rank; "the rest", warmup and
  draws, is what the ranks split) and of the whole process (torch import and start-up
  included);
* the draws of every run against the first 1-process run's: the 2-process batch is the
  1-process batch, so they agree bit for bit where the arithmetic of 8 chains equals that
  of 16 (the max abs difference is printed).

    python benchmarks/distributed_chees.py [--repeats 3] [--rows 100000] [--dim 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def data(rows: int, dim: int):
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, dim, generator=generator)
    w = torch.randn(dim, generator=generator) / dim ** 0.5
    y = torch.bernoulli(torch.sigmoid(x @ w + 0.3), generator=generator)
    return {"x": x, "y": y}


def worker(args: argparse.Namespace) -> None:
    import torch

    import ppl_gen

    rank = int(os.environ.get("RANK", "0"))
    dataset = data(args.rows, args.dim)
    model = ppl_gen.MODELS["logistic_regression"].from_dataset(dataset)
    started = time.perf_counter()
    result = ppl_gen.fit(model, dataset, engine="chees", num_chains=16,
                         num_warmup=args.warmup, num_samples=args.samples, device="cpu",
                         seed=1, num_threads=args.threads, compile=args.compile,
                         distributed=args.distributed)
    if rank == 0:
        torch.save({"samples": {k: v.cpu() for k, v in result.samples.items()},
                    "wall_time": result.info["wall_time"],
                    "fit_seconds": time.perf_counter() - started,
                    "compiled": result.info["compiled"],
                    "pathfinder_seconds": float(result.info["init"].get("seconds", 0.0)),
                    "compile_seconds": float(result.info["compile_seconds"] or 0.0),
                    "gradient_evaluations": result.info["gradient_evaluations"],
                    "trajectory_length": result.info["trajectory_length"]}, args.out)


def measure(procs: int, threads: int, args: argparse.Namespace, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    common = [str(Path(__file__).resolve()), "--worker", "--out", str(out),
              "--threads", str(threads), "--rows", str(args.rows), "--dim", str(args.dim),
              "--warmup", str(args.warmup), "--samples", str(args.samples),
              "--compile", args.compile]
    if procs == 1:
        command = [sys.executable, *common]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={procs}", *common, "--distributed"]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    import torch

    result = torch.load(out, weights_only=False)
    result["process_seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100000)
    parser.add_argument("--dim", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--compile", default="fx",
                        help="the leapfrog's compile setting (default fx: the traced graph, "
                        "the same arithmetic in every run; 'auto' decides from each run's "
                        "own timing, so runs may differ in how they compile)")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    settings = {"1 process x 1 thread": (1, 1), "1 process x 2 threads": (1, 2),
                "2 processes x 1 thread (torchrun, gloo)": (2, 1)}
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = list(settings) if repeat % 2 == 0 else list(reversed(settings))
            for name in order:
                procs, threads = settings[name]
                runs[name].append(measure(procs, threads, args,
                                          Path(tmp) / f"{procs}-{threads}-{repeat}.pt"))
                print(f"  {name}, repeat {repeat}: sampler "
                      f"{runs[name][-1]['wall_time']:.1f} s", flush=True)
    import torch

    reference = runs["1 process x 1 thread"][0]["samples"]
    one = statistics.median(r["wall_time"] for r in runs["1 process x 1 thread"])
    print(f"\nlogistic regression, N = {args.rows}, D = {args.dim}, 16 chains, "
          f"{args.warmup} + {args.samples}, compile={args.compile}; medians of "
          f"{args.repeats} (torch "
          f"{torch.__version__})")
    print(f"{'setting':42s} {'sampler s':>10s} {'vs 1x1':>7s} {'Pathfinder':>10s} "
          f"{'compile':>8s} {'the rest':>9s} {'vs 1x1':>7s} {'process s':>10s} "
          f"{'compiled':>9s} {'max |draw diff|':>16s}")

    def rest(r: dict) -> float:  # warmup and draws: what the ranks split
        return r["wall_time"] - r["pathfinder_seconds"] - r["compile_seconds"]

    one_rest = statistics.median(rest(r) for r in runs["1 process x 1 thread"])
    table = {}
    for name, results in runs.items():
        sampler = statistics.median(r["wall_time"] for r in results)
        process = statistics.median(r["process_seconds"] for r in results)
        diff = max(float((r["samples"][k] - reference[k]).abs().max())
                   for r in results for k in reference)
        compiled = "/".join(sorted({r["compiled"] for r in results}))
        table[name] = {"sampler_seconds": sampler, "process_seconds": process,
                       "speed_up": one / sampler, "compiled": compiled,
                       "max_abs_draw_difference": diff,
                       "gradient_evaluations": [r["gradient_evaluations"] for r in results]}
        pathfinder = statistics.median(r["pathfinder_seconds"] for r in results)
        compiling = statistics.median(r["compile_seconds"] for r in results)
        sampling = statistics.median(rest(r) for r in results)
        table[name].update(pathfinder_seconds=pathfinder, compile_seconds=compiling,
                           sampling_seconds=sampling, sampling_speed_up=one_rest / sampling)
        print(f"{name:42s} {sampler:10.1f} {one / sampler:6.2f}x {pathfinder:10.1f} "
              f"{compiling:8.1f} {sampling:9.1f} {one_rest / sampling:6.2f}x "
              f"{process:10.1f} {compiled:>9s} {diff:16.2e}")
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
