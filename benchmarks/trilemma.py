"""The generative-model trilemma, measured: quality, diversity, likelihood and speed of every
family in the library on the same data (issue 13; lecture notes 004: "GANs fast and sharp,
VAEs diverse but blurry, diffusion best but slow").

    python benchmarks/trilemma.py [--steps 5000] [--digit-steps 3000] [--seeds 1]
                                  [--only grid|ring|digits]
                                  [--figure docs/figures/trilemma.png]

Three data sets, every model trained through ``ppl_gen.fit`` with the same step budget per
data set, batch 100, one CPU thread, the engines' defaults unless stated:

- **PacGAN's 2-D grid** (25 Gaussians, sd 0.05, at {-4..4}^2; 10,000 training points) and
  **ring** (8 Gaussians, sd 0.01, on a circle of radius 1: the library's gaussian_ring;
  10,000 training points): quality = PacGAN's high-quality share (within 3
  sd of a mode), diversity = modes covered and k-NN recall / coverage (k = 5) against 2,500
  held-out points; 2,500 samples each.
- **scikit-learn's 8x8 digits** (1,438 / 359 split): quality = Fréchet distance and k-NN
  precision in the feature space of ``digit_classifier("digits")`` (held-out accuracy 0.986),
  diversity = recall, coverage and the classes the classifier sees; 1,000 samples against
  the 359 held-out images. The binary families (independent pixels, NADE, PixelCNN) model
  the digits thresholded at 0.5 and are scored against the thresholded held-out images
  (their own reference row); the continuous ones model the dequantised grey levels.
- likelihood: held-out negative log-likelihood where the family has one — exact (flows,
  MADE-MoG, the autoregressive binary models), the IWAE estimate with 1,000 samples (VAE,
  a stochastic lower bound on log p, so an upper estimate of the NLL), the DDPM bound (an
  upper bound on the NLL); "implicit" for GANs. Digits in bits/dim: dequantised densities
  with 64 log 17 added (an upper bound on the discrete code length, as in
  benchmarks/flows_bpd.py), binary models on the binary images (a different data set).
- speed: training seconds for the budget, and samples per second.

One seed by default (``--seeds`` for more): the table is a first point on each curve, not
converged figures; docs/benchmarks.md says where the notes' claims hold at this scale.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import ppl_gen
from ppl_gen import plots
from ppl_gen.diagnostics import (
    class_coverage,
    digit_classifier,
    frechet_distance,
    mode_coverage,
    precision_recall,
)

LEVELS = 17


@dataclass
class Spec:
    label: str
    family: str
    name: str
    engine: str = "svi"
    model_options: dict[str, Any] = field(default_factory=dict)
    fit_options: dict[str, Any] = field(default_factory=dict)
    #: (label suffix, sample options) — DDPM is scored for two samplers
    samplers: tuple[tuple[str, dict[str, Any]], ...] = (("", {}),)
    binary: bool = False
    #: VAEs: sample the decoder's mean (images people show) or x ~ p(x | z) (2-D points)
    mean_sample: bool = False


ADAM = {"learning_rate": 2e-3, "final_learning_rate": 2e-5}
#: MAF diverged at ADAM's rate on 3 of 4 runs (a loss of 4.7e14 nats on the grid, 5e6
#: bits/dim on the digits; now the fit warns); a quarter of it is stable.
SLOW_ADAM = {"learning_rate": 5e-4, "final_learning_rate": 5e-6}
WGAN_GP = {"learning_rate": 1e-4, "betas": (0.5, 0.9), "discriminator_steps": 5}
DDPM_SAMPLERS = (("ancestral, T = 1000", {}), ("DDIM, 50 steps",
                                               {"num_steps": 50, "method": "ddim"}))

GRID = [
    Spec("MADE-MoG", "autoregressive", "made_mog", fit_options=ADAM),
    Spec("MAF", "flow", "maf", fit_options=SLOW_ADAM),
    Spec("NSF", "flow", "nsf", fit_options=ADAM),
    Spec("VAE (Gaussian decoder)", "VAE", "vae",
         model_options={"likelihood": "gaussian", "latent_dim": 2, "hidden_dims": (128, 128)},
         fit_options=ADAM),
    Spec("GAN (non-saturating)", "GAN", "gan", "adversarial",
         fit_options={"learning_rate": 1e-3}),
    Spec("WGAN-GP (lambda = 0.1)", "GAN", "wgan_gp", "adversarial",
         model_options={"penalty_weight": 0.1}, fit_options=WGAN_GP),
    Spec("DDPM (MLP)", "diffusion", "ddpm", fit_options=ADAM, samplers=DDPM_SAMPLERS),
]

DIGITS = [
    Spec("independent pixels", "autoregressive", "independent_bernoulli", binary=True,
         fit_options=ADAM),
    Spec("NADE", "autoregressive", "nade", binary=True, fit_options=ADAM),
    Spec("PixelCNN", "autoregressive", "pixelcnn", binary=True, fit_options=ADAM),
    Spec("MAF", "flow", "maf", model_options={"hidden_dims": (256, 256)},
         fit_options=SLOW_ADAM),
    Spec("VAE (Gaussian decoder, mean image)", "VAE", "vae",
         model_options={"likelihood": "gaussian", "latent_dim": 10,
                        "hidden_dims": (256,)}, fit_options=ADAM, mean_sample=True),
    Spec("DCGAN", "GAN", "dcgan", "adversarial",
         fit_options={"learning_rate": 2e-4, "betas": (0.5, 0.999)}),
    Spec("DDPM (MLP)", "diffusion", "ddpm", fit_options=ADAM, samplers=DDPM_SAMPLERS),
    Spec("DDPM (U-Net)", "diffusion", "ddpm", model_options={"denoiser": "unet"},
         fit_options=ADAM, samplers=DDPM_SAMPLERS),
]


def _fit(spec: Spec, data: Any, steps: int, seed: int) -> tuple[Any, float, int]:
    """The fitted model, the seconds ``fit`` took, and how many reliability warnings the
    result carried (a diverged or unconverged fit says so)."""
    torch.manual_seed(seed)
    options = dict(spec.model_options)
    if spec.name == "ddpm" and "image_shape" in (data.meta or {}):
        options.setdefault("data_range", (0.0, 1.0))
    model = ppl_gen.MODELS[spec.name].from_dataset(data, **options)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ppl_gen.fit(model, data, engine=spec.engine, num_steps=steps,
                             batch_size=100, num_threads=1, device="cpu", seed=seed,
                             **spec.fit_options)
    return model, time.perf_counter() - started, len(result.warnings)


def _sample(model: Any, spec: Spec, num: int, options: dict[str, Any]
            ) -> tuple[torch.Tensor, float]:
    if spec.family == "VAE":
        options = {"mean": spec.mean_sample, **options}
    started = time.perf_counter()
    with torch.no_grad():
        x = model.sample(num, **options)
    return x.detach().float(), num / (time.perf_counter() - started)


def _nll(model: Any, spec: Spec, x: torch.Tensor) -> float | None:
    """Held-out NLL per datum in nats (None: implicit)."""
    with torch.no_grad():
        if spec.family == "GAN":
            return None
        if spec.name == "ddpm":
            return float(model.bound(x).nll.mean())
        if spec.family == "VAE":
            return float(-model.log_prob(x, num_samples=1000).mean())
        return float(-model.log_prob(x).mean())


def _fmt(value: float | None, digits: int = 3) -> str:
    return "implicit" if value is None else f"{value:.{digits}f}"


#: The 2-D data sets: (dataset name, heading, number of modes).
POINTS = {"grid": ("gaussian_grid", "PacGAN's 2-D grid", 25),
          "ring": ("gaussian_ring", "the ring of 8 Gaussians", 8)}


def grid(steps: int, seeds: int, data: str = "grid") -> list[dict[str, Any]]:
    """The 2-D benchmark on the grid or the ring (``data``)."""
    rows = []
    dataset, heading, num_modes = POINTS[data]
    print(f"\n### {heading}: {steps} steps, batch 100, 2,500 samples\n")
    print(f"| model | family | seed | modes (of {num_modes}) | high-quality % | recall | "
          "coverage | held-out NLL (nats) | fit warned | train s | samples/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for seed in range(seeds):
        train = ppl_gen.load_dataset(dataset, num_data=10000, seed=seed)
        test = ppl_gen.load_dataset(dataset, num_data=2500, seed=1000 + seed)
        modes, spread = train.meta["modes"], train.meta["mode_std"]
        reference = precision_recall(test["x"], train["x"][:2500], k=5)
        print(f"| training points (reference) | - | {seed} | "
              f"{mode_coverage(train['x'][:2500], modes, spread).covered} | "
              f"{100 * mode_coverage(train['x'][:2500], modes, spread).high_quality:.1f} | "
              f"{reference.recall:.3f} | {reference.coverage:.3f} | - | - | - | - |")
        for spec in GRID:
            model, seconds, warned = _fit(spec, train, steps, seed)
            nll = _nll(model, spec, test["x"])
            for suffix, options in spec.samplers:
                torch.manual_seed(seed)
                x, rate = _sample(model, spec, 2500, options)
                label = spec.label + (f", {suffix}" if suffix else "")
                if not torch.isfinite(x).all():
                    print(f"| {label} | {spec.family} | {seed} | diverged (non-finite "
                          f"samples) | | | | {_fmt(nll)} | {warned} | {seconds:.0f} | "
                          f"{rate:,.0f} |")
                    continue
                cover = mode_coverage(x, modes, spread)
                pr = precision_recall(test["x"], x, k=5)
                rows.append({"data": data, "label": label, "family": spec.family,
                             "seed": seed, "quality": 100 * cover.high_quality,
                             "recall": pr.recall, "modes": cover.covered, "rate": rate,
                             "seconds": seconds, "nll": nll})
                print(f"| {label} | {spec.family} | {seed} | {cover.covered} | "
                      f"{100 * cover.high_quality:.1f} | {pr.recall:.3f} | "
                      f"{pr.coverage:.3f} | {_fmt(nll)} | {warned} | {seconds:.0f} | "
                      f"{rate:,.0f} |", flush=True)
    return rows


def digits(steps: int, seeds: int) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    classifier = digit_classifier("digits")
    grey = {s: ppl_gen.load_dataset("digits", split=s) for s in ("train", "test")}
    deq = {s: ppl_gen.load_dataset("digits", split=s, dequantize=True, seed=i)
           for i, s in enumerate(("train", "test"))}
    binary = {s: ppl_gen.load_dataset("digits", split=s, binarize=True)
              for s in ("train", "test")}
    real = {False: classifier.embed(grey["test"]["x"]),
            True: classifier.embed(binary["test"]["x"])}
    rows, images = [], {"data (grey)": grey["test"]["x"][:10],
                        "data (thresholded)": binary["test"]["x"][:10]}
    print(f"\n### 8x8 digits: {steps} steps, batch 100, 1,000 samples vs the 359 held-out "
          "images, digit_classifier('digits') features\n")
    print("| model | family | data | seed | FD | precision | recall | coverage | classes | "
          "label entropy (max 2.303) | test bits/dim | fit warned | train s | samples/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
          "| --- |")
    for kind, data in (("grey", grey), ("thresholded", binary)):
        features = classifier.embed(data["train"]["x"])
        pr = precision_recall(real[kind == "thresholded"], features[:1000], k=5)
        cover = class_coverage(data["train"]["x"], classifier=classifier)
        fd = frechet_distance(real[kind == "thresholded"], features)
        print(f"| training images (reference) | - | {kind} | - | {fd:.1f} | "
              f"{pr.precision:.3f} | {pr.recall:.3f} | {pr.coverage:.3f} | "
              f"{cover['classes']} | {cover['entropy']:.3f} | - | - | - | - |")
    for seed in range(seeds):
        for spec in DIGITS:
            data = binary if spec.binary else deq
            model, seconds, warned = _fit(spec, data["train"], steps, seed)
            nll = _nll(model, spec, data["test"]["x"])
            bpd = None if nll is None else (
                nll / (64 * math.log(2)) if spec.binary
                else (nll + 64 * math.log(LEVELS)) / (64 * math.log(2)))
            for suffix, options in spec.samplers:
                torch.manual_seed(seed)
                x, rate = _sample(model, spec, 1000, options)
                label = spec.label + (f", {suffix}" if suffix else "")
                x = x.clamp(0, 1)
                features = classifier.embed(x)
                pr = precision_recall(real[spec.binary], features, k=5)
                fd = frechet_distance(real[spec.binary], features)
                cover = class_coverage(x, classifier=classifier)
                images[label] = x[:10]
                rows.append({"data": "digits", "label": label, "family": spec.family,
                             "seed": seed, "quality": fd, "recall": pr.recall,
                             "rate": rate, "seconds": seconds, "bpd": bpd,
                             "binary": spec.binary})
                print(f"| {label} | {spec.family} | "
                      f"{'thresholded' if spec.binary else 'dequantised'} | {seed} | "
                      f"{fd:.1f} | {pr.precision:.3f} | {pr.recall:.3f} | {pr.coverage:.3f} "
                      f"| {cover['classes']} | {cover['entropy']:.3f} | {_fmt(bpd)} | "
                      f"{warned} | {seconds:.0f} | {rate:,.0f} |", flush=True)
    return rows, images


FAMILY_COLOURS = {"autoregressive": "tab:blue", "flow": "tab:green", "VAE": "tab:orange",
                  "GAN": "tab:red", "diffusion": "tab:purple"}


def figure(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [d for d in ("grid", "ring", "digits") if any(r["data"] == d for r in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, data in zip(axes[0], panels):
        chosen = [r for r in rows if r["data"] == data and r["seed"] == 0]
        for r in chosen:
            colour = FAMILY_COLOURS[r["family"]]
            ax.scatter(r["rate"], r["quality"], s=40 + 400 * r["recall"], color=colour,
                       alpha=0.6, edgecolor="k")
            ax.annotate(r["label"], (r["rate"], r["quality"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("samples per second (one CPU thread, log scale)")
        if data in POINTS:
            ax.set_ylabel("high-quality samples % (higher is sharper)")
            ax.set_title(f"2-D {data}: quality vs speed (marker area: recall)")
        else:
            ax.set_yscale("log")
            ax.invert_yaxis()
            ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_ylabel("Fréchet distance, classifier features (lower is better; up)")
            ax.set_title("8x8 digits: quality vs speed (marker area: recall)")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=f)
               for f, c in FAMILY_COLOURS.items()]
    axes[0][-1].legend(handles=handles, fontsize=8, loc="best")
    fig.tight_layout()
    plots.save_figure(fig, path)
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="training steps, 2-D grid")
    parser.add_argument("--digit-steps", type=int, default=3000, help="training steps, digits")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--only", choices=["grid", "ring", "digits"])
    parser.add_argument("--figure", default="docs/figures/trilemma.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    np.set_printoptions(precision=3)
    rows: list[dict[str, Any]] = []
    for data in POINTS:
        if args.only in (None, data):
            rows += grid(args.steps, args.seeds, data)
    if args.only in (None, "digits"):
        digit_rows, images = digits(args.digit_steps, args.seeds)
        rows += digit_rows
        path = args.figure.replace(".png", "_digits.png")
        plots.save_figure(plots.plot_images(images, (8, 8)), path)
        print(f"wrote {path}")
    if args.figure and rows:
        figure(rows, args.figure)


if __name__ == "__main__":
    main()
