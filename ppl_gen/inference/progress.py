"""A thin progress bar (tqdm) that engines update with their current objective."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


class _Bar:
    def __init__(self, total: int, description: str, enabled: bool, initial: int = 0) -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, dynamic_ncols=True,
                             initial=initial)

    def update(self, **postfix: Any) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()},
                                      refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def progress_bar(total: int, description: str, *, enabled: bool, initial: int = 0) -> _Bar:
    """A tqdm bar (starting at ``initial`` for a resumed run), or a no-op when ``enabled``
    is False."""
    return _Bar(total, description, enabled, initial)
