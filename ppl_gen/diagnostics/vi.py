"""How far a VI result can be trusted, from the fit alone: PSIS k-hat, PSIS-corrected
summaries and a convergence check, attached to every SVI result by ``fit``.

Importance sampling with the fitted guide as proposal: for draws z_s ~ q, the log-weights
log w_s = log p(x, z_s) - log q(z_s) are Pareto-smoothed (PSIS, Vehtari et al. 2024) and

* their tail index k-hat says how good q is (Yao, Vehtari, Simpson & Gelman 2018): below 0.5
  q is close enough for importance sampling to correct it, 0.5-0.7 usable, above 0.7 the
  guide is unreliable and so are the corrected numbers;
* the smoothed weights give *corrected* posterior means, sds and quantiles — with k-hat
  below 0.7 they are close to the exact posterior's even where the guide is mean-field on a
  correlated posterior, and their Monte-Carlo standard error is stated;
* the SVI engine's convergence check (``inference/svi.py``: the iterate averages of the
  last two quarters compared on paired draws, ``info["convergence"]``) is carried into the
  warnings: a guide whose means still moved by more than a tenth of a posterior sd had not
  converged, whatever its k-hat (on posteriordb's AR(5) a non-converged guide had k-hat
  0.40 with means 0.65 sd off).

References:
    Yao, Vehtari, Simpson & Gelman (2018), "Yes, but did it work?: Evaluating variational
    inference", ICML.
    Vehtari, Simpson, Gelman, Yao & Gabry (2024), "Pareto smoothed importance sampling",
    JMLR.
    Dhaka, Catalina, Andersen, Magnusson, Huggins & Vehtari (2020), "Robust, accurate
    stochastic optimization for variational inference", NeurIPS.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro.poutine as poutine
import torch
from pyro.infer import TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta
from pyro.poutine.util import site_is_subsample
from pyro.util import check_site_shape

from .._rng import seeded_call
from ..inference.base import (
    FitResult,
    enumerated_sites,
    latent_sites,
    max_plate_nesting,
    param_scope,
)
from ..traces.outer import outer_dim, sum_to_outer, under_outer_plate
from ..traces.sites import element_label as _label
from .convert import psis_smooth

__all__ = ["ImportanceDraws", "importance_draws", "psis_summary", "khat_verdict",
           "vi_report", "pathfinder_report", "KHAT_GOOD", "KHAT_LIMIT"]

#: Yao et al.'s thresholds.
KHAT_GOOD = 0.5
KHAT_LIMIT = 0.7
#: Fewer effective importance draws than this behind resampled draws warns (MC error of a
#: mean above ~0.1 posterior sd).
MIN_PSIS_ESS = 100
#: With k-hat <= 0.7 but fewer than TARGET_PSIS_ESS effective draws, or fewer draws than
#: RELIABLE_KHAT_DRAWS, the report draws again, aiming at AIM_PSIS_ESS (Monte Carlo errors
#: of ~0.02 posterior sds; at least RELIABLE_KHAT_DRAWS, up to MAX_PSIS_DRAWS, within
#: EXTEND_SECONDS). Where the guide's own numbers are off, 1,000 draws left the corrected
#: means ~0.2 sd from the truth on posteriordb's kidiq; and at 1,000 draws with 735-763
#: effective ones, two of 24 posteriordb fits missed by 0.11-0.15 sd (both met at 16,000,
#: one of them with k-hat 0.38 at 1,000 draws and 0.66-0.85 at 4,000-16,000).
TARGET_PSIS_ESS = 1000
AIM_PSIS_ESS = 2000
#: Vehtari et al. (2024), section 3.2.4: a k-hat below k is reliable only from
#: S > 10^(1 / (1 - k)) draws (below k = 1 - 1 / log10(S)): 2,154 for Yao et al.'s 0.7,
#: while 1,000 draws trust k-hat only below 0.67.
RELIABLE_KHAT_DRAWS = 2200
MAX_PSIS_DRAWS = 16000
EXTEND_SECONDS = 3.0
#: Draws evaluated in one vectorised pass.
CHUNK = 500

_PARTICLES = "_ppl_gen_psis"


def khat_verdict(khat: float) -> str:
    """Yao et al.'s reading of a k-hat value."""
    if not np.isfinite(khat):
        return "undefined"
    if khat < KHAT_GOOD:
        return "good"
    if khat <= KHAT_LIMIT:
        return "ok"
    return "unreliable"


