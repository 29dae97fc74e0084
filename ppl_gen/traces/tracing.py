"""Whether ppl_gen is tracing a function right now (models skip Python checks on data
values while traced: the check would be frozen into the graph or break it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["tracing"]

_depth = 0


def tracing() -> bool:
    """True while ppl_gen traces a function (and under ``torch.compile``/``torch.jit``
    tracing): skip Python checks on data values there."""
    return (_depth > 0 or torch.compiler.is_compiling() or torch.jit.is_tracing())


@contextlib.contextmanager
def _tracing() -> Iterator[None]:
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
