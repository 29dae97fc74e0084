"""Autoregressive density for real-valued data with mixture-of-Gaussians conditionals.

p(x) = prod_i sum_k pi_ik(x_<i) N(x_i | mu_ik(x_<i), sigma_ik(x_<i)^2): the seed's "in case of
modeling continuous random variables, a mixture of Gaussians can be used", with the
conditioner a MADE network (one masked pass gives every conditional's 3K parameters), as in
RNADE and MADE-MoG.

References:
    Uria, Murray & Larochelle (2013), "RNADE: The real-valued neural autoregressive
    density-estimator", NeurIPS; Germain et al. (2015), MADE, ICML; Papamakarios et al.
    (2017), MAF (the MADE-MoG baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from ..nn.masked import MaskedLinear, made_degrees, made_masks
from .base import GenerativeModel, check_data_keys

__all__ = ["MADEMoG"]

# Scales below exp(-7) ~ 1e-3 let a component collapse onto one training point (an
# unbounded likelihood); the floor keeps maximum likelihood well posed.
_MIN_LOG_SCALE = -7.0


class MADEMoG(GenerativeModel):
    """MADE with a K-component Gaussian mixture for each conditional p(x_i | x_<i).

    Arguments:
        dim: D.
        hidden_dims: Widths of the masked hidden layers.
        num_components: K.
        seed: Seed for the masks' hidden degrees.
    """
    engines = ("svi",)

    data_keys = ("x",)
    density = "exact"
    default_batch_size = 100

    def __init__(self, dim: int, hidden_dims: Sequence[int] = (128, 128), *,
                 num_components: int = 5, seed: int = 0) -> None:
        super().__init__()
        if dim < 1 or num_components < 1:
            raise ValueError(f"dim and num_components must be >= 1, got {dim}, "
                             f"{num_components}")
        self.dim, self.num_components = dim, num_components
        self.hidden_dims = tuple(hidden_dims)
        generator = torch.Generator().manual_seed(seed)
        degrees = made_degrees(dim, self.hidden_dims, ordering=torch.arange(dim),
                               generator=generator, random_hidden=False)
        masks = made_masks(degrees)
        # Each input dimension gets 3K outputs (mixture logits, means, log-scales), all with
        # that dimension's output mask.
        masks[-1] = masks[-1].repeat(3 * num_components, 1)
        sizes = [dim, *self.hidden_dims, 3 * num_components * dim]
        self.layers = nn.ModuleList(MaskedLinear(a, b, m) for a, b, m in
                                    zip(sizes[:-1], sizes[1:], masks))
        self.register_buffer("ordering", torch.arange(dim))

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> MADEMoG:
        tensors = getattr(dataset, "tensors", dataset)
        check_data_keys(cls.__name__, cls.data_keys, tensors)
        return cls(tensors["x"].shape[-1], **kwargs)

    def conditionals(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixture logits, means and scales of every p(x_i | x_<i), each (N, D, K)."""
        h = x
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        out = self.layers[-1](h).reshape(x.shape[0], 3, self.num_components, self.dim)
        logits, means, log_scales = out.permute(1, 0, 3, 2).unbind(0)
        return logits, means, log_scales.clamp_min(_MIN_LOG_SCALE).exp()

    def _distribution(self, x: Tensor) -> dist.Distribution:
        logits, means, scales = self.conditionals(x)
        return dist.MixtureSameFamily(dist.Categorical(logits=logits),
                                      dist.Normal(means, scales)).to_event(1)

    def model(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, **_: Any) -> None:
        if x is None:  # draw x ancestrally and record it as the site's value
            draws = self.sample(num_data or 1)
            with pyro.plate("data", draws.shape[0], dim=-1):
                pyro.sample("x", dist.Delta(draws).to_event(1))
            return
        self._check_x(x)
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size, dim=-1) as idx:
            batch = x.index_select(0, idx)
            # Teacher-forced conditionals, computed inside the model so the network's
            # parameters register as param sites; exact because output i sees only x_<i.
            pyro.sample("x", self._distribution(batch), obs=batch)

    def log_prob(self, x: Tensor, **_: Any) -> Tensor:
        """Exact log p(x_n), shaped (N,)."""
        self._check_x(x)
        return self._distribution(x).log_prob(x)

    @torch.no_grad()
    def sample(self, num_samples: int, **_: Any) -> Tensor:
        """Ancestral sampling, one dimension at a time (D passes)."""
        x = self.layers[0].weight.new_zeros(num_samples, self.dim)
        for i in range(self.dim):
            logits, means, scales = self.conditionals(x)
            k = dist.Categorical(logits=logits[:, i]).sample()
            rows = torch.arange(num_samples)
            x[:, i] = means[rows, i, k] + scales[rows, i, k] * torch.randn_like(x[:, i])
        return x

    def num_parameters(self) -> int:
        return sum(int(layer.mask.sum()) + layer.bias.numel() for layer in self.layers)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, hidden_dims={self.hidden_dims}, "
                f"num_components={self.num_components}")


