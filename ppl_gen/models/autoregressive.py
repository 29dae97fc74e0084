"""Fully visible binary models, from full independence to neural autoregressive models.

Every model here factorises p(x) = prod_i p(x_i | x_<i) in an ordering (the seed's chain
rule), with Bernoulli conditionals whose logits come from ``logits(x)``: logit i may depend
only on the pixels before i, so one pass over an observed x scores all D conditionals at
once (exact ``log_prob``), while sampling is sequential — D passes, the seed's "slow
sequential generation".

| model | conditional p(x_i = 1 given x_<i) | parameters |
| --- | --- | --- |
| IndependentBernoulli | sigmoid(b_i) | D |
| MarkovChain | sigmoid(b_i + c_i x_{i-1}) | 2D - 1 |
| FVSBN | sigmoid(b_i + sum_{j<i} W_ij x_j) | D + D(D-1)/2 |
| NADE | sigmoid(V_i . sigmoid(W_{<i} x_<i + c) + b_i) | 2DH + D + H |
| MADE | masked MLP output i | its unmasked weights |
| PixelCNN | masked convolutions over the pixels above and to the left | its unmasked weights |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import Tensor, nn

from ..nn.conv import MaskedConv2d, image_shape_for
from ..nn.masked import MaskedLinear, made_degrees, made_masks
from .base import GenerativeModel, check_data_keys

__all__ = ["AutoregressiveBernoulli", "BinaryAutoregressive", "IndependentBernoulli",
           "MarkovChain", "FVSBN", "NADE", "MADE", "PixelCNN", "full_joint_parameters"]


def full_joint_parameters(dim: int) -> int:
    """2^D - 1: a categorical over every binary image (the seed's 'almost impossible')."""
    return 2 ** dim - 1


class AutoregressiveBernoulli(dist.TorchDistribution):
    """p(x) = prod_i Bernoulli(x_i | sigmoid(logit_i(x_<i))) over x in {0, 1}^D.

    ``log_prob`` is exact (one teacher-forced pass); ``sample`` is ancestral.

    Arguments:
        model: A :class:`BinaryAutoregressive` (supplies ``logits`` and ``sample_binary``).
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 1)
    has_enumerate_support = False

    def __init__(self, model: BinaryAutoregressive, validate_args: bool | None = None) -> None:
        self.model = model
        super().__init__(torch.Size(), torch.Size([model.dim]), validate_args=validate_args)

    def log_prob(self, value: Tensor) -> Tensor:
        flat = value.reshape(-1, self.model.dim)
        return self.model.log_prob(flat).reshape(value.shape[:-1])

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        num = int(math.prod(sample_shape))
        with torch.no_grad():
            draws = self.model.sample_binary(num)
        return draws.reshape(*sample_shape, self.model.dim)


class BinaryAutoregressive(GenerativeModel):
    """Shared machinery: the Pyro model, exact log-likelihood and ancestral sampling.

    Subclasses implement ``logits(x) -> (N, D)`` (logit i a function of x_<i in
    ``self.ordering``) and ``num_parameters``.
    """
    engines = ("svi",)

    data_keys = ("x",)
    density = "exact"
    # The networks' activations grow with the batch (NADE holds N x D x H of them).
    default_batch_size = 100
    #: Rows per chunk when log_prob is evaluated without gradients.
    eval_chunk_size = 256

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.register_buffer("ordering", torch.arange(dim))

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> BinaryAutoregressive:
        tensors = getattr(dataset, "tensors", dataset)
        check_data_keys(cls.__name__, cls.data_keys, tensors)
        _check_binary(cls.__name__, tensors["x"])
        return cls(tensors["x"].shape[-1], **kwargs)

    def logits(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def model(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, **_: Any) -> None:
        if x is not None:
            self._check_x(x)
            _check_binary(type(self).__name__, x)
        num = x.shape[0] if x is not None else (num_data or 1)
        with pyro.plate("data", num, subsample_size=subsample_size, dim=-1) as idx:
            if x is None:
                pyro.sample("x", AutoregressiveBernoulli(self))
                return
            # Observed: the teacher-forced logits, computed here (inside the module's Pyro
            # context, so its parameters are registered as param sites and trained). Logit
            # i depends only on x_<i, so this Bernoulli's log_prob is the exact log p(x).
            batch = x.index_select(0, idx)
            pyro.sample("x", dist.Bernoulli(logits=self.logits(batch)).to_event(1), obs=batch)

    def log_prob(self, x: Tensor, **_: Any) -> Tensor:
        """Exact log p(x_n), shaped (N,): one pass, all conditionals at once (in chunks of
        rows when no gradient is needed, so evaluating a whole data set fits in memory)."""
        self._check_x(x)
        if not torch.is_grad_enabled() and x.shape[0] > self.eval_chunk_size:
            return torch.cat([self.log_prob(chunk) for chunk in x.split(self.eval_chunk_size)])
        logits = self.logits(x)
        return -nn.functional.binary_cross_entropy_with_logits(
            logits, x, reduction="none").sum(-1)

    @torch.no_grad()
    def sample_binary(self, num_samples: int) -> Tensor:
        """Ancestral sampling: D passes, pixel by pixel in ``self.ordering``."""
        x = next(self.parameters()).new_zeros(num_samples, self.dim)
        for i in self.ordering.tolist():
            prob = torch.sigmoid(self.logits(x)[:, i])
            x[:, i] = torch.bernoulli(prob)
        return x

    @torch.no_grad()
    def sample(self, num_samples: int, **_: Any) -> Tensor:
        return self.sample_binary(num_samples)

    def output_bias(self) -> Tensor:
        """The per-pixel bias added to every logit (what ``initialize_bias`` sets)."""
        return self.bias

    @torch.no_grad()
    def initialize_bias(self, x: Tensor, *, eps: float = 1e-3) -> None:
        """Start the per-pixel output biases at the data's marginal log-odds.

        For independent pixels this is the maximum-likelihood solution; for the others it
        starts training where the independent model ends instead of at p = 1/2 everywhere.
        Border pixels of MNIST are never on, and their log-odds must reach about
        log(eps) ~ -7: from zero Adam needs hundreds of steps just to get there. ``eps``
        clamps the means away from 0 and 1 (log-odds within +-6.9).
        """
        self._check_x(x)
        mean = x.mean(0).clamp(eps, 1 - eps)
        self.output_bias().copy_(torch.log(mean) - torch.log1p(-mean))

    def num_parameters(self) -> int:
        """Free parameters (masked-out weights excluded)."""
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_parameters={self.num_parameters()}"


def _check_binary(name: str, x: Tensor) -> None:
    if not torch.all((x == 0) | (x == 1)):
        raise ValueError(f"{name} models binary data, but x has values other than 0 and 1; "
                         "load the data with binarize=True (e.g. load_dataset('mnist') or "
                         "load_dataset('digits', binarize=True))")


class IndependentBernoulli(BinaryAutoregressive):
    """Every pixel independent: p(x) = prod_i Bernoulli(x_i | sigmoid(b_i)); D parameters.

    The seed's first extreme ("structure through independence"): cheap, but it cannot
    represent any dependence between pixels.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.bias = nn.Parameter(torch.zeros(dim))

    def logits(self, x: Tensor) -> Tensor:
        return self.bias.expand(x.shape[0], self.dim)

    @torch.no_grad()
    def sample_binary(self, num_samples: int) -> Tensor:
        # Independent pixels need no sequence: one draw of all D at once.
        return torch.bernoulli(torch.sigmoid(self.bias).expand(num_samples, self.dim))


class MarkovChain(BinaryAutoregressive):
    """First-order Markov chain in raster order: p(x_i | x_<i) = p(x_i | x_{i-1}).

    Two numbers per conditional (x_{i-1} = 0 or 1) plus p(x_1): 2D - 1 parameters, the
    seed's count under the Markov assumption.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.bias = nn.Parameter(torch.zeros(dim))  # logit of p(x_i = 1 | x_{i-1} = 0)
        self.coupling = nn.Parameter(torch.zeros(dim - 1))  # added when x_{i-1} = 1

    def logits(self, x: Tensor) -> Tensor:
        previous = nn.functional.pad(x[:, :-1], (1, 0))
        coupling = nn.functional.pad(self.coupling, (1, 0))
        return self.bias + coupling * previous


class FVSBN(BinaryAutoregressive):
    """Fully visible sigmoid belief network: logit_i = b_i + sum_{j<i} W_ij x_j.

    References:
        Frey (1998), "Graphical models for machine learning and digital communication";
        Neal (1992), "Connectionist learning of belief networks".
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.bias = nn.Parameter(torch.zeros(dim))
        # Only the strictly lower triangle is a parameter; keep it packed.
        self.weight = nn.Parameter(torch.zeros(dim * (dim - 1) // 2))
        rows, cols = torch.tril_indices(dim, dim, offset=-1)
        self.register_buffer("_rows", rows)
        self.register_buffer("_cols", cols)

    def weight_matrix(self) -> Tensor:
        w = self.bias.new_zeros(self.dim, self.dim)
        return w.index_put((self._rows, self._cols), self.weight)

    def logits(self, x: Tensor) -> Tensor:
        return self.bias + x @ self.weight_matrix().T

    @torch.no_grad()
    def sample_binary(self, num_samples: int) -> Tensor:
        """Ancestral sampling with the weight matrix built once: O(D^2) per image."""
        weight = self.weight_matrix()
        x = self.bias.new_zeros(num_samples, self.dim)
        for i in range(self.dim):
            x[:, i] = torch.bernoulli(torch.sigmoid(self.bias[i] + x[:, :i] @ weight[i, :i]))
        return x


class NADE(BinaryAutoregressive):
    """Neural autoregressive density estimator, exactly as in the seed:

    h_i = sigmoid(W_{<i} x_{<i} + c),  p(x_i = 1 | x_{<i}) = sigmoid(V_i . h_i + b_i).

    The pre-activations share a running sum, a_{i+1} = a_i + W_{:,i} x_i, so all D
    conditionals cost O(D H), not O(D^2 H) (one cumulative sum over pixels).

    Arguments:
        dim: D.
        hidden_dim: H (500 in the paper for MNIST).

    References:
        Larochelle & Murray (2011), "The neural autoregressive distribution estimator",
        AISTATS.
    """

    def __init__(self, dim: int, hidden_dim: int = 500) -> None:
        super().__init__(dim)
        self.hidden_dim = hidden_dim
        generator = torch.Generator().manual_seed(0)
        # Small random weights break the symmetry between hidden units; 0.01 as in the
        # reference implementation.
        self.weight = nn.Parameter(0.01 * torch.randn(hidden_dim, dim, generator=generator))
        self.hidden_bias = nn.Parameter(torch.zeros(hidden_dim))
        self.out_weight = nn.Parameter(0.01 * torch.randn(dim, hidden_dim,
                                                          generator=generator))
        self.bias = nn.Parameter(torch.zeros(dim))

    def logits(self, x: Tensor) -> Tensor:
        # contributions[n, i] = W[:, i] x_{n,i}; a_i = c + sum_{j<i} contributions[n, j].
        contributions = x.unsqueeze(-1) * self.weight.T  # (N, D, H)
        running = contributions.cumsum(1) - contributions  # exclusive cumulative sum
        hidden = torch.sigmoid(running + self.hidden_bias)  # (N, D, H): h_i for every i
        return (hidden * self.out_weight).sum(-1) + self.bias

    @torch.no_grad()
    def sample_binary(self, num_samples: int) -> Tensor:
        """Ancestral sampling with the running sum: O(D H) per image."""
        x = self.bias.new_zeros(num_samples, self.dim)
        pre = self.hidden_bias.expand(num_samples, self.hidden_dim).clone()
        for i in range(self.dim):
            hidden = torch.sigmoid(pre)
            prob = torch.sigmoid(hidden @ self.out_weight[i] + self.bias[i])
            x[:, i] = torch.bernoulli(prob)
            pre += x[:, i : i + 1] * self.weight[:, i]
        return x

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden_dim={self.hidden_dim}, " \
               f"num_parameters={self.num_parameters()}"


class MADE(BinaryAutoregressive):
    """Masked autoencoder for distribution estimation: an MLP whose masks make output i a
    function of the inputs before i in an ordering.

    With ``num_masks > 1`` training cycles through that many mask sets (each with its own
    input ordering when ``order_agnostic``, and random hidden connectivity), and the test
    likelihood ensembles them: p(x) = (1/K) sum_k p_k(x) (Germain et al., section 4).

    Arguments:
        dim: D.
        hidden_dims: Hidden widths.
        num_masks: K mask sets.
        order_agnostic: Give each mask set a random input ordering (else raster order).
        seed: Seed for orderings and connectivity.

    References:
        Germain, Gregor, Murray & Larochelle (2015), "MADE: Masked Autoencoder for
        Distribution Estimation", ICML.
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] = (500,), *, num_masks: int = 1,
                 order_agnostic: bool = False, seed: int = 0) -> None:
        super().__init__(dim)
        if num_masks < 1:
            raise ValueError(f"num_masks must be >= 1, got {num_masks}")
        self.hidden_dims, self.num_masks = tuple(hidden_dims), num_masks
        sizes = [dim, *self.hidden_dims, dim]
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        generator = torch.Generator().manual_seed(seed)
        orderings, mask_sets = [], []
        for k in range(num_masks):
            ordering = (torch.randperm(dim, generator=generator)
                        if order_agnostic and k > 0 else torch.arange(dim))
            degrees = made_degrees(dim, self.hidden_dims, ordering=ordering,
                                   generator=generator, random_hidden=num_masks > 1)
            orderings.append(ordering)
            mask_sets.append(made_masks(degrees))
        self.register_buffer("orderings", torch.stack(orderings))
        for layer_index in range(len(self.layers)):
            self.register_buffer(f"masks_{layer_index}",
                                 torch.stack([m[layer_index] for m in mask_sets]))
        self._mask_index = -1
        self.use_mask(0)

    def output_bias(self) -> Tensor:
        return self.layers[-1].bias

    def use_mask(self, index: int) -> None:
        """Install mask set ``index`` (and its ordering)."""
        self._mask_index = index % self.num_masks
        for layer_index, layer in enumerate(self.layers):
            layer.set_mask(getattr(self, f"masks_{layer_index}")[self._mask_index])
        self.ordering.copy_(self.orderings[self._mask_index])

    def logits(self, x: Tensor) -> Tensor:
        h = x
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        return self.layers[-1](h)

    def model(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, **kwargs: Any) -> None:
        # Training moves to the next mask set on every call (Germain et al.: one mask per
        # minibatch).
        if self.num_masks > 1 and self.training and x is not None:
            self.use_mask(self._mask_index + 1)
        super().model(x, num_data=num_data, subsample_size=subsample_size, **kwargs)

    def log_prob(self, x: Tensor, **_: Any) -> Tensor:
        """Exact log p(x) of the ensemble: log mean_k p_k(x) over the K mask sets."""
        if self.num_masks == 1:
            return super().log_prob(x)
        current = self._mask_index
        per_mask = []
        for k in range(self.num_masks):
            self.use_mask(k)
            per_mask.append(super().log_prob(x))
        self.use_mask(current)
        return torch.stack(per_mask).logsumexp(0) - math.log(self.num_masks)

    @torch.no_grad()
    def sample_binary(self, num_samples: int) -> Tensor:
        """A draw from the ensemble: pick a mask set per image, then sample ancestrally."""
        if self.num_masks == 1:
            return super().sample_binary(num_samples)
        current = self._mask_index
        which = torch.randint(self.num_masks, (num_samples,))
        out = self.layers[0].weight.new_zeros(num_samples, self.dim)
        for k in range(self.num_masks):
            rows = (which == k).nonzero().squeeze(-1)
            if len(rows):
                self.use_mask(k)
                out[rows] = super().sample_binary(len(rows))
        self.use_mask(current)
        return out

    def num_parameters(self) -> int:
        """Weights that some mask set uses, plus biases."""
        total = 0
        for layer_index, layer in enumerate(self.layers):
            used = getattr(self, f"masks_{layer_index}").amax(0)
            total += int(used.sum()) + layer.bias.numel()
        return total

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, hidden_dims={self.hidden_dims}, num_masks={self.num_masks}, "
                f"num_parameters={self.num_parameters()}")


class PixelCNN(BinaryAutoregressive):
    """Masked convolutions in raster order: a type-A layer, then type-B layers, then a 1x1
    convolution to one logit per pixel. Weight sharing across positions makes it far
    smaller than FVSBN or NADE at 28 x 28.

    Arguments:
        dim: D = height x width.
        image_shape: (height, width); default: the square with D pixels.
        channels: Feature maps per layer.
        num_layers: Masked layers (the first is type A with ``first_kernel``; the rest
            type B, 3 x 3).
        first_kernel: Kernel of the type-A layer (7 in the paper).

    References:
        van den Oord, Kalchbrenner & Kavukcuoglu (2016), "Pixel recurrent neural
        networks", ICML.
    """

    def __init__(self, dim: int, *, image_shape: tuple[int, int] | None = None,
                 channels: int = 64, num_layers: int = 5, first_kernel: int = 7) -> None:
        super().__init__(dim)
        image_shape = image_shape_for(dim, image_shape)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.image_shape = tuple(image_shape)
        self.channels, self.num_layers = channels, num_layers
        layers: list[nn.Module] = [MaskedConv2d(1, channels, first_kernel, "A")]
        for _ in range(num_layers - 1):
            layers += [nn.ReLU(), MaskedConv2d(channels, channels, 3, "B")]
        layers += [nn.ReLU(), nn.Conv2d(channels, 1, 1)]
        self.network = nn.Sequential(*layers)

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> PixelCNN:
        meta = getattr(dataset, "meta", {}) or {}
        if "image_shape" in meta:
            kwargs.setdefault("image_shape", tuple(meta["image_shape"]))
        return super().from_dataset(dataset, **kwargs)

    def output_bias(self) -> Tensor:
        # One bias for all pixels in the last 1x1 convolution; per-pixel biases do not
        # exist here, so start it at the mean log-odds.
        return self.network[-1].bias

    @torch.no_grad()
    def initialize_bias(self, x: Tensor, *, eps: float = 1e-3) -> None:
        self._check_x(x)
        mean = x.mean().clamp(eps, 1 - eps)
        self.output_bias().fill_(float(torch.log(mean) - torch.log1p(-mean)))

    def logits(self, x: Tensor) -> Tensor:
        images = x.reshape(x.shape[0], 1, *self.image_shape)
        return self.network(images).reshape(x.shape[0], self.dim)

    def num_parameters(self) -> int:
        total = 0
        for layer in self.network:
            if isinstance(layer, nn.Conv2d):
                mask = getattr(layer, "mask", None)
                total += int(mask.sum()) if mask is not None else layer.weight.numel()
                total += layer.bias.numel()
        return total

    def extra_repr(self) -> str:
        return (f"image_shape={self.image_shape}, channels={self.channels}, "
                f"num_layers={self.num_layers}, num_parameters={self.num_parameters()}")
