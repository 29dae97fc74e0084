"""Local use of the global random number generators (ground floor: imports only torch and
Pyro, so models, engines and diagnostics can all use it).

A library call that takes a ``seed`` must not reseed the caller's generators as a side
effect: ``seeded(seed)`` seeds Python's, NumPy's and torch's (CPU and CUDA) generators for
the duration of a block and then puts back exactly the states they had.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pyro
import torch

__all__ = ["seeded", "preserved", "seeded_call"]

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def preserved() -> Iterator[None]:
    """Restore every global generator's state on leaving the block."""
    state = pyro.util.get_rng_state()
    cuda = (torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() and torch.cuda.is_initialized() else None)
    try:
        yield
    finally:
        pyro.util.set_rng_state(state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Seed every global generator with ``seed`` inside the block and restore them after;
    ``None`` draws from (and advances) the caller's generators as they are."""
    if seed is None:
        yield
        return
    with preserved():
        pyro.set_rng_seed(seed)
        yield


def seeded_call(fn: F) -> F:
    """Decorate a function with a ``seed`` argument: it runs under :func:`seeded`."""
    signature = inspect.signature(fn)
    default = signature.parameters["seed"].default

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seed = signature.bind_partial(*args, **kwargs).arguments.get("seed", default)
        with seeded(seed):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