@dataclass(frozen=True)
class ImportanceDraws:
    """Draws from a fitted guide with their importance weights.

    Attributes:
        draws: Per latent site, constrained values shaped (S, *site_shape); empty when the
            weights came from a path that does not keep draws (enumerated models).
        log_weights: log p(x, z_s) - log q(z_s), shaped (S,).
        smoothed: PSIS-smoothed, normalised log-weights (S,).
        khat: Pareto k-hat of the weights.
        seconds: Wall time of the draws and the smoothing.
        vectorised: Whether one batched pass per chunk served (False: a loop).
    """

    draws: dict[str, np.ndarray]
    log_weights: np.ndarray
    smoothed: np.ndarray
    khat: float
    seconds: float
    vectorised: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def ess(self) -> float:
        """Kish's effective sample size of the smoothed weights, 1 / sum(w^2)."""
        w = np.exp(self.smoothed)
        return float(1.0 / np.sum(w * w))

    @property
    def verdict(self) -> str:
        return khat_verdict(self.khat)


def _site_shapes(result: FitResult) -> dict[str, tuple[int, ...]]:
    trace = result.problem.structure
    return {name: tuple(trace.nodes[name]["value"].shape) for name in latent_sites(trace)}


def _vectorised_chunk(result: FitResult, num: int, nesting: int
                      ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``num`` guide draws and their log-weights in one pass, the draws under an outer
    plate left of every model plate (Pyro's ``vectorized_importance_weights``)."""
    problem = result.problem
    dim = outer_dim(nesting)

    def vectorise(fn: Callable[..., Any]) -> Callable[..., Any]:
        return under_outer_plate(fn, _PARTICLES, num, nesting)

    with poutine.block():
        guide_trace = poutine.trace(vectorise(result.guide)).get_trace(**problem.data)
        model_trace = poutine.trace(poutine.replay(vectorise(problem.model),
                                                   trace=guide_trace)).get_trace(**problem.data)

    def per_draw(trace: poutine.Trace, observed_ok: bool) -> torch.Tensor:
        total = torch.zeros(num, dtype=torch.float64)
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if site["is_observed"] and not observed_ok:
                continue
            # Every batch dim must be a plate's (Pyro's own check): a model that puts the
            # draws anywhere but the outer plate's dim did not broadcast over them.
            log_prob = site["fn"].log_prob(site["value"])
            check_site_shape({**site, "log_prob": log_prob}, -dim)
            # dims left of the draws' plate: it did not broadcast (strict)
            log_prob = sum_to_outer(log_prob * site.get("scale", 1.0), nesting, num,
                                    name=site["name"], strict=True)
            total = total + log_prob.double()
        return total

    log_q = per_draw(guide_trace, observed_ok=False)
    log_p = per_draw(model_trace, observed_ok=True)
    shapes = _site_shapes(result)
    draws = {}
    for name, shape in shapes.items():
        if name not in guide_trace.nodes:
            continue
        value = guide_trace.nodes[name]["value"].detach()
        if value.numel() == num * math.prod(shape):
            draws[name] = value.reshape((num, *shape))
        else:  # a site the plate did not batch: the guide did not broadcast
            raise ValueError(f"guide site {name!r} did not broadcast over the draws")
    # A model can run under the plate and still ignore the draws (x @ w[0]): check the
    # first and last draw against the model run on that draw alone.
    for i in sorted({0, num - 1}):
        single = {k: v[i] for k, v in draws.items()}
        with poutine.block():
            alone = poutine.trace(poutine.condition(problem.model, data=single)
                                  ).get_trace(**problem.data)
        expected = float(alone.log_prob_sum())
        if not math.isclose(float(log_p[i]), expected, rel_tol=1e-5, abs_tol=1e-5):
            raise ValueError(f"the model's log-density of draw {i} differs between the "
                             f"batched pass ({float(log_p[i]):.6g}) and a single run "
                             f"({expected:.6g}): it does not broadcast over draws")
    return draws, (log_p - log_q).detach()


#: Seconds the one-at-a-time fallback may spend (it stops early, with at least
#: ``MIN_LOOP_DRAWS`` draws, and says so in ``notes``).
LOOP_BUDGET = 3.0
MIN_LOOP_DRAWS = 200


def _loop(result: FitResult, num: int, keep: bool
          ) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """Draws and weights one at a time: the guide traced, the model replayed on it (with
    enumerated discrete sites summed out by TraceEnum_ELBO, one particle being exactly
    log p(x, z) - log q(z); no draws kept then). Stops after ``LOOP_BUDGET`` seconds once
    ``MIN_LOOP_DRAWS`` are done."""
    problem = result.problem
    trace = problem.structure
    enumerated = bool(enumerated_sites(trace))
    elbo = TraceEnum_ELBO(max_plate_nesting=max_plate_nesting(trace)) if enumerated \
        else None
    shapes = _site_shapes(result)
    out: dict[str, list[torch.Tensor]] = {n: [] for n in shapes}
    weights = []
    start = time.perf_counter()
    for s in range(num):
        if s >= MIN_LOOP_DRAWS and time.perf_counter() - start > LOOP_BUDGET:
            break
        if elbo is not None:
            weights.append(-elbo.loss(problem.model, result.guide, **problem.data))
            continue
        with poutine.block():
            guide_trace = poutine.trace(result.guide).get_trace(**problem.data)
            model_trace = poutine.trace(poutine.replay(problem.model, trace=guide_trace)
                                        ).get_trace(**problem.data)
        weights.append(float(model_trace.log_prob_sum() - guide_trace.log_prob_sum(
            lambda name, site: not site["is_observed"])))
        if keep:
            for name in shapes:
                if name in guide_trace.nodes:
                    out[name].append(guide_trace.nodes[name]["value"].detach())
    draws = {k: torch.stack(v) for k, v in out.items() if v}
    return draws, np.asarray(weights, dtype=float)


def applicable(result: FitResult) -> str | None:
    """Why importance weights of this SVI result say nothing (``None``: they do)."""
    problem = result.problem
    guide = result.guide
    if result.engine != "svi" or guide is None:
        return "not an SVI result with a guide"
    if isinstance(guide, AutoDelta):
        return ("the guide is a point (AutoDelta, MAP): it has no density, so importance "
                "weights are undefined; use guide='mvn' or 'normal' for a distribution")
    module = problem.module
    if module is not None and module.has_local_guide:
        return ("the guide is amortised over the data (one latent per datum): the joint "
                "weight over all data is meaningless; per-datum weights are in "
                "ppl_gen.inference.estimate_log_marginal (their ESS)")
    if not latent_sites(problem.structure):
        return "the model has no latent sites (maximum likelihood): nothing to weigh"
    return None


@seeded_call
def importance_draws(result: FitResult, num_samples: int = 1000, *, seed: int = 0,
                     keep_draws: bool = True) -> ImportanceDraws:
    """S draws from the fitted guide with their importance weights, PSIS-smoothed.

    Vectorised over draws in chunks of ``CHUNK`` (the guide and model run under an outer
    plate); a model or guide that does not broadcast falls back to a loop (correct, slower).
    Enumerated discrete sites are summed out (weights only, no draws kept).

    Arguments:
        result: An SVI FitResult with a guide of a continuous latent space.
        num_samples: S (1,000 gives k-hat to about +-0.05 in the range that matters).
        seed: Seed for the draws.
        keep_draws: Keep the draws (needed for corrected summaries).
    """
    reason = applicable(result)
    if reason is not None:
        raise ValueError(f"importance weights of this result are undefined: {reason}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 20:
        raise ValueError(f"num_samples must be an integer >= 20 (PSIS needs a tail to fit), "
                         f"got {num_samples!r}")
    start = time.perf_counter()
    problem = result.problem
    trace = problem.structure
    nesting = max_plate_nesting(trace)
    notes: list[str] = []
    draws: dict[str, torch.Tensor] = {}
    vectorised = True
    with param_scope(result.param_state), torch.no_grad():
        if enumerated_sites(trace):
            draws, log_w = _loop(result, num_samples, keep=False)
            vectorised = False
            notes.append("discrete sites summed out per draw; draws not kept")
        else:
            chunks_draws, chunks_w = [], []
            try:
                remaining = num_samples
                while remaining:
                    num = min(CHUNK, remaining)
                    d, w = _vectorised_chunk(result, num, nesting)
                    chunks_draws.append(d)
                    chunks_w.append(w)
                    remaining -= num
                draws = {k: torch.cat([c[k] for c in chunks_draws]) for k in chunks_draws[0]}
                log_w = torch.cat(chunks_w).cpu().numpy()
            except (RuntimeError, ValueError, IndexError) as error:
                vectorised = False
                notes.append(f"the model or guide does not broadcast over draws "
                             f"({type(error).__name__}); evaluated one at a time")
                draws, log_w = _loop(result, num_samples, keep=keep_draws)
    log_w = np.asarray(log_w, dtype=float)
    if len(log_w) < num_samples:
        notes.append(f"{len(log_w)} of {num_samples} draws within the "
                     f"{LOOP_BUDGET:.0f} s budget of the one-at-a-time path")
    if not np.isfinite(log_w).any():
        raise FloatingPointError("every importance weight is non-finite: the guide puts its "
                                 "mass where the model has none")
    smoothed, khat = psis_smooth(log_w)
    arrays = {k: v.cpu().numpy() for k, v in draws.items()} if keep_draws else {}
    return ImportanceDraws(arrays, log_w, smoothed, khat, time.perf_counter() - start,
                           vectorised, notes)


def _weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(x)
    cdf = np.cumsum(w[order])
    cdf /= cdf[-1]
    return float(np.interp(q, cdf - w[order] / 2, x[order]))


def psis_summary(imp: ImportanceDraws, *, max_size: int = 200,
                 quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> dict[str, dict]:
    """Per parameter element: the guide's raw mean and sd, and the PSIS-corrected mean, sd,
    quantiles and the corrected mean's Monte-Carlo standard error,
    sqrt(sum_s w_s^2 (theta_s - mean)^2) with normalised smoothed weights w (Vehtari et al.
    2024, eq. 6), and the corrected sd's (the same for the centred squares, by the delta
    method). Sites with more than ``max_size`` elements are left out."""
    w = np.exp(imp.smoothed - np.max(imp.smoothed))
    w /= w.sum()
    out: dict[str, dict] = {}
    for name, values in imp.draws.items():
        shape = values.shape[1:]
        if math.prod(shape) > max_size:
            continue
        flat = values.reshape(values.shape[0], -1).astype(float)
        for j in range(flat.shape[1]):
            x = flat[:, j]
            mean = float(np.sum(w * x))
            var = float(np.sum(w * (x - mean) ** 2))
            sd = math.sqrt(max(var, 0.0))
            var_mcse = math.sqrt(float(np.sum(w * w * ((x - mean) ** 2 - var) ** 2)))
            row = {"mean": float(x.mean()), "sd": float(x.std()),
                   "psis_mean": mean, "psis_sd": sd,
                   "psis_mcse_mean": math.sqrt(float(np.sum(w * w * (x - mean) ** 2))),
                   # delta method: se(sd) = se(var) / (2 sd)
                   "psis_mcse_sd": var_mcse / (2 * sd) if sd > 0 else float("nan")}
            for q in quantiles:
                row[f"psis_q{round(q * 100):02d}"] = _weighted_quantile(x, w, q)
            out[_label(name, shape, j)] = row
    return out


#: Raw and corrected numbers differ when apart by more than this share of the corrected
#: sd (and by more than 3 Monte-Carlo standard errors).
GAP_LIMIT = 0.1


def raw_versus_corrected(summary: dict[str, dict]) -> dict[str, Any]:
    """Where the guide's raw mean or sd is off from the PSIS-corrected one by more than
    ``GAP_LIMIT`` corrected sds (means) or ``GAP_LIMIT`` relative (sds), and by more than 3
    Monte-Carlo standard errors — meaningful when k-hat <= 0.7."""
    differ: list[str] = []
    worst_mean = worst_sd = 0.0
    for label, row in summary.items():
        sd = row["psis_sd"]
        if not sd > 0:
            continue
        mean_gap = abs(row["mean"] - row["psis_mean"])
        if mean_gap > max(GAP_LIMIT * sd, 3 * row["psis_mcse_mean"]):
            differ.append(f"mean of {label} {row['mean']:.4g} vs {row['psis_mean']:.4g} "
                          f"({mean_gap / sd:.2f} sd)")
        sd_gap = abs(row["sd"] - sd)
        mcse_sd = row["psis_mcse_sd"] if math.isfinite(row["psis_mcse_sd"]) else 0.0
        if sd_gap > max(GAP_LIMIT * sd, 3 * mcse_sd):
            differ.append(f"sd of {label} {row['sd']:.4g} vs {sd:.4g} "
                          f"({row['sd'] / sd:.2f}x)")
        worst_mean = max(worst_mean, mean_gap / sd)
        worst_sd = max(worst_sd, sd_gap / sd)
    return {"max_mean_gap_sd": worst_mean, "max_sd_gap": worst_sd, "differ": differ,
            "limit": GAP_LIMIT}


def vi_report(result: FitResult, *, num_samples: int = 1000, seed: int = 0
              ) -> tuple[dict[str, Any], list[str]]:
    """The reliability report of an SVI result and its warnings: k-hat with its verdict,
    the cost, PSIS-corrected summaries and the convergence check. ``fit`` attaches it as
    ``result.info["psis"]`` / ``["convergence"]`` and ``result.warnings``."""
    messages: list[str] = []
    report: dict[str, Any] = {}
    convergence = result.info.get("convergence")
    if convergence and convergence.get("message"):
        messages.append(convergence["message"])
    reason = applicable(result)
    if reason is None and num_samples == 0:
        reason = "switched off (psis_draws=0)"
    if reason is not None:
        report["skipped"] = reason
        return report, messages
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = importance_draws(result, num_samples, seed=seed)
    except (ValueError, RuntimeError, FloatingPointError) as error:
        report["skipped"] = f"importance weights failed: {error}"
        messages.append(f"PSIS k-hat could not be computed ({error}); the guide's numbers "
                        "are unchecked.")
        return report, messages
    more = _more_draws(imp, num_samples)
    if more:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bigger = importance_draws(result, more, seed=seed + 1)
            why = (f"PSIS ESS {imp.ess:.0f} < {TARGET_PSIS_ESS}"
                   if imp.ess < TARGET_PSIS_ESS else
                   f"{len(imp.log_weights)} draws < {RELIABLE_KHAT_DRAWS} (a k-hat up to "
                   f"{KHAT_LIMIT} is reliable from ~{RELIABLE_KHAT_DRAWS} draws)")
            report["extended"] = {"from_draws": len(imp.log_weights), "from_ess": imp.ess,
                                  "from_khat": imp.khat, "seconds": imp.seconds,
                                  "reason": why}
            imp = bigger
        except (ValueError, RuntimeError, FloatingPointError):
            pass  # keep the first draws
    report.update(khat=imp.khat, verdict=imp.verdict, num_draws=len(imp.log_weights),
                  ess=imp.ess, seconds=imp.seconds, vectorised=imp.vectorised,
                  reference="Yao et al. (2018); Vehtari et al. (2024)")
    if imp.notes:
        report["notes"] = imp.notes
    if imp.draws:
        report["summary"] = psis_summary(imp)
    if imp.draws and np.isfinite(imp.khat) and imp.khat <= KHAT_LIMIT:
        gaps = raw_versus_corrected(report["summary"])
        report["raw_versus_corrected"] = gaps
        if gaps["differ"]:
            messages.append(
                f"the guide's own numbers are off: {'; '.join(gaps['differ'][:3])}"
                f"{' and more' if len(gaps['differ']) > 3 else ''} (PSIS-corrected, which "
                f"k-hat {imp.khat:.2f} says can be trusted); use the psis_* numbers of the "
                "summary, or fit longer or with a richer guide (guide='mvn').")
    if not np.isfinite(imp.khat) or imp.khat > KHAT_LIMIT:
        messages.append(
            f"PSIS k-hat is {imp.khat:.2f} (> {KHAT_LIMIT}): the guide is a poor fit to the "
            "posterior, so its means, sds and intervals may be wrong, and the "
            "PSIS-corrected ones too; use a richer guide (guide='mvn' or a flow), "
            "reparameterise the model, or use MCMC (engine='chees' or 'nuts').")
    return report, messages


def _more_draws(imp: ImportanceDraws, num_samples: int) -> int:
    """How many draws to redo the report with (0: keep these): enough for about
    ``AIM_PSIS_ESS`` effective draws, and at least ``RELIABLE_KHAT_DRAWS``, when there are
    fewer than ``TARGET_PSIS_ESS`` effective draws or fewer draws than
    ``RELIABLE_KHAT_DRAWS``, k-hat says the weights can be trusted, the draws were
    vectorised and the larger pass fits in ``EXTEND_SECONDS``."""
    if not (imp.vectorised and np.isfinite(imp.khat) and imp.khat <= KHAT_LIMIT
            and np.isfinite(imp.ess) and imp.ess > 0
            and (imp.ess < TARGET_PSIS_ESS or num_samples < RELIABLE_KHAT_DRAWS)):
        return 0
    want = max(RELIABLE_KHAT_DRAWS, int(math.ceil(num_samples * AIM_PSIS_ESS / imp.ess)))
    want = min(MAX_PSIS_DRAWS, want)
    affordable = int(num_samples * EXTEND_SECONDS / max(imp.seconds, 1e-3))
    want = min(want, affordable)
    return want if want >= min(2 * num_samples, RELIABLE_KHAT_DRAWS) else 0


def pathfinder_report(result: FitResult) -> tuple[dict[str, Any], list[str]]:
    """k-hat of a Pathfinder result's pooled importance weights, with Yao et al.'s verdict,
    and warnings for a poor approximation and for failed or unfinished paths."""
    report = dict(result.info.get("psis", {}))
    khat = float(report.get("khat", math.nan))
    report["verdict"] = khat_verdict(khat)
    messages = []
    if not np.isfinite(khat) or khat > KHAT_LIMIT:
        messages.append(
            f"Pathfinder's PSIS k-hat is {khat:.2f} (> {KHAT_LIMIT}): its Gaussian "
            "approximations are far from the posterior, so the resampled draws may be "
            "wrong (too narrow, or missing a mode); use engine='chees' or 'nuts'.")
    ess = float(report.get("ess", math.nan))
    if np.isfinite(khat) and khat <= KHAT_LIMIT and ess < MIN_PSIS_ESS:
        messages.append(
            f"only {ess:.0f} effective draws behind Pathfinder's resampled draws (PSIS "
            f"ESS < {MIN_PSIS_ESS}): their means carry Monte Carlo errors of about "
            f"{1 / math.sqrt(max(ess, 1)):.2f} posterior sds; raise draws_per_path or use "
            "engine='chees'.")
    paths = result.info.get("paths", [])
    failed = result.info.get("failed_paths", 0)
    if failed:
        messages.append(f"{failed} of {len(paths)} Pathfinder paths failed (non-finite "
                        "log density along the way); the draws come from the others.")
    unfinished = [p for p in paths if p["stopped"].startswith("max_iterations")]
    if unfinished and len(unfinished) == len(paths):
        messages.append(f"every Pathfinder path ({len(paths)}) stopped at max_iterations "
                        "before L-BFGS converged: the Gaussians sit where the paths stopped, "
                        "not at a mode, so the draws may be wrong (a density without a mode, "
                        "such as a funnel's neck, never converges); raise max_iterations or "
                        "use engine='chees' or 'nuts'.")
    elif unfinished:
        messages.append(f"{len(unfinished)} of {len(paths)} Pathfinder paths stopped at "
                        "max_iterations before L-BFGS converged; raise max_iterations.")
    elbos = [p["elbo"] for p in paths if math.isfinite(p["elbo"])]
    if len(elbos) > 1:
        report["elbo_spread"] = float(max(elbos) - min(elbos))
    return report, messages
