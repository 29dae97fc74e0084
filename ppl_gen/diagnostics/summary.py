"""Per-parameter summaries of any FitResult, as plain JSON-ready dicts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._rng import seeded_call
from ..config import config_to_dict
from ..inference.base import FitResult
from ..traces.sites import element_label
from .convert import arviz_summary, group_names, to_inference_data

__all__ = ["summarize", "MAX_SUMMARY_SIZE"]

#: Sites with more elements per draw than this (local latents of big data) are left out of
#: the per-parameter table; they stay in the InferenceData.
MAX_SUMMARY_SIZE = 200


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _check_idata_matches(result: FitResult, idata: Any) -> None:
    """``idata`` must be this result's conversion: numbers from another fit would be
    reported under this fit's name."""
    attrs = getattr(idata, "attrs", {}) or {}
    mine = {"engine": result.engine, "model": result.problem.name, "seed": result.seed}
    for key, value in mine.items():
        if key in attrs and attrs[key] != value:
            raise ValueError(f"idata comes from a different fit ({key} {attrs[key]!r}, this "
                             f"result's is {value!r}); pass to_inference_data(result) of "
                             "this result, or leave idata out")


@seeded_call
def summarize(result: FitResult, *, idata: Any = None, num_samples: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """A JSON-ready summary.

    Per parameter element (``theta[3]``): ``mean`` and ``sd``; for MCMC also ``r_hat``,
    ``ess_bulk``, ``ess_tail`` and ``mcse_mean``; for SVI with a continuous guide also the
    PSIS-corrected ``psis_mean``, ``psis_sd``, ``psis_mcse_mean`` and quantiles
    (``psis_q05``, ``psis_q50``, ``psis_q95``), and ``psis`` (k-hat, its verdict, the
    draws and seconds it cost). Plus the divergences (MCMC), the ELBO
    history (SVI) or the log-likelihood per iteration (EM), and the run's info and config.

    Arguments:
        result: What ``fit`` returned.
        idata: Its InferenceData, if already converted (saves a second conversion).
        num_samples: Guide draws for SVI results.
        seed: Seed for those draws.
    """
    if idata is None:
        idata = to_inference_data(result, num_samples=num_samples, seed=seed,
                                  posterior_predictive=False)
    else:
        _check_idata_matches(result, idata)
    info = {k: v for k, v in result.info.items() if k not in ("diagnostics", "psis")}
    out: dict[str, Any] = {"model": result.problem.name, "engine": result.engine,
                           "seed": result.seed, "config": config_to_dict(result.config),
                           "info": info}
    parameters: dict[str, dict[str, Any]] = {}
    skipped = []
    if "posterior" in group_names(idata):
        posterior = idata["posterior"]
        names = []
        for name, var in posterior.data_vars.items():
            size = int(np.prod(var.shape[2:], dtype=int))
            (names if size <= MAX_SUMMARY_SIZE else skipped).append(name)
        point = posterior.sizes["draw"] * posterior.sizes["chain"] == 1
        if names and point:
            for name in names:
                values = np.asarray(posterior[name]).reshape(-1)
                shape = posterior[name].shape[2:]
                for flat, value in enumerate(values):
                    parameters[element_label(name, tuple(shape), flat)] = {
                        "mean": float(value), "sd": None}
        elif names:
            table = arviz_summary(idata, var_names=names)
            columns = ["mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]
            if result.kind != "sampler":  # VI draws are independent: R-hat/ESS say nothing
                columns = ["mean", "sd"]
            for label, row in table.iterrows():
                parameters[str(label)] = {c: row[c] for c in columns if c in row}
    psis = result.info.get("psis")
    if psis is not None:
        corrected = psis.get("summary", {})
        for label, row in parameters.items():  # corrected numbers beside the raw ones
            extra = corrected.get(label)
            if extra is not None:
                row.update({k: v for k, v in extra.items() if k.startswith("psis_")})
        out["psis"] = {k: v for k, v in psis.items() if k != "summary"}
    out["parameters"] = parameters
    if skipped:
        out["not_summarised"] = {"sites": skipped, "reason": f"more than {MAX_SUMMARY_SIZE} "
                                 "elements per draw (local latents); see posterior.nc"}
    if result.kind == "sampler":  # every sampler: NUTS, HMC, ChEES
        stats = result.sample_stats or {}
        if "diverging" in stats:
            out["divergences"] = int(np.sum(stats["diverging"]))
            out["divergences_per_chain"] = np.sum(stats["diverging"], axis=1).tolist()
        rhats = [p.get("r_hat") for p in parameters.values() if p.get("r_hat") is not None]
        out["max_r_hat"] = max(rhats) if rhats else None
        ess = [p.get("ess_bulk") for p in parameters.values() if p.get("ess_bulk") is not None]
        out["min_ess_bulk"] = min(ess) if ess else None
        checked = result.info.get("diagnostics", {})
        for key in ("min_ess_tail", "max_nested_r_hat", "e_bfmi_per_chain"):
            if key in checked:
                out[key] = checked[key]
    out["kind"] = result.kind
    # plain sentences, one per failed check (empty: every check passed)
    out["warnings"] = list(result.warnings)
    if result.kind in ("optimiser", "approximation") and "elbo" in result.history:
        out["elbo"] = result.history["elbo"]
    if result.kind == "point" and "log_likelihood" in result.history:
        out["log_likelihood"] = result.history["log_likelihood"]
        out["log_likelihood_is"] = "mean per datum, one entry per iteration (0 = initial)"
    return _clean(out)
