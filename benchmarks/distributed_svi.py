"""Data-parallel SVI: epoch time for 1 against 2 processes, and how epoch time and memory
grow with the data (issue 14).

A VAE (784-400-20, Bernoulli) on binarised MNIST, global batch 100, Adam 1e-3:

* **processes**: the same fit as one process with 1 thread, one process with 2 threads
  (what a user of one machine would try first) and two processes with 1 thread each
  under ``torchrun`` (gloo), in alternating order, ``--repeats`` times; medians;
* **data size**: 10 %, 50 % and 100 % of the 4,000 training images, and a 10x MNIST made
  by augmentation (the nine one-pixel shifts of every image plus a copy with 1 % of its
  pixels flipped: 40,000 images); time per epoch and peak RSS, with the least-squares
  fit time = a + b * N printed;
* **memory over epochs**: resident memory at the end of each epoch of a long run.

    python benchmarks/distributed_svi.py [--repeats 3] [--epochs 3] [--long-epochs 20]

Each measurement is a fresh process (or pair), so import and start-up are outside the
per-epoch figures, which drop the first epoch (warm-up); the whole-process wall time is
printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 100


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def augmented(x):
    """The nine one-pixel shifts of every 28x28 image and a copy with 1 % of pixels
    flipped: 10x the data."""
    import torch

    images = x.reshape(-1, 28, 28)
    copies = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            copies.append(torch.roll(images, shifts=(dy, dx), dims=(1, 2)))
    generator = torch.Generator().manual_seed(0)
    flips = torch.rand(images.shape, generator=generator) < 0.01
    copies.append(torch.where(flips, 1 - images, images))
    return torch.cat(copies).reshape(-1, 784)


def worker(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    import torch

    import ppl_gen
    from ppl_gen.data.base import Dataset
    from ppl_gen.inference.distributed import launched_rank, launched_world_size

    torch.set_num_threads(args.threads)
    x = ppl_gen.load_dataset("mnist", split="train").tensors["x"]
    x = augmented(x) if args.fraction > 1 else x[:int(round(args.fraction * len(x)))]
    data = Dataset("mnist", {"x": x})
    model = ppl_gen.MODELS["vae"].from_dataset(data)
    steps_per_epoch = len(x) // BATCH
    stamps: list[float] = []
    memory: list[float] = []

    def callback(index, state, info):
        if (index + 1) % steps_per_epoch == 0:
            stamps.append(time.perf_counter())
            memory.append(rss_mb())

    fit_start = time.perf_counter()
    result = ppl_gen.fit(model, data, engine="svi", num_steps=args.epochs * steps_per_epoch,
                         learning_rate=1e-3, batch_size=BATCH, device="cpu", seed=0,
                         distributed=args.distributed, num_threads=args.threads,
                         compile="auto" if args.compile else False,
                         psis_draws=0, callback=callback)
    rank, world = launched_rank(), launched_world_size()
    if rank == 0:
        epochs = [b - a for a, b in zip([fit_start] + stamps[:-1], stamps)]
        Path(args.out).write_text(json.dumps({
            "num_data": len(x), "world": world, "threads": args.threads,
            "epoch_seconds": epochs, "rss_mb": memory,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "final_loss": float(result.history["loss"][-20:].mean()),
            "process_seconds": time.perf_counter() - started}))


def measure(procs: int, threads: int, fraction: float, epochs: int,
            eager: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        own = [__file__, "--worker", "--out", out, "--threads", str(threads),
               "--fraction", str(fraction), "--epochs", str(epochs)]
        own += ["--eager"] if eager else []
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if procs == 1:
            command = [sys.executable, *own]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc-per-node={procs}", *own, "--distributed"]
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        result = json.loads(Path(out).read_text())
        result["wall_seconds"] = time.perf_counter() - started
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--eager", dest="compile", action="store_false",
                        help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-epochs", type=int, default=20)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    def epoch_time(r: dict) -> float:
        return statistics.median(r["epoch_seconds"][1:] or r["epoch_seconds"])

    print(f"## processes (full 4,000 images, {args.epochs} epochs, medians of "
          f"{args.repeats} runs in alternating order)")
    # (processes, threads, eager): one process runs the traced step by default
    # (compile="auto"); distributed SVI runs the eager step, shown alone as 1 x 1 eager.
    layouts = [(1, 1, False), (1, 1, True), (1, 2, False), (2, 1, False)]
    runs: dict[tuple, list[dict]] = {k: [] for k in layouts}
    for i in range(args.repeats):
        for layout in (layouts if i % 2 == 0 else layouts[::-1]):
            procs, threads, eager = layout
            runs[layout].append(measure(procs, threads, 1.0, args.epochs, eager))
    base = statistics.median(epoch_time(r) for r in runs[(1, 1, False)])
    print("| layout | s/epoch (median) | speed-up vs 1x1 | process wall s | final loss |")
    print("| --- | --- | --- | --- | --- |")
    for (procs, threads, eager), rs in runs.items():
        t = statistics.median(epoch_time(r) for r in rs)
        wall = statistics.median(r["wall_seconds"] for r in rs)
        loss = statistics.median(r["final_loss"] for r in rs)
        step = "eager" if eager or procs > 1 else "traced"
        print(f"| {procs} process(es) x {threads} thread(s), {step} step | {t:.3f} | "
              f"{base / t:.2f}x | "
              f"{wall:.1f} | {loss:.1f} |", flush=True)

    print("\n## data size (2 processes x 1 thread, and 1 process x 1 thread)")
    print("| N | layout | s/epoch | peak RSS MB (rank 0) |")
    print("| --- | --- | --- | --- |")
    sizes = [0.1, 0.5, 1.0, 10.0]
    for layout in ((2, 1), (1, 1)):
        points = []
        for fraction in sizes:
            r = measure(*layout, fraction, args.epochs)
            t = epoch_time(r)
            points.append((r["num_data"], t, r["peak_rss_mb"]))
            print(f"| {r['num_data']} | {layout[0]}x{layout[1]} | {t:.3f} | "
                  f"{r['peak_rss_mb']:.0f} |", flush=True)
        n = [p[0] for p in points]
        t = [p[1] for p in points]
        mean_n, mean_t = statistics.mean(n), statistics.mean(t)
        b = (sum((a - mean_n) * (c - mean_t) for a, c in zip(n, t))
             / sum((a - mean_n) ** 2 for a in n))
        a = mean_t - b * mean_n
        worst = max(abs(c - (a + b * m)) / c for m, c in zip(n, t))
        print(f"fit {layout[0]}x{layout[1]}: time/epoch = {a:.3f} s + {b * 1e6:.2f} us * N "
              f"(largest relative residual {worst:.1%})", flush=True)

    print(f"\n## memory over {args.long_epochs} epochs (2 processes, 4,000 images)")
    r = measure(2, 1, 1.0, args.long_epochs)
    memory = r["rss_mb"]
    print("rank 0 RSS MB at the end of each epoch: "
          + ", ".join(f"{m:.0f}" for m in memory))
    print(f"growth from epoch 2 to {len(memory)}: {memory[-1] - memory[1]:+.1f} MB")


if __name__ == "__main__":
    main()
