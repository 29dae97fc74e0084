"""The only module that imports ArviZ.

Builds the InferenceData of either ArviZ line behind one ``to_inference_data``: on ArviZ
1.x (Python >= 3.12) an ``xarray.DataTree`` from ``arviz_base.from_dict``, on 0.x an
``arviz.InferenceData``; both hold the same groups, variables, dimensions and attributes,
and ``az.loo``, ``az.compare`` and ArviZ's plots take either. It also wraps the few ArviZ
statistics ppl_gen uses, so that the rest of the library never asks which line it has.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._rng import seeded_call
from ..inference.base import FitResult
from ..inference.predictive import draw_from_guide, evaluate_draws

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # 0.23's notice about the 1.x refactor
    import arviz as az

__all__ = ["to_inference_data", "read_netcdf", "arviz_summary", "psis_khat", "psis_smooth",
           "loo", "waic", "ELPD", "ess", "rhat", "mcse", "group_names", "ARVIZ_VERSION",
           "ARVIZ_1"]

ARVIZ_VERSION = az.__version__
#: True on the ArviZ 1.x line (DataTree, arviz-base / arviz-stats / arviz-plots).
ARVIZ_1 = int(ARVIZ_VERSION.split(".")[0]) >= 1


def group_names(idata: Any) -> list[str]:
    """The groups of an InferenceData (0.x) or DataTree (1.x): ``["posterior", ...]``."""
    if hasattr(idata, "children"):  # xarray.DataTree
        return list(idata.children)
    return list(idata.groups())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ArviZ's warnings and its logger (it logs, e.g., that one chain gives no
    R-hat; ppl_gen reports that itself)."""
    # ArviZ 0.x logs through its own ``arviz._log`` (a Logger made directly, not the one
    # ``logging.getLogger("arviz")`` returns): silence both.
    loggers = {id(x): x for x in (logging.getLogger("arviz"), getattr(az, "_log", None))
               if isinstance(x, logging.Logger)}.values()
    levels = [(logger, logger.level) for logger in loggers]
    for logger, _ in levels:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in levels:
            logger.setLevel(level)


