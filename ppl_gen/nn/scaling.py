"""The affine map between a data range and [-1, 1], where image networks work (a tanh
output, symmetric inputs), with its log-Jacobian for densities and bounds."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

__all__ = ["check_data_range", "to_unit", "from_unit", "log_jacobian"]


def check_data_range(data_range: Any) -> tuple[float, float] | None:
    """``None``, or (low, high) as floats with high > low."""
    if data_range is None:
        return None
    low, high = (float(v) for v in data_range)
    if not high > low:
        raise ValueError(f"data_range must be (low, high) with high > low, got {data_range!r}")
    return low, high


def to_unit(x: Tensor, data_range: tuple[float, float] | None) -> Tensor:
    """[low, high] -> [-1, 1] (the identity without a range)."""
    if data_range is None:
        return x
    low, high = data_range
    return 2 * (x - low) / (high - low) - 1


def from_unit(u: Tensor, data_range: tuple[float, float] | None) -> Tensor:
    """[-1, 1] -> [low, high] (the identity without a range)."""
    if data_range is None:
        return u
    low, high = data_range
    return low + (u + 1) * (high - low) / 2


def log_jacobian(dim: int, data_range: tuple[float, float] | None) -> float:
    """log |d unit / d x| summed over ``dim`` dimensions."""
    if data_range is None:
        return 0.0
    low, high = data_range
    return dim * math.log(2 / (high - low))
