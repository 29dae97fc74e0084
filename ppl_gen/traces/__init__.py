"""The ground floor: trace utilities that models, engines and diagnostics all import.

Nothing here imports :mod:`ppl_gen.models`, :mod:`ppl_gen.inference` or
:mod:`ppl_gen.diagnostics`, so the layers read one way: ``traces`` <- ``models`` <-
``inference`` <- ``diagnostics``.
"""

from .importance import MarginalEstimate, estimate_log_marginal
from .outer import outer_dim, sum_to_outer, under_outer_plate
from .sites import enumerated_sites, latent_sites, max_plate_nesting
from .tracing import tracing

__all__ = ["MarginalEstimate", "estimate_log_marginal", "latent_sites", "enumerated_sites",
           "max_plate_nesting", "tracing", "outer_dim", "under_outer_plate", "sum_to_outer"]
