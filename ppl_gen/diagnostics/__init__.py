"""Diagnostics: ArviZ conversion (the one ArviZ adapter), summaries, VI-vs-MCMC comparison.
"""

from __future__ import annotations

from .amortization import AmortizationGap, amortization_gap
from .checks import ReliabilityWarning, check_draws, e_bfmi, nested_rhat
from .compare import PosteriorComparison, compare_posteriors, importance_log_weights, khat_verdict
from .convert import (
    ARVIZ_1,
    ELPD,
    arviz_summary,
    ess,
    group_names,
    loo,
    mcse,
    psis_khat,
    rhat,
    to_inference_data,
    waic,
)
from .features import class_coverage, digit_classifier, frechet_distance
from .generative import ModeCoverage, PrecisionRecall, mode_coverage, precision_recall
from .sbc import SBCResult, VSBCResult, sbc, vsbc
from .summary import summarize

__all__ = ["amortization_gap", "AmortizationGap", "to_inference_data", "summarize",
           "compare_posteriors", "PosteriorComparison",
           "importance_log_weights", "khat_verdict", "arviz_summary", "psis_khat", "loo",
           "waic", "ELPD", "group_names", "ARVIZ_1", "ess", "rhat", "mcse",
           "ReliabilityWarning", "check_draws", "e_bfmi",
           "nested_rhat", "sbc", "SBCResult", "vsbc", "VSBCResult", "mode_coverage",
           "ModeCoverage",
           "precision_recall", "PrecisionRecall", "digit_classifier", "class_coverage",
           "frechet_distance"]
