"""DDPM figures: the bound in bits/dim on dequantised digits (beside the flows' exact
figures), mode coverage on PacGAN's ring and grid (beside the GANs), and sampling speed and
quality for the full chain, a strided one and DDIM (Song et al. 2021) with few steps.

    python benchmarks/ddpm.py [--steps 5000] [--ring-steps 5000] [--seeds 2]
    python benchmarks/ddpm.py --only digits --denoisers mlp unet --losses ddpm_rb


Digits: scikit-learn's 8x8 digits, 17 levels, uniformly dequantised to [0, 1]^64, the fixed
1,438 / 359 split of benchmarks/flows_bpd.py; bits/dim = (bound + 64 log 17) / (64 log 2),
an upper bound on the discrete code length, as for the flows there. T = 1000, linear betas,
the MLP noise predictor (3 x 128 hidden, SiLU) or the small U-Net (``--denoisers unet``:
ppl_gen.nn.UNet, channels 16/32/32, 0.26 M parameters), Adam 2e-3 decayed to 2e-5, batch 100.
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


def _sampling(model, num: int, steps: int | None, method: str = "ancestral"
              ) -> tuple[torch.Tensor, float]:
    started = time.perf_counter()
    x = model.sample(num, num_steps=steps, method=method)
    return x, num / (time.perf_counter() - started)


#: The samplers compared on the 2-D mixtures: (label, steps, method).
SAMPLERS = [("ancestral, T = 1000", None, "ancestral"), ("ancestral, 50", 50, "ancestral"),
            ("DDIM, 50", 50, "ddim"), ("DDIM, 10", 10, "ddim")]


DIGIT_RUNS = (("ddpm_simple", "gaussian"), ("ddpm_rb", "gaussian"), ("ddpm_rb", "discretized"))


def digits(steps: int, seeds: int, denoisers: tuple[str, ...] = ("mlp",),
           losses: tuple[str, ...] | None = None) -> None:
    """Gaussian decoder on dequantised digits (bits/dim of a density bound, 64 log 17
    added: an upper bound on the discrete code length), and Ho et al.'s discretised decoder
    on the 17-level digits themselves (the bound *is* on the discrete code length)."""
    raw = {split: ppl_gen.load_dataset("digits", split=split) for split in ("train", "test")}
    deq = {split: ppl_gen.load_dataset("digits", split=split, dequantize=True)
           for split in ("train", "test")}
    print("\n| denoiser | objective | decoder | seed | test bits/dim (bound) | train s | "
          "samples/s T=1000 | samples/s 50 steps |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = [(d, loss, decoder) for loss, decoder in DIGIT_RUNS for d in denoisers
            if losses is None or loss in losses]
    for denoiser, loss, decoder in runs:
        data = deq if decoder == "gaussian" else raw
        options = {} if decoder == "gaussian" else {"num_levels": 17}
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = ppl_gen.MODELS["ddpm"].from_dataset(data["train"], data_range=(0.0, 1.0),
                                                        decoder=decoder, denoiser=denoiser,
                                                        **options)
            seconds = _fit(model, data["train"], loss, steps, seed)
            bound = model.bound(data["test"]["x"], seed=1000 + seed)
            if decoder == "gaussian":
                bpd = float((bound.nll.mean() + 64 * math.log(17)) / (64 * math.log(2)))
            else:
                bpd = float(bound.bits_per_dim.mean())
            _, full = _sampling(model, 200, None)
            _, fast = _sampling(model, 200, 50)
            print(f"| {denoiser} | {loss} | {decoder} | {seed} | {bpd:.3f} | {seconds:.0f} | "
                  f"{full:.1f} | {fast:.1f} |", flush=True)


def modes(steps: int, seeds: int) -> None:
    print("\n| data | seed | sampler | modes | high-quality % | samples/s | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in ("gaussian_ring", "gaussian_grid"):
        for seed in range(seeds):
            torch.manual_seed(seed)
            ds = ppl_gen.load_dataset(name, num_data=100000, seed=seed)
            model = ppl_gen.MODELS["ddpm"].from_dataset(ds)
            seconds = _fit(model, ds, "ddpm_simple", steps, seed)
            for label, sample_steps, method in SAMPLERS:
                torch.manual_seed(seed)
                x, rate = _sampling(model, 2500, sample_steps, method)
                coverage = mode_coverage(x, ds.meta["modes"], ds.meta["mode_std"])
                print(f"| {name} | {seed} | {label} | {coverage.covered} of "
                      f"{coverage.num_modes} | {100 * coverage.high_quality:.1f} | "
                      f"{rate:,.0f} | {seconds:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--ring-steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--only", choices=["digits", "modes"])
    parser.add_argument("--denoisers", nargs="+", default=["mlp"], choices=["mlp", "unet"])
    parser.add_argument("--losses", nargs="+", choices=["ddpm_simple", "ddpm_rb"])
    args = parser.parse_args()
    np.set_printoptions(precision=3)
    if args.only in (None, "digits"):
        digits(args.steps, args.seeds, tuple(args.denoisers),
               None if args.losses is None else tuple(args.losses))
    if args.only in (None, "modes"):
        modes(args.ring_steps, args.seeds)


if __name__ == "__main__":
    main()
