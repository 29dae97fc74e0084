"""Normalizing flows on Pyro's transforms: x = T(u), u ~ N(0, I), exact
log p(x) = log N(T^{-1}(x)) + log |det d T^{-1} / d x| (the seed's change of variables).

One class, three variants by argument (``flow=``):

| flow | transform (pyro.distributions.transforms) | density pass | sampling pass |
| --- | --- | --- | --- |
| ``"realnvp"`` | ``affine_coupling`` | parallel | parallel |
| ``"maf"`` | inverse of ``affine_autoregressive`` | parallel | sequential (D passes) |
| ``"nsf"`` | ``spline_coupling`` (rational-quadratic splines) | parallel | parallel |

A fixed permutation between layers lets every coordinate be transformed.

References:
    Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR;
    Papamakarios, Pavlakou & Murray (2017), "Masked autoregressive flow for density
    estimation", NeurIPS; Durkan, Bekasov, Murray & Papamakarios (2019), "Neural spline
    flows", NeurIPS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import Tensor, nn

from .base import GenerativeModel, check_data_keys

__all__ = ["NormalizingFlow", "FLOWS"]

FLOWS = ("realnvp", "maf", "nsf")


class _AffineAutoregressive(T.AffineAutoregressive):
    """Pyro's AffineAutoregressive, whose sequential inverse (Pyro 1.9.x) allocates its
    buffer with ``torch.zeros(..., device=...)`` and no dtype, so float64 inputs fail: run
    it with the input's dtype as the default. The transform itself is Pyro's."""

    def _inverse(self, y: Tensor) -> Tensor:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(y.dtype)
        try:
            return super()._inverse(y)
        finally:
            torch.set_default_dtype(previous)


class NormalizingFlow(GenerativeModel):
    """A stack of invertible transforms over a standard normal.

    Arguments:
        dim: D (>= 2 for the coupling flows).
        flow: ``"realnvp"``, ``"maf"`` or ``"nsf"``.
        num_transforms: Layers.
        hidden_dims: Widths of each layer's conditioner network.
        count_bins: Spline bins (``"nsf"``).
        bound: Splines act on [-bound, bound] and are the identity outside (``"nsf"``).
        seed: Seed for the conditioner initialisation.
    """
    engines = ("svi",)

    data_keys = ("x",)
    density = "exact"

    def __init__(self, dim: int, *, flow: str = "realnvp", num_transforms: int = 4,
                 hidden_dims: Sequence[int] = (64, 64), count_bins: int = 8,
                 bound: float = 5.0, seed: int = 0) -> None:
        super().__init__()
        if flow not in FLOWS:
            raise ValueError(f"unknown flow {flow!r}; valid values are: {', '.join(FLOWS)}")
        if flow in ("realnvp", "nsf") and dim < 2:
            raise ValueError(f"flow {flow!r} couples two halves of x and needs dim >= 2, "
                             f"got {dim}; use flow='maf'")
        if num_transforms < 1:
            raise ValueError(f"num_transforms must be >= 1, got {num_transforms}")
        self.dim, self.flow, self.num_transforms = dim, flow, num_transforms
        self.hidden_dims = tuple(hidden_dims)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            layers = []
            for _ in range(num_transforms):
                if flow == "realnvp":
                    layers.append(T.affine_coupling(dim, hidden_dims=list(hidden_dims)))
                elif flow == "maf":
                    network = pyro.nn.AutoRegressiveNN(dim, list(hidden_dims))
                    layers.append(_AffineAutoregressive(network))
                else:
                    layers.append(T.spline_coupling(dim, hidden_dims=list(hidden_dims),
                                                    count_bins=count_bins, bound=bound))
        self.layers = nn.ModuleList(layers)
        self.register_buffer("reverse", torch.arange(dim - 1, -1, -1))
        self.register_buffer("_zero", torch.zeros(()))

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> NormalizingFlow:
        tensors = getattr(dataset, "tensors", dataset)
        check_data_keys(cls.__name__, cls.data_keys, tensors)
        return cls(tensors["x"].shape[-1], **kwargs)

    def transforms(self) -> list[dist.transforms.Transform]:
        """The transforms from u to x, in order (layers with reversals between them)."""
        out: list[dist.transforms.Transform] = []
        for i, layer in enumerate(self.layers):
            # MAF is the inverse of Pyro's (IAF-direction) AffineAutoregressive: its density
            # pass is then the parallel one.
            out.append(layer.inv if self.flow == "maf" else layer)
            if i < len(self.layers) - 1:
                out.append(T.Permute(self.reverse))
        return out

    def distribution(self) -> dist.TransformedDistribution:
        base = dist.Normal(self._zero.expand(self.dim), 1.0).to_event(1)
        return dist.TransformedDistribution(base, self.transforms())

    def model(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, **_: Any) -> None:
        if x is not None:
            self._check_x(x)
        num = x.shape[0] if x is not None else (num_data or 1)
        # self.layers is touched here, inside the module's Pyro context, which registers
        # the conditioners' parameters as param sites (PyroModule does this for plain
        # nn.Module children), so the SVI engine trains them.
        flow = self.distribution()
        with pyro.plate("data", num, subsample_size=subsample_size, dim=-1) as idx:
            pyro.sample("x", flow, obs=None if x is None else x.index_select(0, idx))

    def log_prob(self, x: Tensor, **_: Any) -> Tensor:
        """Exact log p(x_n), shaped (N,)."""
        self._check_x(x)
        return self.distribution().log_prob(x)

    @torch.no_grad()
    def sample(self, num_samples: int, **_: Any) -> Tensor:
        return self.distribution().sample((num_samples,))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, flow={self.flow!r}, num_transforms={self.num_transforms}, "
                f"hidden_dims={self.hidden_dims}")
