"""VAE family on binarised MNIST: the cost of Pyro's abstraction, and test NLL.

One run, one machine, side by side:

1. ``--speed``: a 784-400-20 MLP VAE (Bernoulli decoder, batch 128, Adam 1e-3), trained
   through ppl_gen's SVI engine (``fit(..., loss="trace" | "meanfield")``; by default, and
   with ``compile="fx"`` / ``"inductor"``: the step traced once), through plain
   ``pyro.infer.SVI`` (what Pyro's tutorials write), and by the hand-written PyTorch loop
   for the same estimator (same initial weights, same minibatch indices and the same
   normal draws, so the ELBO values agree to float rounding). All are warmed up, then run
   in rotating order; the figures are medians over repeats of (time / hand-written time).
2. ``--quality``: VAE (Trace_ELBO, k = 1) and IWAE (k = 5, vectorised particles) trained for
   the same number of epochs on the 4,000 training images, then the test NLL estimate with
   K = 5,000 importance samples on the 1,000 test images, next to the test ELBO.

    python benchmarks/vae.py --speed [--steps 300 --repeats 5]
    python benchmarks/vae.py --quality [--epochs 100 --binarize stochastic]
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import time

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from torch.nn import functional as F

import ppl_gen
from ppl_gen.models import VAE

BATCH = 128
LATENT = 20


def by_hand(vae: VAE, x: torch.Tensor, steps: int, seed: int, loss: str, *,
            fused: bool = False) -> list[float]:
    """The PyTorch loop for the same estimator: reparameterised z, Bernoulli decoder; the
    KL by Monte Carlo (``trace``) or in closed form (``meanfield``); the minibatch sum scaled
    by N / B as Pyro's subsampled plate does. ``fused``: the fused Adam kernel that
    ppl_gen's engine uses, so that the two differ only in the Pyro layer."""
    num_data = x.shape[0]
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3, fused=fused)
    torch.manual_seed(seed)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    losses = []
    for _ in range(steps):
        rows = torch.randperm(num_data)[:BATCH]
        batch = x[rows]
        out = vae.encoder(batch)
        loc = out[:, :LATENT]
        scale = F.softplus(out[:, LATENT:]) + 1e-3
        eps = torch.empty_like(loc).normal_()
        z = loc + eps * scale
        reconstruction = -F.binary_cross_entropy_with_logits(vae.decoder(z), batch,
                                                             reduction="none").sum(-1)
        if loss == "meanfield":
            kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)
        else:
            log_p = (-0.5 * z.pow(2) - half_log_2pi).sum(-1)
            log_q = (-0.5 * eps.pow(2) - scale.log() - half_log_2pi).sum(-1)
            kl = log_q - log_p
        value = -(reconstruction - kl).sum() * (num_data / BATCH)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    return losses


COMPILE_SECONDS: dict[str, float] = {}


def by_ppl_gen(vae: VAE, train, steps: int, seed: int, loss: str,
               compile: bool | str = False) -> list[float]:
    result = ppl_gen.fit(vae, train, engine="svi", loss=loss, num_steps=steps,
                         batch_size=BATCH, learning_rate=1e-3, seed=seed, progress_bar=False,
                         log_every=1, device="cpu", compile=compile)
    if compile:
        assert result.info["compiled"] != "eager", result.info["compile_reason"]
        COMPILE_SECONDS[str(compile)] = result.info["compile_seconds"]
    return list(result.history["loss"])


def by_ppl_gen_fx(vae: VAE, train, steps: int, seed: int, loss: str) -> list[float]:
    return by_ppl_gen(vae, train, steps, seed, loss, compile="fx")


def by_ppl_gen_inductor(vae: VAE, train, steps: int, seed: int, loss: str) -> list[float]:
    return by_ppl_gen(vae, train, steps, seed, loss, compile="inductor")


def by_hand_fused(vae: VAE, x: torch.Tensor, steps: int, seed: int,
                 loss: str) -> list[float]:
    return by_hand(vae, x, steps, seed, loss, fused=True)


def by_plain_pyro(vae: VAE, x: torch.Tensor, steps: int, seed: int, loss: str) -> list[float]:
    """What a Pyro user writes: ``pyro.infer.SVI`` with ``pyro.optim.Adam`` and the ELBO,
    on the same model and guide (global param store, as in Pyro's tutorials)."""
    elbo = TraceMeanField_ELBO() if loss == "meanfield" else Trace_ELBO()
    with pyro.settings.context(module_local_params=False):
        pyro.clear_param_store()
        svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), loss=elbo)
        pyro.set_rng_seed(seed)
        losses = [svi.step(x=x, subsample_size=BATCH) for _ in range(steps)]
        pyro.clear_param_store()
    return losses


