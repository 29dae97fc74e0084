"""Name -> object registries read by the CLI, ``fit`` and the contract tests.

A :class:`Registry` is a plain ``dict`` whose failed look-ups say which names exist, so a typo
in ``ppl-gen fit nade`` or ``fit(..., engine="nut")`` fails with the list of valid names
instead of a bare ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0])


class Registry(dict, Generic[T]):
    """A ``dict`` of named entries with a helpful ``KeyError``.

    Arguments:
        kind: What the entries are ("model", "dataset", "engine"), used in messages.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.descriptions: dict[str, str] = {}

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        """Decorator that adds ``obj`` under ``name`` with a one-line description."""

        def decorator(obj: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = obj
            doc = description or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
            self.descriptions[name] = doc
            return obj

        return decorator

    def __missing__(self, name: str) -> T:
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}; valid {self.kind}s are: {', '.join(sorted(self))}"
        )

    def get_entry(self, name: str) -> T:
        """Like ``self[name]``; named for readability at call sites."""
        return self[name]
