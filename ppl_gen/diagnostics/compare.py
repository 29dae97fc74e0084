"""VI versus MCMC, parameter by parameter, with PSIS k-hat for each VI approximation.

For each parameter element: both means and sds, the standardised mean difference
(VI mean - MCMC mean) / MCMC sd, the sd ratio VI sd / MCMC sd, and the 1-D Wasserstein
distance between the two sets of draws. For each VI approximation q: the Pareto k-hat of
the importance weights p(x, z) / q(z) (Yao, Vehtari, Simpson & Gelman 2018, "Yes, but did
it work?: Evaluating variational inference"): k-hat < 0.5 means q is close enough for
importance sampling to correct it, 0.5-0.7 is usable, > 0.7 means q is unreliable.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from .._rng import seeded_call
from ..inference.base import FitResult
from ..inference.predictive import draw_from_guide, evaluate_draws
from ..traces.sites import element_label
from .checks import ReliabilityWarning
from .convert import mcse
from .summary import MAX_SUMMARY_SIZE
from .vi import importance_draws, khat_verdict, psis_summary

__all__ = ["PosteriorComparison", "compare_posteriors", "importance_log_weights",
           "khat_verdict"]


@dataclass(frozen=True)
class PosteriorComparison:
    """What :func:`compare_posteriors` returns.

    Attributes:
        rows: One dict per (approximation, parameter element): ``approximation``,
            ``parameter``, ``vi_mean``, ``vi_sd``, ``psis_mean``, ``psis_sd`` (the guide's
            draws PSIS-reweighted), ``mcmc_mean``, ``mcmc_sd``, ``mcmc_mcse``,
            ``std_mean_diff``, ``psis_std_mean_diff``, ``sd_ratio``, ``wasserstein``.
        khat: PSIS k-hat per approximation.
        num_mcmc_draws: MCMC draws used (all chains).
        num_vi_draws: Draws from each guide.
        draws: Per-element draws for plots: ``{"mcmc": {label: (n,)}, approx: {...}}``.
    """

    rows: list[dict[str, Any]]
    khat: dict[str, float]
    num_mcmc_draws: int
    num_vi_draws: int
    draws: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        summary = {}
        for name, k in self.khat.items():
            rows = [r for r in self.rows if r["approximation"] == name]
            summary[name] = {
                "khat": k, "khat_verdict": khat_verdict(k),
                "max_abs_std_mean_diff": max(abs(r["std_mean_diff"]) for r in rows),
                "min_sd_ratio": min(r["sd_ratio"] for r in rows),
                "max_sd_ratio": max(r["sd_ratio"] for r in rows),
            }
        return {"approximations": summary, "parameters": self.rows,
                "num_mcmc_draws": self.num_mcmc_draws, "num_vi_draws": self.num_vi_draws,
                "reference": "Yao et al. (2018), Yes, but did it work?: Evaluating "
                             "variational inference, ICML"}

    def to_markdown(self) -> str:
        lines = ["# VI vs MCMC", "",
                 f"MCMC draws: {self.num_mcmc_draws}; draws per VI approximation: "
                 f"{self.num_vi_draws}.", "",
                 "| approximation | PSIS k-hat | verdict |", "| --- | --- | --- |"]
        for name, k in self.khat.items():
            lines.append(f"| {name} | {k:.2f} | {khat_verdict(k)} |")
        lines += ["", "k-hat < 0.5: good; 0.5-0.7: ok; > 0.7: the approximation is "
                  "unreliable (Yao et al. 2018).", "",
                  "| approximation | parameter | VI mean | PSIS mean | MCMC mean | VI sd | "
                  "PSIS sd | MCMC sd | std. mean diff | PSIS std. mean diff | sd ratio | W1 |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            lines.append(
                f"| {r['approximation']} | {r['parameter']} | {r['vi_mean']:.3f} | "
                f"{r.get('psis_mean', float('nan')):.3f} | {r['mcmc_mean']:.3f} | "
                f"{r['vi_sd']:.3f} | {r.get('psis_sd', float('nan')):.3f} | "
                f"{r['mcmc_sd']:.3f} | {r['std_mean_diff']:+.2f} | "
                f"{r.get('psis_std_mean_diff', float('nan')):+.2f} | {r['sd_ratio']:.2f} | "
                f"{r['wasserstein']:.3f} |")
        lines += ["", "VI: the guide's raw draws; PSIS: the same guide's draws reweighted by "
                  "Pareto-smoothed importance weights (trust them where k-hat <= 0.7); "
                  "std. mean diff = (mean - MCMC mean) / MCMC sd; sd ratio = VI sd / "
                  "MCMC sd (below 1: VI is overconfident); W1 = 1-D Wasserstein distance."]
        return "\n".join(lines) + "\n"


@seeded_call
def importance_log_weights(result: FitResult, num_samples: int = 1000, *, seed: int = 0
                           ) -> np.ndarray:
    """log p(x, z_s) - log q(z_s) for z_s ~ q, with enumerated discrete sites summed out
    (:func:`ppl_gen.diagnostics.vi.importance_draws`, without keeping the draws)."""
    if result.guide is None:
        raise ValueError("importance weights need a fitted guide (an SVI result)")
    return importance_draws(result, num_samples, seed=seed, keep_draws=False).log_weights


def _flatten(name: str, draws: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(n, *shape) draws -> [(label, (n,) draws)] per element."""
    shape = draws.shape[1:]
    if not shape:
        return [(name, draws)]
    flat = draws.reshape(draws.shape[0], -1)
    return [(element_label(name, shape, i), flat[:, i]) for i in range(flat.shape[1])]


