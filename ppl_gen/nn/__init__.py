"""Neural building blocks (no models here): MLPs, autoregressive masks, masked convolutions."""

from __future__ import annotations

from .conv import ConvDecoder, ConvEncoder, MaskedConv2d, image_shape_for
from .masked import MaskedLinear, made_degrees, made_masks
from .mlp import MLP

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "MaskedLinear", "MaskedConv2d", "made_degrees",
           "made_masks", "image_shape_for"]
