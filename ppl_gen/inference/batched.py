"""A Pyro model's potential energy for C chains at once.

The model runs once per evaluation inside an outer ``pyro.plate`` over chains (dimension
``-(max_plate_nesting + 1)``), conditioned on every chain's values, so one autograd pass
gives all C gradients — instead of C separate calls through Pyro's handlers, each of which
costs ~1 ms on eight schools whatever the model's size. Latent sites are mapped to
unconstrained space with ``torch.distributions.biject_to`` and the log-Jacobians added, as
Pyro's own HMC does.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.ops.contract import contract_to_tensor
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import biject_to

from ..traces.outer import sum_to_outer, under_outer_plate
from .base import Problem, enumerated_sites, latent_sites, max_plate_nesting

__all__ = ["BatchedPotential", "VectorizationError"]

_CHAINS = "_chains"


class VectorizationError(ValueError):
    """The model does not broadcast over a leading chain dimension."""


class BatchedPotential:
    """U(q) = −log p(x, T(q)) − log|det J_T(q)| for q shaped (C, D).

    Arguments:
        problem: The model bound to its data.
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        trace = problem.trace()
        self.nesting = max_plate_nesting(trace)
        self.sites: list[tuple[str, Any, torch.Size, torch.Size, torch.Size]] = []
        # Discrete sites marked for enumeration are summed out exactly, per chain, as Pyro's
        # HMC does (TraceEinsumEvaluator), but contracted to the chain plate.
        self.enumerated = enumerated_sites(trace)
        names = latent_sites(trace)
        if not names:
            raise ValueError(f"model {problem.name!r} has no latent sample sites to sample: "
                             "MCMC needs priors on its parameters; fit point parameters with "
                             "'svi' or 'em'")
        discrete = [n for n in names if trace.nodes[n]["fn"].support.is_discrete]
        if discrete:
            kinds = ", ".join(f"{n!r} ({type(trace.nodes[n]['fn']).__name__})"
                              for n in discrete)
            raise ValueError(f"model {problem.name!r} has discrete latent site(s) {kinds}, "
                             "which Hamiltonian Monte Carlo cannot move; mark them "
                             "infer={'enumerate': 'parallel'} to sum them out exactly, "
                             "marginalise them in the model, or use engine 'nuts' (which "
                             "sums them out itself)")
        self.dim = 0
        for name in names:
            site = trace.nodes[name]
            transform = biject_to(site["fn"].support)
            value = site["value"].detach()
            unconstrained = transform.inv(value)
            batch = site["fn"].batch_shape
            self.sites.append((name, transform, unconstrained.shape, batch,
                               site["fn"].event_shape))
            self.dim += unconstrained.numel()
        self.reference = trace

    # --- packing -----------------------------------------------------------------------------
    def unpack(self, q: Tensor) -> dict[str, Tensor]:
        """Unconstrained (C, D) -> per-site unconstrained (C, *shape)."""
        out, offset = {}, 0
        for name, _, shape, _, _ in self.sites:
            size = shape.numel()
            out[name] = q[:, offset:offset + size].reshape(q.shape[0], *shape)
            offset += size
        return out

    def constrain(self, q: Tensor) -> dict[str, Tensor]:
        """Constrained values per site, each (C, *site_shape)."""
        parts = self.unpack(q)
        return {name: transform(parts[name]) for name, transform, *_ in self.sites}

    def initial(self, num_chains: int, generator: torch.Generator, *, radius: float = 2.0,
                dtype: torch.dtype | None = None) -> Tensor:
        """Stan's default start: uniform on (−radius, radius) in unconstrained space."""
        if dtype is None:  # the widest float among latent and observed values: a flat
            # prior's placeholder value is in the default dtype, its data may be float64
            dtype = self.reference.nodes[self.sites[0][0]]["value"].dtype
            for site in self.reference.nodes.values():
                value = site.get("value")
                if site["type"] == "sample" and torch.is_tensor(value) \
                        and value.is_floating_point():
                    dtype = torch.promote_types(dtype, value.dtype)
        device = self.problem.device
        u = torch.rand(num_chains, self.dim, generator=generator, dtype=dtype,
                       device=generator.device)
        return ((2 * u - 1) * radius).to(device)

    # --- evaluation ----------------------------------------------------------------------------
    def site_log_probs(self, q: Tensor) -> dict[str, Tensor]:
        """Per-site log-density (and ``"_jacobian"``) for every chain, each shaped (C,)."""
        num_chains = q.shape[0]
        parts = self.unpack(q)
        values: dict[str, Tensor] = {}
        terms: dict[str, Tensor] = {"_jacobian": q.new_zeros(num_chains)}
        for name, transform, _, batch, event in self.sites:
            u = parts[name]
            x = transform(u)
            log_det = transform.log_abs_det_jacobian(u, x)
            terms["_jacobian"] = terms["_jacobian"] + log_det.reshape(num_chains, -1).sum(-1)
            pad = (1,) * (self.nesting - len(batch))
            values[name] = x.reshape(num_chains, *pad, *batch, *event)
        model = poutine.condition(self.problem.model, data=values)
        if self.enumerated:
            model = poutine.enum(model, first_available_dim=-(self.nesting + 2))
        trace = poutine.trace(under_outer_plate(model, _CHAINS, num_chains, self.nesting)
                              ).get_trace(**self.problem.data)
        if self.enumerated:
            terms["_enumerated_joint"] = _contract_to_chains(trace, num_chains)
            return terms
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            log_prob = site["fn"].log_prob(site["value"])
            scale = site["scale"]
            if site["mask"] is not None:
                log_prob = log_prob.masked_fill(~site["mask"], 0.0)
            terms[name] = sum_to_outer(log_prob, self.nesting, num_chains) * scale
        return terms

    def __call__(self, q: Tensor) -> Tensor:
        """Potential energy per chain, (C,)."""
        return -sum(self.site_log_probs(q).values())

    def value_and_grad(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """U (C,) and ∂U/∂q (C, D) in one batched pass (chains are independent, so the
        gradient of ΣU is every chain's own gradient)."""
        with torch.enable_grad():
            q = q.detach().requires_grad_(True)
            potential = self(q)
            (grad,) = torch.autograd.grad(potential.sum(), q)
        return potential.detach(), grad.detach()

    def check_vectorized(self, q: Tensor) -> None:
        """Chains must not interact: the batched per-site terms must equal one-chain
        evaluations. Raises :class:`VectorizationError` naming the first site that differs."""
        try:
            batched = self.site_log_probs(q)
        except Exception as error:  # shape errors surface here
            raise VectorizationError(
                f"model {self.problem.name!r} fails when evaluated for {q.shape[0]} chains "
                f"at once ({type(error).__name__}: {error}); write it to broadcast over "
                "extra batch dimensions on the left (use pyro.plate for data dimensions, "
                "index with ..., avoid .item()/Python branches on sampled values), or use "
                "engine='nuts', which runs chains one at a time") from error
        singles = [self.site_log_probs(q[c:c + 1]) for c in range(q.shape[0])]
        for name, value in batched.items():
            single = torch.cat([s[name] for s in singles])
            if value.shape != single.shape or not torch.allclose(value, single, rtol=1e-4,
                                                                  atol=1e-4):
                raise VectorizationError(
                    f"model {self.problem.name!r} does not vectorise over chains at site "
                    f"{name!r}: evaluating chains together gives different log-densities "
                    "than one at a time (a reshape or sum that mixes the leading chain "
                    "dimension?); make the model broadcast over batch dimensions on the "
                    "left, or use engine='nuts', which runs chains one at a time")


def _contract_to_chains(trace: Any, num_chains: int) -> Tensor:
    """log p(x, continuous latents) per chain, the enumerated sites summed out: the packed
    log-factors grouped by plate (Pyro's TraceEinsumEvaluator), contracted down to the
    chain plate instead of to a scalar."""
    trace.compute_log_prob()
    trace.pack_tensors()
    factors: OrderedDict = OrderedDict()
    for site in trace.nodes.values():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        ordinal = frozenset(trace.plate_to_symbol[f.name] for f in site["cond_indep_stack"]
                            if f.vectorized)
        factors.setdefault(ordinal, []).append(site["packed"]["log_prob"])
    enum_dims = set(trace.symbol_to_dim) - set(trace.plate_to_symbol.values())
    chains = trace.plate_to_symbol[_CHAINS]
    # one chain: packing drops the size-1 chain dimension, so contract to a scalar
    present = any(chains in t._pyro_dims for terms in factors.values() for t in terms)
    joint = contract_to_tensor(factors, enum_dims,
                               target_ordinal=frozenset([chains] if present else []))
    return joint.reshape(-1).expand(num_chains)
