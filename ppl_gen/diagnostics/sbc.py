"""Simulation-based calibration of a sampler (or any posterior approximation) on a model.

Draw parameters from the prior and data from the model given them, fit the simulated data,
and rank each true parameter among the posterior draws. If the fitting is right, every rank
is uniform on 0..L (Talts et al. 2018); a sampler that is biased, too narrow or too wide
shows it as a slope, a U or a hump in the rank histogram. This works on any Pyro model whose
observed sites take their values from the data arguments: the model is run with those
sites unobserved (Pyro's ``uncondition``, restricted to them) to simulate, and each observed
site's data argument is found by identity (the tensor the site observed), or given as
``observed={"arg": "site"}``.

References:
    Yao, Vehtari, Simpson & Gelman (2018), "Yes, but did it work?: Evaluating variational
    inference", ICML (VSBC).
    Talts, Betancourt, Simpson, Vehtari & Gelman (2018), "Validating Bayesian inference
    algorithms with simulation-based calibration", arXiv:1804.06788.
    Modrák, Moon, Kim, Kennedy, Gabry & Vehtari (2023), "Simulation-based calibration
    checking for Bayesian computation: the choice of test quantities shapes sensitivity",
    Bayesian Analysis.
    Säilynoja, Bürkner & Vehtari (2022), "Graphical test for discrete uniformity and its
    applications in goodness-of-fit evaluation and multiple sample comparison" (ECDF plots).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from scipy import stats

from .checks import ReliabilityWarning

__all__ = ["SBCResult", "sbc", "VSBCResult", "vsbc"]


@dataclass(frozen=True)
class SBCResult:
    """Ranks of the true parameters among posterior draws, one per simulation.

    Attributes:
        ranks: Per scalar parameter (``theta[3]``), integer ranks in 0..num_draws,
            shaped (num_simulations,).
        num_draws: L, the number of (thinned) posterior draws each rank is out of.
        p_values: Chi-square test of uniform ranks per parameter (``num_bins`` bins).
        num_bins: Bins of the uniformity test.
        warned: Simulations whose fit issued reliability warnings (indices).
        truths: Per scalar parameter, the true (prior-drawn) value of each simulation.
        simulated: Per simulation, the simulated observed arguments (numpy arrays): with
            ``truths``, what a bad rank can be looked into with (or compared with an
            exact posterior where one is known).
    """

    ranks: dict[str, np.ndarray]
    num_draws: int
    p_values: dict[str, float]
    num_bins: int
    warned: list[int] = field(default_factory=list)
    truths: dict[str, np.ndarray] = field(default_factory=dict)
    simulated: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def num_simulations(self) -> int:
        return len(next(iter(self.ranks.values())))

    @property
    def min_p_value(self) -> float:
        """The smallest per-parameter p-value, Bonferroni-corrected for their number."""
        return min(1.0, min(self.p_values.values()) * len(self.p_values))

    def passed(self, alpha: float = 0.01) -> bool:
        """Ranks look uniform for every parameter (Bonferroni at level ``alpha``)."""
        return self.min_p_value > alpha

    def summary(self) -> str:
        lines = [f"SBC: {self.num_simulations} simulations, ranks out of {self.num_draws}, "
                 f"{self.num_bins}-bin chi-square"]
        for name, p in self.p_values.items():
            lines.append(f"  {name:<20} p = {p:.3g}")
        lines.append(f"  min p (Bonferroni) = {self.min_p_value:.3g}: "
                     + ("uniform" if self.passed() else "NOT uniform (miscalibrated)"))
        if self.warned:
            lines.append(f"  {len(self.warned)} fit(s) warned about their own convergence")
        return "\n".join(lines)

    def plot(self, *, max_panels: int = 12):
        """Rank histograms and ECDF-difference plots with 99% pointwise bands."""
        import matplotlib.pyplot as plt

        names = list(self.ranks)[:max_panels]
        fig, axes = plt.subplots(2, len(names), figsize=(2.6 * len(names), 4.6),
                                 squeeze=False)
        n, total = self.num_simulations, self.num_draws + 1
        grid = np.linspace(0, 1, 101)
        band = stats.binom.ppf([0.005, 0.995], n, grid[:, None]).T / n - grid
        for j, name in enumerate(names):
            u = (self.ranks[name] + 0.5) / total
            axes[0, j].hist(u, bins=self.num_bins, range=(0, 1), color="C0", alpha=0.8)
            axes[0, j].axhline(n / self.num_bins, color="k", lw=0.8)
            axes[0, j].set_title(f"{name}\np = {self.p_values[name]:.2g}", fontsize=8)
            ecdf = (u[None, :] <= grid[:, None]).mean(1)
            axes[1, j].fill_between(grid, band[0], band[1], color="0.85")
            axes[1, j].plot(grid, ecdf - grid, color="C3")
            axes[1, j].axhline(0, color="k", lw=0.5)
            axes[1, j].set_xlabel("fractional rank")
        axes[0, 0].set_ylabel("simulations")
        axes[1, 0].set_ylabel("ECDF − uniform")
        fig.tight_layout()
        return fig


class _Unobserve(Messenger):
    """Sample the named observed sites from their distributions (Pyro's ``uncondition``
    restricted to them: it would also resample ``pyro.deterministic`` sites, which are
    observed Delta sites, and break their shapes)."""

    def __init__(self, names: set[str]) -> None:
        super().__init__()
        self.names = names

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["name"] in self.names and msg["is_observed"]:
            msg["is_observed"] = False
            msg["value"] = None
            msg["infer"] = {**msg["infer"], "was_observed": True}


def _observed_arguments(model: Callable[..., Any], data: Mapping[str, Any],
                        observed: Mapping[str, str] | None) -> dict[str, str]:
    """data argument -> observed site name."""
    with poutine.block(), torch.no_grad():
        trace = poutine.trace(model).get_trace(**data)
    sites = {name: site for name, site in trace.nodes.items()
             if site["type"] == "sample" and site["is_observed"]
             and not site["infer"].get("_deterministic", False)}
    if observed is not None:
        unknown = [s for s in observed.values() if s not in sites]
        if unknown:
            raise ValueError(f"observed= names {', '.join(unknown)}, which are not observed "
                             f"sites of the model; its observed sites: {', '.join(sites)}")
        return dict(observed)
    found = {}
    for name, site in sites.items():
        keys = [k for k, v in data.items() if v is site["value"]]
        if not keys:
            raise ValueError(
                f"cannot tell which data argument the observed site {name!r} reads (no "
                "argument is that very tensor); pass observed={'argument': 'site'}")
        found[keys[0]] = name
    if not found:
        raise ValueError("the model has no observed site: there is nothing to simulate")
    return found


def _scalar_items(values: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in values.items():
        array = np.asarray(value.detach().cpu() if torch.is_tensor(value) else value,
                           dtype=float)
        if array.ndim == 0:
            out[name] = array
            continue
        for index in np.ndindex(array.shape):
            out[f"{name}[{', '.join(map(str, index))}]"] = array[index]
    return out


def sbc(model: Callable[..., Any], data: Mapping[str, Any], *,
        engine: str | Callable[..., Mapping[str, Any]] = "chees", num_simulations: int = 100,
        num_draws: int = 99, num_bins: int = 10, seed: int = 0,
        observed: Mapping[str, str] | None = None, parameters: list[str] | None = None,
        progress: bool = False, **fit_options: Any) -> SBCResult:
    """Simulation-based calibration of ``engine`` on ``model``.

    Arguments:
        model: A Pyro model (zoo model's ``model`` method or a plain function) whose keyword
            arguments are the data.
        data: The data arguments as for ``fit``: covariates are kept, observed arguments
            are replaced by simulated ones in every simulation.
        engine: A ``fit`` engine name (``"chees"``, ``"nuts"``, ...), or a callable
            ``(model, data, seed) -> {site: draws (chain, draw, ...)}`` for any other
            sampler or approximation.
        num_simulations: Prior draws, each fitted once (100: Talts et al.'s smallest).
        num_draws: L: posterior draws kept per fit, spread evenly over chains and draws so
            that they are nearly independent (thinning, as Talts et al. recommend).
        num_bins: Bins of the chi-square test of uniformity (each should expect >= 5).
        seed: Simulation i uses seed ``seed + i`` for the prior draw and the fit.
        observed: ``{"data argument": "observed site"}`` when not found by identity.
        parameters: Latent sites to rank (default: every latent site the prior trace has).
        progress: Print one line per simulation.
        **fit_options: Engine options passed to ``fit`` (``num_chains=8``, ...).

    Returns:
        An :class:`SBCResult`; ``result.passed()`` and ``result.plot()``.

    The global RNG state is saved and restored around every simulation.
    """
    if num_simulations < 2 or num_draws < 1:
        raise ValueError("num_simulations must be >= 2 and num_draws >= 1, got "
                         f"{num_simulations} and {num_draws}")
    if num_bins < 2 or num_simulations / num_bins < 5:
        raise ValueError(f"num_bins={num_bins} with {num_simulations} simulations expects "
                         f"{num_simulations / max(num_bins, 1):.1f} per bin; use at most "
                         f"{num_simulations // 5} bins (5 per bin) or more simulations")
    from ..inference import fit

    arguments = _observed_arguments(model, data, observed)
    ranks: dict[str, list[int]] = {}
    truths: dict[str, list[float]] = {}
    observations: list[dict[str, np.ndarray]] = []
    warned: list[int] = []
    state = pyro.util.get_rng_state()
    try:
        for i in range(num_simulations):
            pyro.set_rng_seed(seed + i)
            with poutine.block(), torch.no_grad(), _Unobserve(set(arguments.values())):
                prior = poutine.trace(model).get_trace(**data)
            simulated = {**data, **{arg: prior.nodes[site]["value"].detach()
                                    for arg, site in arguments.items()}}
            latent = [n for n, s in prior.nodes.items()
                      if s["type"] == "sample" and not s["is_observed"]
                      and not s["infer"].get("was_observed", False)
                      and not s["infer"].get("_deterministic", False)
                      and not site_is_subsample(s)
                      and (parameters is None or n in parameters)]
            truth = _scalar_items({n: prior.nodes[n]["value"] for n in latent})
            if callable(engine):
                draws = engine(model, simulated, seed + i)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ReliabilityWarning)
                    result = fit(model, simulated, engine=engine, seed=seed + i,
                                 **fit_options)
                draws = result.samples
                if result.warnings:
                    warned.append(i)
            for name in latent:
                array = np.asarray(draws[name].detach().cpu() if torch.is_tensor(draws[name])
                                   else draws[name], dtype=float)
                flat = array.reshape(-1, *array.shape[2:])
                picks = np.linspace(0, flat.shape[0] - 1, num_draws).round().astype(int)
                thinned = flat[picks]  # (L, *shape)
                for index in np.ndindex(thinned.shape[1:]):
                    label = name if not index else f"{name}[{', '.join(map(str, index))}]"
                    value = thinned[(slice(None), *index)]
                    ranks.setdefault(label, []).append(int((value < truth[label]).sum()))
                    truths.setdefault(label, []).append(float(truth[label]))
            observations.append({arg: simulated[arg].cpu().numpy() for arg in arguments})
            if progress:
                print(f"sbc {i + 1}/{num_simulations}", flush=True)
    finally:
        pyro.util.set_rng_state(state)
    rank_arrays = {k: np.asarray(v) for k, v in ranks.items()}
    edges = np.linspace(0, num_draws + 1, num_bins + 1)
    p_values = {}
    for name, r in rank_arrays.items():
        counts, _ = np.histogram(r + 0.5, bins=edges)
        # the integer ranks each bin holds (bins are unequal when B does not divide L + 1)
        per_bin, _ = np.histogram(np.arange(num_draws + 1) + 0.5, bins=edges)
        expected = len(r) * per_bin / (num_draws + 1)
        p_values[name] = float(stats.chisquare(counts, expected).pvalue)
    if not math.isfinite(min(p_values.values(), default=math.nan)):
        raise ValueError("no latent parameter was ranked; check parameters=")
    return SBCResult(rank_arrays, num_draws, p_values, num_bins, warned,
                     {k: np.asarray(v) for k, v in truths.items()}, observations)


@dataclass(frozen=True)
class VSBCResult:
    """Posterior quantiles of the true parameters under a fitted guide, one per simulation
    (Yao et al. 2018's VSBC).

    Attributes:
        quantiles: Per scalar parameter, P_q(theta < theta_true) per simulation.
        symmetry_p_values: Kolmogorov-Smirnov test of p against 1 - p per parameter: an
            unbiased point estimate (the guide's median) makes the quantiles' distribution
            symmetric around 1/2 (Yao et al., Theorem 1); a small p-value says the guide is
            biased for that parameter (a mean-field guide's too-small sds alone keep the
            symmetry, but not its bias).
        sbc: The same fits as SBC (rank uniformity; VI usually fails it by design).
    """

    quantiles: dict[str, np.ndarray]
    symmetry_p_values: dict[str, float]
    sbc: SBCResult

    @property
    def min_p_value(self) -> float:
        """The smallest symmetry p-value, Bonferroni-corrected."""
        values = self.symmetry_p_values
        return min(1.0, min(values.values()) * len(values))

    def passed(self, alpha: float = 0.01) -> bool:
        """Quantiles symmetric for every parameter (Bonferroni at level ``alpha``)."""
        return self.min_p_value > alpha

    def summary(self) -> str:
        lines = [f"VSBC: {self.sbc.num_simulations} simulations, symmetry of the posterior "
                 "quantiles of the true values (Kolmogorov-Smirnov, p vs 1 - p)"]
        for name, p in self.symmetry_p_values.items():
            lines.append(f"  {name:<20} p = {p:.3g}")
        lines.append(f"  min p (Bonferroni) = {self.min_p_value:.3g}: "
                     + ("symmetric" if self.passed() else "ASYMMETRIC (the guide is biased)"))
        return "\n".join(lines)


def vsbc(model: Callable[..., Any], data: Mapping[str, Any], *,
         guide: str | Callable[..., Any] = "mvn", num_simulations: int = 100,
         num_draws: int = 999, seed: int = 0, observed: Mapping[str, str] | None = None,
         parameters: list[str] | None = None, progress: bool = False,
         **fit_options: Any) -> VSBCResult:
    """Yao et al.'s VSBC of a variational family on a model: simulate from the prior, fit
    the guide (``fit(engine="svi", guide=guide, **fit_options)``), and test whether the
    posterior quantiles of the true values are symmetric around 1/2.

    Reuses :func:`sbc`'s simulation (prior draw, data from the model, observed arguments
    found by identity) with the guide's draws as the posterior.
    """
    from ..inference import draw_from_guide, fit

    def engine(model_: Callable[..., Any], simulated: Mapping[str, Any], seed_: int
               ) -> dict[str, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReliabilityWarning)
            options = {"psis_draws": 0, **fit_options}
            result = fit(model_, simulated, engine="svi", guide=guide, seed=seed_,
                         **options)
        draws = draw_from_guide(result.problem, result.guide, num_draws, seed=seed_,
                                param_state=result.param_state)
        return {k: v[None] for k, v in draws.items()}

    result = sbc(model, data, engine=engine, num_simulations=num_simulations,
                 num_draws=num_draws, num_bins=max(2, min(10, num_simulations // 5)),
                 seed=seed, observed=observed, parameters=parameters, progress=progress)
    quantiles = {k: (r + 0.5) / (num_draws + 1) for k, r in result.ranks.items()}
    symmetry = {k: float(stats.ks_2samp(p, 1 - p).pvalue) for k, p in quantiles.items()}
    return VSBCResult(quantiles, symmetry, result)
