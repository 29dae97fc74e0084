"""Named training objectives: what ``SVIConfig.loss`` names, in one registry.

Each entry builds a Pyro ELBO from the config and the model's plate nesting. The GAN and
diffusion objectives (issues 12 and 13) register here too, so a new objective is one
decorated function, not another branch in the engine.
"""

from __future__ import annotations

from typing import Any

from pyro.infer import ELBO, RenyiELBO, TraceEnum_ELBO

from ..config import SVIConfig
from ..registry import Registry
from .losses import LeanTrace_ELBO, LeanTraceMeanField_ELBO

__all__ = ["OBJECTIVES"]

OBJECTIVES: Registry[Any] = Registry("loss")


@OBJECTIVES.register("trace", "Trace_ELBO: Monte-Carlo KL (lean single-particle path)")
def _trace(config: SVIConfig, **common: Any) -> ELBO:
    return LeanTrace_ELBO(**common)


@OBJECTIVES.register("meanfield", "TraceMeanField_ELBO: closed-form KL where available")
def _meanfield(config: SVIConfig, **common: Any) -> ELBO:
    return LeanTraceMeanField_ELBO(**common)


@OBJECTIVES.register("enum", "TraceEnum_ELBO: discrete latents summed out")
def _enum(config: SVIConfig, **common: Any) -> ELBO:
    return TraceEnum_ELBO(**common)


@OBJECTIVES.register("renyi", "RenyiELBO with renyi_alpha (Li & Turner 2016)")
def _renyi(config: SVIConfig, **common: Any) -> ELBO:
    return RenyiELBO(alpha=config.renyi_alpha, **common)


@OBJECTIVES.register("iwae", "importance-weighted bound, RenyiELBO at alpha = 0 "
                             "(Burda et al. 2016)")
def _iwae(config: SVIConfig, **common: Any) -> ELBO:
    return RenyiELBO(alpha=0.0, **common)
