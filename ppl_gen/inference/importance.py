"""Moved to :mod:`ppl_gen.traces.importance` (the ground floor models import); kept so
that ``ppl_gen.inference.importance`` still works."""

from ..traces.importance import *  # noqa: F403
from ..traces.importance import MarginalEstimate, estimate_log_marginal

__all__ = ["MarginalEstimate", "estimate_log_marginal"]
