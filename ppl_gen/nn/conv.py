"""Convolutional blocks: masked convolutions for PixelCNN; encoder and decoder for VAEs.

References:
    van den Oord, Kalchbrenner & Kavukcuoglu (2016), "Pixel recurrent neural networks",
    ICML (section 3.5: masks of type A and B).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["MaskedConv2d", "ConvEncoder", "ConvDecoder", "image_shape_for"]


def image_shape_for(dim: int, image_shape: tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) of a D-pixel image: the given shape, checked, or the square."""
    if image_shape is None:
        side = math.isqrt(dim)
        if side * side != dim:
            raise ValueError(f"dim={dim} is not a square: pass image_shape=(height, width)")
        image_shape = (side, side)
    if image_shape[0] * image_shape[1] != dim:
        raise ValueError(f"image_shape {tuple(image_shape)} does not have dim={dim} pixels")
    return (int(image_shape[0]), int(image_shape[1]))


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


def check_image_grid(image_shape: tuple[int, int]) -> tuple[int, int]:
    """The (H/4, W/4) grid of networks that halve an image twice (the convolutional VAE,
    DCGAN); other sizes fail, naming the MLP alternative."""
    height, width = image_shape
    if height % 4 or width % 4:
        raise ValueError(f"the convolutional networks halve the image twice, so height and "
                         f"width must be multiples of 4; got {tuple(image_shape)} (use "
                         "architecture='mlp' for other sizes)")
    return height // 4, width // 4




class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (4 x 4 kernels), then a dense head: (..., H*W) -> (..., out).

    Leading batch dimensions are flattened for the convolutions and restored afterwards, so
    the encoder broadcasts like an MLP (Pyro's particle plates add dimensions on the left).
    """

    def __init__(self, image_shape: tuple[int, int], out_dim: int, *, channels: int = 32,
                 hidden_dim: int = 256, in_extra: int = 0) -> None:
        super().__init__()
        small = check_image_grid(image_shape)
        self.image_shape = tuple(image_shape)
        self.in_extra = in_extra
        self.convolutions = nn.Sequential(
            nn.Conv2d(1, channels, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten())
        flat = 2 * channels * small[0] * small[1]
        self.head = nn.Sequential(nn.Linear(flat + in_extra, hidden_dim), nn.ReLU(),
                                  nn.Linear(hidden_dim, out_dim))

    def forward(self, x: Tensor, extra: Tensor | None = None) -> Tensor:
        batch = x.shape[:-1]
        features = self.convolutions(x.reshape(-1, 1, *self.image_shape))
        if extra is not None:
            features = torch.cat([features, extra.expand(*batch, -1).reshape(-1, self.in_extra)],
                                 -1)
        return self.head(features).reshape(*batch, -1)


class ConvDecoder(nn.Module):
    """Dense layers then two stride-2 transposed convolutions: (..., in_dim) -> (..., C*H*W)
    with ``out_channels`` maps per pixel, flattened channel-major (``[:D]`` is channel 0)."""

    def __init__(self, in_dim: int, image_shape: tuple[int, int], *, out_channels: int = 1,
                 channels: int = 32, hidden_dim: int = 256) -> None:
        super().__init__()
        self.small = check_image_grid(image_shape)
        self.channels = channels
        self.dense = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 2 * channels * self.small[0] * self.small[1]), nn.ReLU())
        self.deconvolutions = nn.Sequential(
            nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(channels, out_channels, 4, stride=2, padding=1),
            nn.Flatten())

    def forward(self, z: Tensor) -> Tensor:
        batch = z.shape[:-1]
        hidden = self.dense(z.reshape(-1, z.shape[-1]))
        hidden = hidden.reshape(-1, 2 * self.channels, *self.small)
        return self.deconvolutions(hidden).reshape(*batch, -1)