def speed(args: argparse.Namespace) -> None:
    train = ppl_gen.load_dataset("mnist", split="train")
    x = train["x"]
    print(f"## Pyro SVI (ppl_gen) vs a hand-written PyTorch VAE loop\n\n784-400-{LATENT} MLP "
          f"VAE, Bernoulli decoder, batch {BATCH}, Adam 1e-3, {args.steps} steps per run, "
          f"{args.repeats} repeats in rotating order after a warm-up. ppl_gen three ways: "
          "compile=False (Pyro's handlers every step), compile='fx' (the default 'auto': "
          "the step traced once into ATen ops and replayed) and compile='inductor' (that "
          "graph compiled); the "
          "one-time trace/compile is subtracted from the compiled runs' time and shown "
          "apart. Ratios are medians of per-repeat ratios.\n")
    print("| loss | ppl_gen compile=False ms/step | compile='fx' (default) | "
          "compile='inductor' | plain Pyro SVI | by hand (default Adam) | by hand (fused "
          "Adam) | False / hand (fused) | fx / hand (fused) | inductor / hand (fused) | "
          "False / hand (default Adam) | plain Pyro / hand | trace + compile (s) fx, "
          "inductor | max rel. loss difference, first 20 steps |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    fitters = [("ppl_gen", by_ppl_gen, True), ("fx", by_ppl_gen_fx, True),
               ("inductor", by_ppl_gen_inductor, True), ("pyro", by_plain_pyro, False),
               ("hand", by_hand, False), ("fused", by_hand_fused, False)]
    for loss in args.losses:
        base = VAE(784, LATENT)
        for _, fitter, takes_dataset in fitters:  # warm-up: allocator, caches, compiles
            fitter(copy.deepcopy(base), train if takes_dataset else x, 30, 0, loss)
        times: dict[str, list[float]] = {label: [] for label, _, _ in fitters}
        difference = 0.0
        for repeat in range(args.repeats):
            order = fitters[repeat % len(fitters):] + fitters[:repeat % len(fitters)]
            losses = {}
            for label, fitter, takes_dataset in order:
                model = copy.deepcopy(base)
                start = time.perf_counter()
                losses[label] = fitter(model, train if takes_dataset else x, args.steps,
                                       repeat, loss)
                seconds = time.perf_counter() - start
                seconds -= {"fx": COMPILE_SECONDS.get("fx", 0.0),
                            "inductor": COMPILE_SECONDS.get("inductor", 0.0)}.get(label, 0.0)
                times[label].append(seconds / args.steps * 1e3)
            relative = [abs(a - b) / abs(b) for label in ("ppl_gen", "fx", "pyro", "fused")
                        for a, b in zip(losses[label][:20], losses["hand"][:20])]
            difference = max(difference, max(relative))

        def ratio(a: str, b: str, times: dict[str, list[float]] = times) -> float:
            return statistics.median(p / q for p, q in zip(times[a], times[b]))

        median = {k: statistics.median(v) for k, v in times.items()}
        print(f"| {loss} | {median['ppl_gen']:.2f} | {median['fx']:.2f} | "
              f"{median['inductor']:.2f} | {median['pyro']:.2f} | {median['hand']:.2f} | "
              f"{median['fused']:.2f} | {ratio('ppl_gen', 'fused'):.3f} | "
              f"{ratio('fx', 'fused'):.3f} | {ratio('inductor', 'fused'):.3f} | "
              f"{ratio('ppl_gen', 'hand'):.3f} | {ratio('pyro', 'hand'):.3f} | "
              f"{COMPILE_SECONDS['fx']:.1f}, {COMPILE_SECONDS['inductor']:.1f} | "
              f"{difference:.1e} |", flush=True)


def quality(args: argparse.Namespace) -> None:
    train = ppl_gen.load_dataset("mnist", split="train", binarize=args.binarize)
    test = ppl_gen.load_dataset("mnist", split="test", binarize=args.binarize)
    steps = args.epochs * math.ceil(train.num_data / BATCH)
    print(f"## Test NLL on binarised MNIST ({args.binarize} binarisation; {train.num_data} "
          f"train / {test.num_data} test)\n\n784-400-{LATENT} MLP, batch {BATCH}, "
          f"{args.epochs} epochs ({steps} steps), Adam 1e-3 -> 1e-4; NLL by importance "
          f"sampling with K = {args.num_samples:,}\n")
    print("| model | train loss | test ELBO (nats) | test NLL, K-sample estimate (nats) | "
          "gap | published, full MNIST | s / epoch |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    published = {"vae": "86.76 (IWAE paper, k=1)", "iwae": "84.78 (IWAE paper, k=50)"}
    for name, loss, particles in (("vae", "trace", 1), ("iwae", "iwae", args.iwae_k)):
        torch.manual_seed(0)
        vae = VAE(784, LATENT)
        start = time.perf_counter()
        result = ppl_gen.fit(vae, train, engine="svi", loss=loss, num_particles=particles,
                             vectorize_particles=particles > 1, num_steps=steps,
                             batch_size=BATCH, learning_rate=1e-3, final_learning_rate=1e-4,
                             seed=0, device="cpu", progress_bar=args.progress)
        seconds = (time.perf_counter() - start) / args.epochs
        vae.eval()
        estimate = vae.estimate_log_marginal(test["x"], args.num_samples, row_chunk=50)
        nll, elbo = -float(estimate.log_marginal.mean()), -float(estimate.elbo.mean())
        label = name if particles == 1 else f"{name} (k={particles})"
        print(f"| {label} | {result.history['loss'][-1] / train.num_data:.2f} | {elbo:.2f} | "
              f"{nll:.2f} | {elbo - nll:.2f} | {published[name]} | {seconds:.1f} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--losses", nargs="+", default=["trace", "meanfield"])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--iwae-k", type=int, default=5)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--binarize", default="stochastic")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    if not (args.speed or args.quality):
        args.speed = args.quality = True
    torch.set_num_threads(args.threads)
    print(f"# VAE benchmarks — {platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s)\n")
    if args.speed:
        speed(args)
    if args.quality:
        quality(args)


if __name__ == "__main__":
    main()
