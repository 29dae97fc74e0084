"""ppl_gen: deep generative models as Pyro probabilistic programs.

The public surface: ``load_dataset`` and ``DATASETS``; ``MODELS``; ``fit`` and ``ENGINES``;
``ppl_gen.diagnostics`` for ArviZ conversion, summaries and VI-vs-MCMC comparison.

Importing ppl_gen turns on Pyro's ``module_local_params`` setting (as Pyro recommends for
PyroModules): zoo models and autoguides keep their parameters in their modules rather than
in the global param store, so two fits never overwrite each other's parameters.
"""

from __future__ import annotations

import pyro

pyro.settings.set(module_local_params=True)

from . import config, data, diagnostics, inference, models  # noqa: E402
from .config import EMConfig, MCMCConfig, SVIConfig  # noqa: E402
from .data import DATASETS, Dataset, load_dataset  # noqa: E402
from .inference import ENGINES, FitResult, fit  # noqa: E402
from .models import MODELS  # noqa: E402

__version__ = "0.1.0"

__all__ = ["__version__", "load_dataset", "DATASETS", "Dataset", "MODELS", "ENGINES", "fit",
           "FitResult", "SVIConfig", "EMConfig", "MCMCConfig", "config", "data", "models",
           "inference", "diagnostics"]
