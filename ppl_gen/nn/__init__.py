"""Neural building blocks (no models here): MLPs, autoregressive masks, masked convolutions,
a small U-Net."""

from __future__ import annotations

from .conv import ConvDecoder, ConvEncoder, MaskedConv2d, check_image_grid, image_shape_for
from .masked import MaskedLinear, made_degrees, made_masks
from .mlp import MLP
from .scaling import check_data_range, from_unit, log_jacobian, to_unit
from .unet import TimeEmbedding, UNet

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "MaskedLinear", "MaskedConv2d", "made_degrees",
           "made_masks", "image_shape_for", "check_image_grid", "check_data_range", "to_unit",
           "from_unit", "log_jacobian", "TimeEmbedding", "UNet"]
