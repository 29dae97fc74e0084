"""Figures, matplotlib only: they draw what ``ppl_gen.diagnostics`` computed.

Every function returns the ``Figure``; ``save_figure`` writes it atomically.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless by default; set MPLBACKEND to override before import

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .inference.base import FitResult  # noqa: E402
from .traces.sites import element_label

__all__ = ["plot_history", "plot_trace", "plot_pair", "plot_comparison", "save_figure",
           "scalar_draws", "plot_images", "plot_latent", "plot_elbo_terms",
           "plot_posterior_2d"]

_MAX_PANELS = 8  # beyond this a figure stops being readable; the rest is in posterior.nc


def scalar_draws(samples: Mapping[str, Any], var_names: list[str] | None = None,
                 max_panels: int = _MAX_PANELS) -> dict[str, np.ndarray]:
    """Flatten (chain, draw, *shape) draws into per-element (chain, draw) arrays."""
    out: dict[str, np.ndarray] = {}
    for name in var_names or list(samples):
        value = np.asarray(samples[name].detach().cpu() if hasattr(samples[name], "detach")
                           else samples[name])
        shape = value.shape[2:]
        flat = value.reshape(*value.shape[:2], -1)
        for i in range(flat.shape[-1]):
            out[element_label(name, shape, i)] = flat[:, :, i]
            if len(out) >= max_panels:
                return out
    return out


def plot_history(result: FitResult) -> Figure:
    """The objective over iterations, by what the result holds (``result.kind``): the
    ELBO per step (an optimiser), the mean log-likelihood per iteration (a point fit such as
    EM), each player's loss per step (two-player training), the ELBO along the L-BFGS
    paths (Pathfinder) or the log density per draw (a sampler)."""
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    kind = result.kind
    if kind == "optimiser" and "elbo" in result.history:
        values, label = result.history["elbo"], "ELBO"
        every = result.config.log_every
        steps = np.arange(len(values)) * every
        ax.plot(steps, values, lw=0.8, alpha=0.5, label="per step")
        if len(values) >= 20:  # a running mean shows the trend under the SVI noise
            window = max(len(values) // 50, 5)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, lw=1.5, label=f"mean of {window}")
        ax.legend(frameon=False)
        ax.set_xlabel("step")
        lo, hi = np.percentile(values, [5, 100])
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
    elif kind == "point" and "log_likelihood" in result.history:
        values, label = result.history["log_likelihood"], "mean log-likelihood"
        ax.plot(np.arange(len(values)), values, marker=".", lw=1)
        ax.set_xlabel("EM iteration")
    elif kind == "two-player":
        every = getattr(result.config, "log_every", 1)
        phases = [k for k in result.history if k != "loss"] or ["loss"]
        for name in phases:
            values = np.asarray(result.history[name], dtype=float)
            ax.plot(np.arange(len(values)) * every, values, lw=0.8, label=name)
        label = "loss per player"
        ax.legend(frameon=False)
        ax.set_xlabel("step")
    elif kind == "approximation" and "elbo" in result.history:
        values, label = result.history["elbo"], "ELBO"
        ax.plot(np.arange(len(values)), values, lw=0.8)
        ax.set_xlabel("L-BFGS iteration (all paths, in turn)")
    else:
        values, label = -result.history["loss"], "log density (mean over chains)"
        ax.plot(values, lw=0.8)
        ax.set_xlabel("draw")
    ax.set_ylabel(label)
    ax.set_title(f"{result.problem.name} — {result.engine}")
    return fig


def plot_trace(samples: Mapping[str, Any], *, diverging: np.ndarray | None = None,
               var_names: list[str] | None = None) -> Figure:
    """Per parameter: draws per chain (right) and their histograms (left); divergent draws
    marked in red under the trace."""
    draws = scalar_draws(samples, var_names)
    fig, axes = plt.subplots(len(draws), 2, figsize=(9, 1.7 * len(draws) + 0.5),
                             squeeze=False, constrained_layout=True,
                             gridspec_kw={"width_ratios": [1, 2.5]})
    for row, (label, values) in enumerate(draws.items()):
        left, right = axes[row]
        for chain in range(values.shape[0]):
            left.hist(values[chain], bins=30, histtype="step", density=True)
            right.plot(values[chain], lw=0.5, alpha=0.8)
        if diverging is not None and diverging.any():
            chain_idx, draw_idx = np.nonzero(diverging)
            ymin = values.min()
            right.plot(draw_idx, np.full_like(draw_idx, ymin, dtype=float), "|", color="red",
                       ms=8, label="divergent")
        left.set_ylabel(label)
        left.set_yticks([])
    axes[0, 1].set_title("trace (one colour per chain)")
    axes[0, 0].set_title("marginal")
    axes[-1, 1].set_xlabel("draw")
    return fig


def plot_pair(samples: Mapping[str, Any], *, diverging: np.ndarray | None = None,
              var_names: list[str] | None = None, max_vars: int = 4) -> Figure:
    """Scatter matrix of up to ``max_vars`` scalars; divergent draws in red (the funnel of
    centered eight schools shows up here)."""
    draws = scalar_draws(samples, var_names, max_panels=max_vars)
    labels = list(draws)
    n = len(labels)
    fig, axes = plt.subplots(n, n, figsize=(2.2 * n + 0.5, 2.2 * n + 0.5), squeeze=False,
                             constrained_layout=True)
    div = diverging.reshape(-1) if diverging is not None else None
    for i, yi in enumerate(labels):
        for j, xj in enumerate(labels):
            ax = axes[i, j]
            x, y = draws[xj].reshape(-1), draws[yi].reshape(-1)
            if i == j:
                ax.hist(x, bins=30, color="C0")
            elif i > j:
                ax.scatter(x, y, s=2, alpha=0.3, color="C0")
                if div is not None and div.any():
                    ax.scatter(x[div], y[div], s=6, color="red", label="divergent")
            else:
                ax.axis("off")
            if i == n - 1:
                ax.set_xlabel(xj)
            if j == 0 and i > 0:
                ax.set_ylabel(yi)
    return fig


def plot_comparison(comparison: Any, *, max_vars: int = _MAX_PANELS) -> Figure:
    """Overlaid marginals: MCMC (filled) against each VI approximation (lines)."""
    mcmc = comparison.draws.get("mcmc", {})
    labels = list(mcmc)[:max_vars]
    if not labels:
        raise ValueError("this comparison holds no draws to plot (keep_draws=False)")
    cols = min(len(labels), 4)
    rows = int(np.ceil(len(labels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False,
                             constrained_layout=True)
    for ax, label in zip(axes.reshape(-1), labels):
        m = mcmc[label]
        bins = np.linspace(*np.percentile(m, [0.5, 99.5]), 40)
        ax.hist(m, bins=bins, density=True, color="0.8", label="MCMC")
        for k, (approx, draws) in enumerate(comparison.draws.items()):
            if approx == "mcmc":
                continue
            ax.hist(draws[label], bins=bins, density=True, histtype="step", lw=1.5,
                    color=f"C{k}", label=f"{approx} (k̂={comparison.khat[approx]:.2f})")
        ax.set_title(label)
        ax.set_yticks([])
    for ax in axes.reshape(-1)[len(labels):]:
        ax.axis("off")
    axes[0, 0].legend(frameon=False, fontsize=8)
    return fig


def plot_images(rows: Mapping[str, Any], image_shape: tuple[int, int], *,
                max_per_row: int = 16) -> Figure:
    """Rows of images, one row per label: ``{"VAE samples": (n, H*W) array, ...}``."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(max_per_row * 0.55, 0.75 * len(rows) + 0.3),
                             squeeze=False, constrained_layout=True)
    for ax, (label, images) in zip(axes[:, 0], rows.items()):
        images = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
        images = images[:max_per_row].reshape(-1, *image_shape)
        strip = np.concatenate([np.pad(im, 1, constant_values=1.0) for im in images], axis=1)
        ax.imshow(strip, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_axis_off()
    return fig


def plot_latent(codes: Mapping[str, Any], labels: Any = None, *,
                prior_draws: Any = None) -> Figure:
    """2-D codes per model side by side, coloured by class label, with prior draws in grey
    behind them (where the codes should be for sampling to work)."""
    fig, axes = plt.subplots(1, len(codes), figsize=(4.2 * len(codes), 4), squeeze=False,
                             constrained_layout=True)
    for ax, (name, z) in zip(axes[0], codes.items()):
        z = np.asarray(z.detach().cpu() if hasattr(z, "detach") else z)
        if prior_draws is not None:
            p = np.asarray(prior_draws)
            ax.scatter(p[:, 0], p[:, 1], s=3, c="0.8", label="prior draws")
        points = ax.scatter(z[:, 0], z[:, 1], s=5, c=labels, cmap="tab10")
        ax.set_title(name)
        ax.set_xlabel("z[0]")
        ax.set_ylabel("z[1]")
    if labels is not None:
        fig.colorbar(points, ax=axes[0, -1], label="class")
    return fig


def plot_elbo_terms(steps: Any, terms: Mapping[str, Mapping[str, Any]]) -> Figure:
    """ELBO = reconstruction − KL over training, one panel per run:
    ``terms = {"beta=1": {"reconstruction": [...], "kl": [...], "elbo": [...]}}``."""
    fig, axes = plt.subplots(1, len(terms), figsize=(5 * len(terms), 3.6), squeeze=False,
                             constrained_layout=True)
    for ax, (name, values) in zip(axes[0], terms.items()):
        for key, style in (("elbo", "k-"), ("reconstruction", "C0--")):
            ax.plot(steps, values[key], style, label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("nats per datum")
        twin = ax.twinx()
        twin.plot(steps, values["kl"], "C3:", label="KL(q || p)")
        twin.set_ylabel("KL (nats)", color="C3")
        ax.set_title(name)
        lines = ax.get_legend_handles_labels()
        twin_lines = twin.get_legend_handles_labels()
        ax.legend(lines[0] + twin_lines[0], lines[1] + twin_lines[1], fontsize=8,
                  loc="lower right")
    return fig


def plot_posterior_2d(draws: Mapping[str, Any], *, title: str = "") -> Figure:
    """Overlaid 2-D posterior draws (e.g. NUTS, encoder q, optimal q*) for one data point."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2), constrained_layout=True)
    for i, (name, z) in enumerate(draws.items()):
        z = np.asarray(z.detach().cpu() if hasattr(z, "detach") else z).reshape(-1, 2)
        ax.scatter(z[:, 0], z[:, 1], s=3, alpha=0.35, color=f"C{i}", label=name)
    ax.legend(markerscale=4, fontsize=8)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    return fig


def plot_samples_2d(samples: Any, data: Any, *, title: str = "samples") -> Figure:
    """Generated 2-D points over the data's density (contours of a 2-D histogram): where
    a GAN puts its mass, and which modes it misses."""
    x = np.asarray(data.detach().cpu() if hasattr(data, "detach") else data)
    y = np.asarray(samples.detach().cpu() if hasattr(samples, "detach") else samples)
    fig, ax = plt.subplots(figsize=(4.6, 4.4), constrained_layout=True)
    both = np.concatenate([x, np.percentile(y, [1, 99], axis=0)]) if len(y) else x
    pad = 0.1 * (both.max(0) - both.min(0)) + 1e-6
    low, high = both.min(0) - pad, both.max(0) + pad
    counts, xe, ye = np.histogram2d(x[:, 0], x[:, 1], bins=80,
                                    range=[[low[0], high[0]], [low[1], high[1]]])
    if counts.max() > 0:
        ax.contour(0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1]), counts.T,
                   levels=[1, counts.max() / 10, counts.max() / 2], colors="0.6",
                   linewidths=0.8)
    ax.scatter(y[:, 0], y[:, 1], s=3, alpha=0.4, color="C3", label="generated")
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_title(f"{title} (grey: data density)")
    ax.set_aspect("equal", adjustable="box")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 110) -> None:
    """Write a PNG atomically (a half-written file never replaces a good one) and close."""
    directory = os.path.dirname(os.fspath(path)) or "."
    handle, tmp = tempfile.mkstemp(suffix=".png", dir=directory)
    os.close(handle)
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        plt.close(fig)
