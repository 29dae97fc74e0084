"""One extra plate outside every plate a model nests, and site log-densities reduced to it.

Evaluating a model at many points at once — chains (the batched potential), posterior
draws (predictive checks), guide draws (PSIS) or importance particles — is the same move
each time, as in ``pyro.infer.Predictive`` and Pyro's vectorised importance weights: run
the model inside ``pyro.plate(name, size, dim=-(nesting + 1))`` so every site gains a
leading batch dimension, then sum each site's log-density over everything but that
dimension. This module is the one implementation of both halves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pyro
from torch import Tensor

__all__ = ["outer_dim", "under_outer_plate", "sum_to_outer"]


def outer_dim(nesting: int) -> int:
    """The dimension of the plate just outside ``nesting`` model plates."""
    return -(nesting + 1)


def under_outer_plate(fn: Callable[..., Any], name: str, size: int, nesting: int
                      ) -> Callable[..., Any]:
    """``fn`` run inside ``pyro.plate(name, size)`` at :func:`outer_dim` (``nesting``)."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with pyro.plate(name, size, dim=outer_dim(nesting)):
            return fn(*args, **kwargs)

    return wrapped


def sum_to_outer(log_prob: Tensor, nesting: int, size: int, *, name: str = "",
                 strict: bool = False) -> Tensor:
    """A site's log-density summed over every dimension but the outer plate's, shaped
    (size,). A site that does not reach that dimension (it does not depend on the outer
    plate) is the same for every member: its total is broadcast. With ``strict``, a site
    with dimensions left of the outer plate's (the model put its own batch there: it did
    not broadcast) is an error."""
    depth = nesting + 1
    if strict and log_prob.dim() > depth:
        raise ValueError(f"site {name!r} has log-density shape {tuple(log_prob.shape)}, "
                         "more dims than its plates")
    if log_prob.dim() < depth:
        return log_prob.sum().expand(size)
    moved = log_prob.movedim(-depth, 0)
    total = moved.reshape(moved.shape[0], -1).sum(-1)
    return total.expand(size) if total.shape[0] == 1 else total