def _check_same_problem(name: str, vi: Any, mcmc: Any) -> None:
    """Refuse to compare fits of different models or data: the differences would be the
    data's, not the approximation's."""
    if vi.name != mcmc.name:
        raise ValueError(f"VI result {name!r} is a fit of model {vi.name!r} but the MCMC "
                         f"result is of {mcmc.name!r}; compare fits of the same model")
    if set(vi.data) != set(mcmc.data):
        raise ValueError(f"VI result {name!r} and the MCMC result were fitted on different "
                         f"data arguments ({', '.join(sorted(vi.data))} vs "
                         f"{', '.join(sorted(mcmc.data))}); fit both on the same data")
    for key, a in vi.data.items():
        b = mcmc.data[key]
        if torch.is_tensor(a) and torch.is_tensor(b):
            same = a.shape == b.shape and torch.equal(a.detach().cpu().to(b.dtype),
                                                       b.detach().cpu())
        else:
            same = a == b
        if not same:
            raise ValueError(f"VI result {name!r} and the MCMC result were fitted on "
                             f"different data ({key!r} differs); fit both on the same data, "
                             "or the comparison measures the data, not the approximation")


@seeded_call
def compare_posteriors(vi: FitResult | Mapping[str, FitResult], mcmc: FitResult, *,
                       num_samples: int = 2000, num_psis_samples: int = 1000,
                       var_names: list[str] | None = None, seed: int = 0
                       ) -> PosteriorComparison:
    """Compare one or more VI fits with an MCMC fit of the same model and data.

    Arguments:
        vi: An SVI FitResult, or a dict name -> FitResult (e.g. mean-field and full-rank).
        mcmc: A NUTS/HMC FitResult of the same model.
        num_samples: Draws from each guide for the moment and Wasserstein comparisons.
        num_psis_samples: Draws for the PSIS k-hat.
        var_names: Sites to compare (default: every shared site with at most
            ``MAX_SUMMARY_SIZE`` elements).
        seed: Seed for the guide draws.

    Returns:
        A :class:`PosteriorComparison`.
    """
    if not isinstance(mcmc, FitResult):
        raise TypeError(f"the second argument must be an MCMC FitResult from ppl_gen.fit, "
                        f"got {type(mcmc).__name__}")
    if mcmc.samples is None:
        raise ValueError(f"the second argument must be an MCMC result (engine 'nuts' or "
                         f"'hmc'), got engine {mcmc.engine!r}")
    approximations = dict(vi) if isinstance(vi, Mapping) else {"vi": vi}
    if not approximations:
        raise ValueError("no VI results to compare: pass an SVI FitResult or a non-empty "
                         "dict name -> FitResult")
    for name, result in approximations.items():
        if not isinstance(result, FitResult):
            raise TypeError(f"VI result {name!r} must be a FitResult from ppl_gen.fit, got "
                            f"{type(result).__name__}")
        if result.engine != "svi" or result.guide is None:
            raise ValueError(f"VI result {name!r} must come from engine 'svi' with a guide, "
                             f"got engine {result.engine!r}")
        _check_same_problem(name, result.problem, mcmc.problem)
    if mcmc.warnings:  # the reference itself failed a check: say so before comparing
        warnings.warn("the MCMC reference failed its convergence checks, so differences "
                      "from it may be the sampler's, not the approximation's:\n  - "
                      + "\n  - ".join(mcmc.warnings), ReliabilityWarning, stacklevel=2)
    mcmc_draws = {k: v.reshape(-1, *v.shape[2:]).cpu().numpy() for k, v in mcmc.samples.items()}
    chains = {k: v.cpu().numpy() for k, v in mcmc.samples.items()}
    rows: list[dict[str, Any]] = []
    khat: dict[str, float] = {}
    kept: dict[str, dict[str, np.ndarray]] = {"mcmc": {}}
    for approx, result in approximations.items():
        draws = draw_from_guide(result.problem, result.guide, num_samples, seed=seed,
                                param_state=result.param_state)
        deterministic = evaluate_draws(result.problem, draws, seed=seed, log_likelihood=False,
                                       posterior_predictive=False).deterministic
        vi_draws = {k: v.cpu().numpy() for k, v in {**draws, **deterministic}.items()}
        shared = [n for n in mcmc_draws if n in vi_draws]
        if var_names is not None:
            unknown = [n for n in var_names if n not in shared]
            if unknown:
                raise ValueError(f"unknown var_names {', '.join(unknown)}; the sites both "
                                 f"results share are: {', '.join(shared)}")
            shared = list(var_names)
        else:
            shared = [n for n in shared if mcmc_draws[n][0].size <= MAX_SUMMARY_SIZE]
        if not shared:
            raise ValueError("the VI and MCMC results share no latent site: were they fit to "
                             "the same model?")
        for name in shared:
            per_chain = chains[name].reshape(*chains[name].shape[:2], -1)  # (C, D, E)
            for element, ((label, m), (_, v)) in enumerate(
                    zip(_flatten(name, mcmc_draws[name]), _flatten(name, vi_draws[name]))):
                sd = float(m.std())
                kept["mcmc"][label] = m
                kept.setdefault(approx, {})[label] = v
                rows.append({
                    "approximation": approx, "parameter": label,
                    "vi_mean": float(v.mean()), "vi_sd": float(v.std()),
                    "mcmc_mean": float(m.mean()), "mcmc_sd": sd,
                    "mcmc_mcse": mcse(per_chain[:, :, element]),
                    "std_mean_diff": (float(v.mean()) - float(m.mean())) / sd if sd > 0
                    else float("nan"),
                    "sd_ratio": float(v.std()) / sd if sd > 0 else float("nan"),
                    "wasserstein": float(wasserstein_distance(v, m)),
                })
        imp = importance_draws(result, num_psis_samples, seed=seed)
        khat[approx] = imp.khat
        corrected = psis_summary(imp, max_size=10 ** 9) if imp.draws else {}
        for row in rows:
            if row["approximation"] != approx:
                continue
            extra = corrected.get(row["parameter"])
            row["psis_mean"] = extra["psis_mean"] if extra else float("nan")
            row["psis_sd"] = extra["psis_sd"] if extra else float("nan")
            sd = row["mcmc_sd"]
            row["psis_std_mean_diff"] = ((row["psis_mean"] - row["mcmc_mean"]) / sd
                                         if sd > 0 else float("nan"))
    num_mcmc = next(iter(mcmc_draws.values())).shape[0]
    return PosteriorComparison(rows, khat, num_mcmc, num_samples, kept)
