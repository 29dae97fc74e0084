"""Masked convolutions for PixelCNN.

References:
    van den Oord, Kalchbrenner & Kavukcuoglu (2016), "Pixel recurrent neural networks",
    ICML (section 3.5: masks of type A and B).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MaskedConv2d"]


class MaskedConv2d(nn.Conv2d):
    """A 2-D convolution that sees only pixels above, and to the left on the same row.

    Type ``"A"`` (first layer) also hides the centre pixel, so output (i, j) never depends
    on input (i, j); type ``"B"`` (later layers) lets a feature see its own position, which
    is safe once the first layer has excluded the pixel itself.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 mask_type: str) -> None:
        if mask_type not in ("A", "B"):
            raise ValueError(f"unknown mask_type {mask_type!r}; valid values are: A, B")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        centre = kernel_size // 2
        mask = torch.ones(kernel_size, kernel_size)
        mask[centre, centre + (1 if mask_type == "B" else 0):] = 0
        mask[centre + 1:] = 0
        self.register_buffer("mask", mask.expand_as(self.weight).clone())

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)
