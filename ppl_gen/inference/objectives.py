"""Named training objectives: what ``SVIConfig.loss`` names, in one registry.

Each entry builds a Pyro ELBO from the config and the model's plate nesting. The GAN and
diffusion objectives (issues 12 and 13) register here too, so a new objective is one
decorated function, not another branch in the engine.
"""

from __future__ import annotations

from typing import Any

from pyro.infer import ELBO, RenyiELBO, Trace_ELBO, TraceEnum_ELBO

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


class ModelObjective(Trace_ELBO):
    """Trace_ELBO of a model/guide pair that writes a named objective itself (as a
    ``pyro.factor``): the name reaches both as the keyword ``ddpm_objective``. The
    diffusion model's per-timestep objectives are such pairs, so they train through the
    SVI engine like any ELBO."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.objective = name

    def loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        return super().loss(model, guide, *args, ddpm_objective=self.objective, **kwargs)

    def loss_and_grads(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        return super().loss_and_grads(model, guide, *args, ddpm_objective=self.objective,
                                      **kwargs)

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> Any:
        return super().differentiable_loss(model, guide, *args,
                                           ddpm_objective=self.objective, **kwargs)


@OBJECTIVES.register("ddpm_simple", "DDPM's L_simple: ||eps - eps_theta(x_t, t)||^2 at one "
                                    "random t per datum (Ho et al. 2020, Algorithm 1)")
def _ddpm_simple(config: SVIConfig, **common: Any) -> ELBO:
    return ModelObjective("ddpm_simple", **common)


@OBJECTIVES.register("ddpm_rb", "the DDPM bound, Rao-Blackwellised: one random timestep's "
                                "closed-form KL x T, plus L_T")
def _ddpm_rb(config: SVIConfig, **common: Any) -> ELBO:
    return ModelObjective("ddpm_rb", **common)
