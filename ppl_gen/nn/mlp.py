"""The one dense-network builder."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Sequential):
    """Linear layers with an activation between them (none after the last).

    Arguments:
        in_dim: Input features.
        out_dim: Output features.
        hidden_dims: Widths of the hidden layers.
        activation: Module class put between layers.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dims: Sequence[int] = (),
                 activation: type[nn.Module] = nn.ReLU) -> None:
        dims = [in_dim, *hidden_dims, out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(activation())
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 - nn.Sequential's
        return super().forward(x)
