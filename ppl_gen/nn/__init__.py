"""Neural building blocks (no models here): MLPs and autoregressive masks."""

from __future__ import annotations

from .masked import MaskedLinear, made_degrees, made_masks
from .mlp import MLP

__all__ = ["MLP", "MaskedLinear", "made_degrees", "made_masks"]
