"""Autoregressive masks (MADE) and the masked linear layer they feed.

References:
    Germain, Gregor, Murray & Larochelle (2015), "MADE: Masked Autoencoder for Distribution
    Estimation", ICML. arXiv:1502.03509.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["MaskedLinear", "made_degrees", "made_masks"]


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 mask (a buffer).

    Arguments:
        in_features: Inputs.
        out_features: Outputs.
        mask: (out_features, in_features) mask; may be replaced with :meth:`set_mask`.
    """

    def __init__(self, in_features: int, out_features: int, mask: Tensor | None = None) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("mask", torch.ones(out_features, in_features))
        if mask is not None:
            self.set_mask(mask)

    def set_mask(self, mask: Tensor) -> None:
        if mask.shape != self.weight.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != weight shape "
                             f"{tuple(self.weight.shape)}")
        self.mask.copy_(mask.to(self.mask))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


def made_degrees(dim: int, hidden_dims: Sequence[int], *, ordering: Tensor,
                 generator: torch.Generator | None = None, random_hidden: bool = True
                 ) -> list[Tensor]:
    """Degrees of the input, hidden and output units.

    The input with position k in ``ordering`` has degree k + 1 (1..D). Each hidden unit gets
    a degree in [min degree of the previous layer, D - 1] — at random (connectivity-agnostic
    training) or evenly spread. Outputs share the inputs' degrees.
    """
    if sorted(ordering.tolist()) != list(range(dim)):
        raise ValueError(f"ordering must be a permutation of range({dim})")
    inputs = torch.empty(dim, dtype=torch.long)
    inputs[ordering] = torch.arange(1, dim + 1)
    degrees = [inputs]
    low = 1
    for width in hidden_dims:
        if dim == 1:
            hidden = torch.zeros(width, dtype=torch.long)  # nothing to condition on
        elif random_hidden:
            hidden = torch.randint(low, dim, (width,), generator=generator)
        else:
            hidden = torch.arange(width) % max(dim - low, 1) + low
        degrees.append(hidden)
        low = int(hidden.min()) if width else low
    return degrees


def made_masks(degrees: Sequence[Tensor]) -> list[Tensor]:
    """Masks (out, in) for each layer: hidden unit k sees inputs of degree <= its own;
    output d sees hidden units of degree < its input degree, so output d depends only on
    inputs that precede it in the ordering."""
    masks = [(h[:, None] >= prev[None, :]).float() for prev, h in zip(degrees[:-1],
                                                                       degrees[1:])]
    output = degrees[0]
    masks.append((output[:, None] > degrees[-1][None, :]).float())
    return masks