def _np(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _with_chain(values: dict[str, torch.Tensor], num_chains: int) -> dict[str, np.ndarray]:
    """(S, ...) -> (chain, S // chain, ...)."""
    out = {}
    for name, value in values.items():
        array = _np(value)
        out[name] = array.reshape((num_chains, array.shape[0] // num_chains) + array.shape[1:])
    return out


def _point_parameters(result: FitResult) -> dict[str, torch.Tensor]:
    module = result.problem.module
    if module is None:
        return {}
    names = [n.removesuffix("_unconstrained") for n, _ in module.named_parameters()]
    return {n.replace(".", "_"): getattr(module, n) for n in names if "." not in n}


@seeded_call
def to_inference_data(result: FitResult, *, num_samples: int = 1000, seed: int = 0,
                      log_likelihood: bool = True, posterior_predictive: bool = True,
                      psis: bool = False) -> Any:
    """Convert a FitResult into ArviZ InferenceData (an ``xarray.DataTree`` on ArviZ 1.x).

    Groups: ``posterior`` (MCMC draws; SVI draws from the guide, including deterministic
    sites; EM's maximum-likelihood point as one draw), ``sample_stats`` (MCMC: diverging,
    step_size, acceptance_rate, lp), ``log_likelihood`` (pointwise, so ``az.loo`` and
    ``az.waic`` work), ``posterior_predictive`` and ``observed_data``.

    Arguments:
        result: What ``fit`` returned.
        num_samples: Guide draws for SVI results.
        seed: Seed for guide and predictive draws.
        log_likelihood: Include the pointwise log-likelihood group.
        posterior_predictive: Include replicated data (for point fits of large data,
            over ``MAX_REPLICATED_ELEMENTS`` observed values, it is left out: one
            replicate of MNIST from an autoregressive model takes minutes).
        psis: SVI only: the posterior group holds ``num_samples`` draws resampled (with
            replacement) from 4 x ``num_samples`` guide draws by their Pareto-smoothed
            importance weights — draws of the posterior itself when k-hat < 0.7 — instead
            of the guide's raw draws. ``attrs["psis_khat"]`` says how far to trust them.

    SVI results carry ``attrs["psis_khat"]`` and ``attrs["psis_verdict"]`` (from ``fit``'s
    reliability report) whenever it was computed.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1 (draws from the fitted guide), "
                         f"got {num_samples!r}")
    if psis and result.engine != "svi":
        raise ValueError(f"psis=True reweights a VI guide's draws; this is a "
                         f"{result.engine!r} result, whose draws are used as they are "
                         "(leave psis=False)")
    problem = result.problem
    reference = problem.structure
    if problem.module is not None and problem.module.observed in problem.data:
        observed = {problem.module.observed: _np(problem.data[problem.module.observed])}
    else:
        full = problem.trace()
        observed = {name: _np(full.nodes[name]["value"]) for name in problem.observed}
    groups: dict[str, Any] = {"observed_data": observed}
    if result.samples is not None:  # MCMC
        num_chains = next(iter(result.samples.values())).shape[0]
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in result.samples.items()}
        groups["posterior"] = {k: _np(v) for k, v in result.samples.items()}
        stats = result.sample_stats or {}
        if "diverging" in stats:  # samplers; Pathfinder's resampled draws have none
            groups["sample_stats"] = {
                "diverging": stats["diverging"], "step_size": stats["step_size"],
                "acceptance_rate": stats["accept_prob"], "lp": -stats["potential_energy"]}
            if "energy" in stats and np.isfinite(stats["energy"]).all():
                groups["sample_stats"]["energy"] = stats["energy"]  # az.bfmi, plot_energy
        draws = {k: v for k, v in flat.items()
                 if not reference.nodes.get(k, {}).get("infer", {}).get("_deterministic")}
        evaluated = evaluate_draws(problem, draws, seed=seed, log_likelihood=log_likelihood,
                                   posterior_predictive=posterior_predictive)
    elif result.kind == "optimiser":
        num_chains = 1
        module = problem.module
        # An amortised guide's latents are one z per datum, not parameters: S draws of all
        # of them (and the likelihood at each) would be S x N x D numbers for nothing.
        # Such models report their per-datum log p(x) estimate instead, like a point fit.
        amortised = module is not None and module.has_local_guide and module.density in (
            "bound", "implicit")
        if psis:
            draws, khat = _psis_resampled(result, num_samples, seed)
        else:
            draws = draw_from_guide(problem, result.guide, num_samples, seed=seed,
                                    param_state=result.param_state) if (
                result.guide and not amortised) else {}
        if draws:
            evaluated = evaluate_draws(problem, draws, seed=seed,
                                       log_likelihood=log_likelihood,
                                       posterior_predictive=posterior_predictive)
            groups["posterior"] = _with_chain({**draws, **evaluated.deterministic}, 1)
        else:  # maximum likelihood with an empty guide: point parameters only
            evaluated = None
        points = _point_parameters(result)
        if points and not draws:
            groups["posterior"] = {k: _np(v)[None, None] for k, v in points.items()}
        if evaluated is None:
            evaluated = _point_evaluation(result, log_likelihood, posterior_predictive, seed)
    else:  # EM's maximum-likelihood point; adversarial training's point parameters
        num_chains = 1
        groups["posterior"] = {k: _np(v)[None, None] for k, v in
                               _point_parameters(result).items()}
        evaluated = _point_evaluation(result, log_likelihood, posterior_predictive, seed)
    if evaluated is not None:
        if log_likelihood and evaluated.log_likelihood:
            groups["log_likelihood"] = _with_chain(evaluated.log_likelihood, num_chains)
        if posterior_predictive and evaluated.posterior_predictive:
            groups["posterior_predictive"] = _with_chain(evaluated.posterior_predictive,
                                                         num_chains)
    # An empty group (a point fit with no parameters to show) is left out, as 0.x does;
    # 1.x would keep it as a group without dimensions.
    groups = {name: values for name, values in groups.items() if values}
    with _quiet():
        idata = az.from_dict(groups) if ARVIZ_1 else az.from_dict(**groups)
    idata.attrs["engine"] = result.engine
    idata.attrs["model"] = problem.name
    idata.attrs["seed"] = result.seed
    report = result.info.get("psis") or {}
    if psis:
        idata.attrs["psis_resampled"] = 1
        report = {"khat": khat}
    if "khat" in report:
        idata.attrs["psis_khat"] = float(report["khat"])
        idata.attrs["psis_verdict"] = _verdict(float(report["khat"]))
    return idata


def _verdict(khat: float) -> str:
    from .vi import khat_verdict

    return khat_verdict(khat)


def _psis_resampled(result: FitResult, num_samples: int, seed: int
                    ) -> tuple[dict[str, torch.Tensor], float]:
    """``num_samples`` draws resampled by PSIS weights from 4x as many guide draws."""
    from .vi import applicable, importance_draws

    reason = applicable(result)
    if reason is not None:
        raise ValueError(f"psis=True is not possible for this result: {reason}")
    imp = importance_draws(result, max(4 * num_samples, 100), seed=seed)
    if not imp.draws:
        raise ValueError("psis=True needs the guide's draws, which this model's weights "
                         "do not keep (enumerated discrete sites); use psis=False")
    weights = np.exp(imp.smoothed - imp.smoothed.max())
    weights /= weights.sum()
    index = np.random.default_rng(seed).choice(len(weights), size=num_samples, p=weights)
    return {k: torch.as_tensor(v[index]) for k, v in imp.draws.items()}, imp.khat


#: Point fits (EM, maximum likelihood) get a replicated-data group only up to this many
#: observed elements (a 1,797 x 64 digits set: yes; 5,000 x 784 MNIST: no).
MAX_REPLICATED_ELEMENTS = 1_000_000


@seeded_call
def _point_evaluation(result: FitResult, log_likelihood: bool, posterior_predictive: bool,
                      seed: int) -> Any:
    """Exact marginal log-likelihood and replicated data at point parameters (EM, MLE)."""
    from ..inference.predictive import DrawEvaluation

    module, problem = result.problem.module, result.problem
    loglik, replicated = {}, {}
    with torch.no_grad():
        if log_likelihood and module is not None and module.density in ("exact", "bound"):
            # "bound": an importance-sampled estimate; 100 draws per datum keep it cheap.
            options = getattr(module, "summary_log_prob_options", None)
            if options is None:
                options = {"num_samples": 100} if module.density == "bound" else {}
            try:
                loglik = {problem.observed[0]:
                          module.log_prob(**problem.data, **options)[None]}
            except (NotImplementedError, ValueError):
                loglik = {}
        observed = problem.data.get(module.observed) if module is not None else None
        if posterior_predictive and module is not None and observed is not None and \
                observed.numel() > MAX_REPLICATED_ELEMENTS:
            # One replicate of 5,000 MNIST images is 784 sequential network passes for an
            # autoregressive model (minutes) and 16 MB in posterior.nc, for a group
            # nobody reads at this size: draw from the model with model.sample instead.
            posterior_predictive = False
        if posterior_predictive and module is not None and observed is not None:
            torch.manual_seed(seed)
            try:
                replicated = {module.observed: module.sample(observed.shape[0])[None]}
            except (NotImplementedError, ValueError, RuntimeError):
                replicated = {}
    return DrawEvaluation({}, loglik, replicated)


# --- thin wrappers over ArviZ statistics -----------------------------------------------
def arviz_summary(idata: Any, *, var_names: list[str] | None = None) -> Any:
    """``az.summary`` (a pandas DataFrame with, on both ArviZ lines, the columns mean, sd,
    mcse_mean, ess_bulk, ess_tail and r_hat; its interval columns differ by line)."""
    with _quiet():
        return az.summary(idata, var_names=var_names, round_to="none")


def psis_khat(log_weights: np.ndarray) -> float:
    """Pareto k-hat of importance log-weights (Vehtari et al. 2024, PSIS)."""
    return psis_smooth(log_weights)[1]


def psis_smooth(log_weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed, normalised log-weights and k-hat (ArviZ's PSIS; non-finite weights
    count as zero weight)."""
    log_weights = np.asarray(log_weights, dtype=float).copy()
    log_weights[~np.isfinite(log_weights)] = -np.inf
    with _quiet():
        if ARVIZ_1:
            from arviz_stats.base import array_stats

            # arviz-stats' psislw takes a log-likelihood and smooths its negation (the LOO
            # weights); importance weights go in negated.
            try:
                smoothed, khat = array_stats.psislw(-log_weights)
            except ValueError:
                # Too few tail draws to fit (fewer than 5) or a tail of ties: ArviZ 0.x
                # returns the normalised raw weights and k-hat = inf then; so does this.
                finite = log_weights[np.isfinite(log_weights)]
                peak = finite.max() if finite.size else 0.0
                total = np.log(np.exp(log_weights - peak).sum()) + peak
                smoothed, khat = log_weights - total, np.inf
        else:
            smoothed, khat = az.psislw(log_weights)
    return np.asarray(smoothed, dtype=float), float(khat)


@dataclass(frozen=True)
class ELPD:
    """Expected log pointwise predictive density, the same on both ArviZ lines.

    Attributes:
        kind: ``"loo"`` (PSIS-LOO) or ``"waic"``.
        elpd: The estimate (log scale: higher is better).
        se: Its standard error.
        p: The effective number of parameters (``p_loo`` / ``p_waic``).
        pointwise: Each observation's contribution, flattened.
        pareto_k: PSIS-LOO only: each observation's k-hat (above 0.7: that observation's
            estimate is unreliable).
        warning: ArviZ's (LOO) or WAIC's own warning flag (a pointwise posterior variance
            of the log density above 0.4).
        arviz: The object ArviZ returned (``None`` for WAIC, which ppl_gen computes).
    """

    kind: str
    elpd: float
    se: float
    p: float
    pointwise: np.ndarray
    pareto_k: np.ndarray | None = None
    warning: bool = False
    arviz: Any = field(default=None, repr=False, compare=False)


def _log_likelihood(idata: Any, var_name: str | None, what: str
                    ) -> tuple[np.ndarray, str]:
    """One observed site's pointwise log-likelihood as (draws, observations)."""
    if "log_likelihood" not in group_names(idata):
        raise ValueError(f"{what} needs a log_likelihood group; convert with "
                         "log_likelihood=True")
    group = idata["log_likelihood"]
    names = list(group.data_vars)
    if var_name is None:
        if len(names) != 1:
            raise ValueError(f"{what}: the log_likelihood group has {len(names)} observed "
                             f"sites {names}; pass var_name= one of them")
        var_name = names[0]
    elif var_name not in names:
        raise ValueError(f"{what}: no observed site {var_name!r} in the log_likelihood "
                         f"group; it has {names}")
    values = np.asarray(group[var_name], dtype=float)
    if values.shape[0] * values.shape[1] < 2:
        raise ValueError(f"{what} needs posterior draws, but this result is a point "
                         "estimate (EM or maximum likelihood); use the summed "
                         "log-likelihood instead")
    return values.reshape(values.shape[0] * values.shape[1], -1), var_name


def loo(idata: Any, *, var_name: str | None = None) -> ELPD:
    """PSIS-LOO (``az.loo``) with pointwise values and each observation's k-hat."""
    values, var_name = _log_likelihood(idata, var_name, "loo")
    with _quiet():
        try:
            raw = az.loo(idata, pointwise=True, var_name=var_name)
        except ValueError:
            if not ARVIZ_1:
                raise
            # arviz-stats refuses an observation whose largest log-likelihoods tie (a
            # saturated logistic likelihood, say); ArviZ 0.x gives it k-hat = inf and goes
            # on. So does ppl_gen, with PSIS per observation (r_eff = 1).
            return _loo_by_observation(values)
    if ARVIZ_1:
        return ELPD("loo", float(raw.elpd), float(raw.se), float(raw.p),
                    np.asarray(raw.elpd_i, dtype=float).reshape(-1),
                    np.asarray(raw.pareto_k, dtype=float).reshape(-1), bool(raw.warning), raw)
    return ELPD("loo", float(raw.elpd_loo), float(raw.se), float(raw.p_loo),
                np.asarray(raw.loo_i, dtype=float).reshape(-1),
                np.asarray(raw.pareto_k, dtype=float).reshape(-1), bool(raw.warning), raw)


def _loo_by_observation(values: np.ndarray) -> ELPD:
    """PSIS-LOO from (draws, observations) log-likelihoods: elpd_i = log sum_s w_is
    p(y_i | theta_s) with w_i the smoothed, normalised weights 1 / p(y_i | theta_s)."""
    elpd, khat = np.empty(values.shape[1]), np.empty(values.shape[1])
    for i in range(values.shape[1]):
        smoothed, khat[i] = psis_smooth(-values[:, i])
        total = smoothed + values[:, i]
        peak = total.max()
        elpd[i] = peak + np.log(np.exp(total - peak).sum())
    peak = values.max(axis=0)
    lppd = peak + np.log(np.exp(values - peak).sum(axis=0)) - math.log(values.shape[0])
    return ELPD("loo", float(elpd.sum()), float(math.sqrt(len(elpd) * elpd.var())),
                float((lppd - elpd).sum()), elpd, khat, bool(np.any(khat > 0.7)))


def waic(idata: Any, *, var_name: str | None = None) -> ELPD:
    """WAIC (Watanabe 2010), computed here on both ArviZ lines (1.x dropped it in favour of
    PSIS-LOO): elpd_i = log mean_s p(y_i | theta_s) - var_s log p(y_i | theta_s), the
    variance with ddof 0 and se = sqrt(n var(elpd_i)), as ArviZ 0.x's ``az.waic``.
    ``warning`` is set when a pointwise variance exceeds 0.4 (WAIC may fail; prefer LOO)."""
    values, _ = _log_likelihood(idata, var_name, "waic")
    n_draws = values.shape[0]
    peak = values.max(axis=0)
    lppd = peak + np.log(np.exp(values - peak).sum(axis=0)) - math.log(n_draws)
    variance = values.var(axis=0)
    pointwise = lppd - variance
    return ELPD("waic", float(pointwise.sum()),
                float(math.sqrt(len(pointwise) * pointwise.var())), float(variance.sum()),
                pointwise, None, bool(np.any(variance > 0.4)))


#: ESS of the tails: the 5 % and 95 % quantiles (ArviZ 0.x's default; 1.x asks for them).
_TAIL_PROB = (0.05, 0.95)


def ess(draws: np.ndarray, *, method: str = "bulk") -> float:
    """Effective sample size of one scalar's draws shaped (chain, draw)."""
    extra = {"prob": _TAIL_PROB} if method == "tail" and ARVIZ_1 else {}
    with _quiet():
        return float(az.ess(np.asarray(draws), method=method, **extra))


def rhat(draws: np.ndarray) -> float:
    """Rank-normalised split R-hat of draws shaped (chain, draw)."""
    with _quiet():
        return float(az.rhat(np.asarray(draws)))


def mcse(draws: np.ndarray) -> float:
    """Monte Carlo standard error of the mean of draws shaped (chain, draw)."""
    with _quiet():
        return float(az.mcse(np.asarray(draws)))


def read_netcdf(path: Any) -> Any:
    """Load the InferenceData (a DataTree on ArviZ 1.x) written by ``save_run``."""
    with _quiet():
        return az.from_netcdf(str(path), engine="h5netcdf")
