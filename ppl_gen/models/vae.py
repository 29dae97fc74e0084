"""Variational autoencoders: the VAE (MLP or convolutional), β-VAE, and the conditional VAE
with classification by Bayes' rule.

The model is the seed's two-line generative story, z ~ N(0, I), x | z ~ p_θ(x | f_θ(z)), and
the guide is the amortised encoder q_φ(z | x) = N(μ_φ(x), diag σ_φ(x)²), sampled with the
reparameterisation trick (Pyro's ``Normal.rsample``). Which ELBO trains it is the engine's
choice: ``loss="trace"`` (Monte-Carlo KL), ``"meanfield"`` (closed-form Gaussian KL), or
``"iwae"`` (the importance-weighted bound with ``num_particles`` = k).

References:
    Kingma & Welling (2014), "Auto-encoding variational Bayes", ICLR.
    Rezende, Mohamed & Wierstra (2014), "Stochastic backpropagation and approximate
    inference in deep generative models", ICML.
    Higgins et al. (2017), "β-VAE", ICLR.
    Sohn, Lee & Yan (2015), "Learning structured output representation using deep
    conditional generative models", NeurIPS.
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.nn import PyroParam
from torch import Tensor
from torch.distributions import constraints
from torch.nn import functional as F

from ..nn import MLP, ConvDecoder, ConvEncoder, image_shape_for
from ..traces.importance import MarginalEstimate, estimate_log_marginal
from .base import GenerativeModel, check_data_keys

__all__ = ["VAE", "ConditionalVAE"]

LIKELIHOODS = ("bernoulli", "gaussian")
ARCHITECTURES = ("mlp", "conv")
NOISES = ("learned", "diagonal", "isotropic")
#: Floor on every standard deviation: keeps a Gaussian decoder's likelihood bounded when a
#: pixel is constant in the data (digits' border pixels), and q's scale strictly positive.
MIN_SCALE = 1e-3


def _is_binary(x: Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


class VAE(GenerativeModel):
    """Variational autoencoder: p(z) = N(0, I), p(x | z) Bernoulli or Gaussian; q(z | x) a
    diagonal Gaussian from an encoder network.

    Arguments:
        dim: D, the data dimension (pixels).
        latent_dim: Q, the size of z.
        hidden_dims: Hidden widths of the MLP encoder and decoder (mirrored); ``()`` makes
            both linear — with ``likelihood="gaussian", noise="isotropic"`` that is PPCA's
            generative model with an amortised Gaussian posterior.
        likelihood: ``"bernoulli"`` (binary data; the decoder gives logits) or
            ``"gaussian"`` (real data: N(f_μ(z), diag σ²)).
        noise: Gaussian decoder's σ: ``"learned"`` (σ = f_σ(z), the seed's
            N(f_μ(z), f_σ(z)² I)), ``"diagonal"`` (one free σ_d per pixel), ``"isotropic"``
            (one σ) or a positive number (fixed σ).
        architecture: ``"mlp"`` or ``"conv"`` (two stride-2 convolutions each way; needs
            ``image_shape`` with sides divisible by 4).
        image_shape: (height, width) for ``"conv"``; default the square with D pixels.
        beta: Weight of the KL term (β-VAE); 1 is the ELBO. Implemented by scaling both
            log p(z) and log q(z | x) by β, so every ELBO estimator sees β · KL.
        conv_channels: Channels of the first convolution (the second has twice as many).

    Attributes ``density = "bound"``: :meth:`log_prob` is an importance-sampling estimate.
    """
    engines = ("svi",)

    data_keys = ("x",)
    density = "bound"
    has_local_guide = True
    default_batch_size = 100

    def __init__(self, dim: int, latent_dim: int = 20, *, hidden_dims: tuple[int, ...] = (400,),
                 likelihood: str = "bernoulli", noise: str | float = "learned",
                 architecture: str = "mlp", image_shape: tuple[int, int] | None = None,
                 beta: float = 1.0, conv_channels: int = 32, condition_dim: int = 0) -> None:
        super().__init__()
        if dim < 1 or latent_dim < 1:
            raise ValueError(f"dim and latent_dim must be >= 1, got {dim}, {latent_dim}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; valid values are: "
                             f"{', '.join(LIKELIHOODS)}")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; valid values are: "
                             f"{', '.join(ARCHITECTURES)}")
        if isinstance(noise, str) and noise not in NOISES:
            raise ValueError(f"unknown noise {noise!r}; valid values are: "
                             f"{', '.join(NOISES)}, or a positive number")
        if not isinstance(noise, str) and not (isinstance(noise, (int, float)) and noise > 0):
            raise ValueError(f"noise must be one of {', '.join(NOISES)} or a positive number, "
                             f"got {noise!r}")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
        self.dim, self.latent_dim = dim, latent_dim
        self.hidden_dims = tuple(hidden_dims)
        self.likelihood_name, self.noise = likelihood, noise
        self.architecture, self.beta = architecture, float(beta)
        self.condition_dim = condition_dim
        out_maps = 2 if (likelihood == "gaussian" and noise == "learned") else 1
        if architecture == "conv":
            image_shape = image_shape_for(dim, image_shape)
            hidden = self.hidden_dims[-1] if self.hidden_dims else 256
            self.encoder = ConvEncoder(image_shape, 2 * latent_dim, channels=conv_channels,
                                       hidden_dim=hidden, in_extra=condition_dim)
            self.decoder = ConvDecoder(latent_dim + condition_dim, image_shape,
                                       out_channels=out_maps, channels=conv_channels,
                                       hidden_dim=hidden)
        else:
            self.encoder = MLP(dim + condition_dim, 2 * latent_dim, self.hidden_dims)
            self.decoder = MLP(latent_dim + condition_dim, out_maps * dim,
                               self.hidden_dims[::-1])
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        if likelihood == "gaussian" and noise in ("diagonal", "isotropic"):
            shape = (dim,) if noise == "diagonal" else ()
            self.decoder_scale = PyroParam(torch.ones(shape),
                                           constraints.greater_than(MIN_SCALE))

    # --- construction --------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> VAE:
        """Sizes and image shape from the data; ``likelihood`` defaults to Bernoulli for
        binary data and Gaussian (learned σ) otherwise."""
        tensors = getattr(dataset, "tensors", dataset)
        check_data_keys(cls.__name__, cls.data_keys, tensors)
        x = tensors["x"]
        meta = getattr(dataset, "meta", {}) or {}
        if "image_shape" in meta and kwargs.get("architecture") == "conv":
            kwargs.setdefault("image_shape", tuple(meta["image_shape"]))
        kwargs.setdefault("likelihood", "bernoulli" if _is_binary(x) else "gaussian")
        if kwargs["likelihood"] == "bernoulli" and not _is_binary(x):
            raise ValueError("likelihood='bernoulli' needs binary data, but x has values "
                             "other than 0 and 1; binarize it (load_dataset(..., "
                             "binarize=True)) or use likelihood='gaussian'")
        return cls(x.shape[-1], **cls._from_dataset_extra(tensors), **kwargs)

    @classmethod
    def _from_dataset_extra(cls, tensors: Any) -> dict[str, Any]:
        return {}

    def _check_inputs(self, x: Tensor) -> None:
        """Shape, and 0/1 values under a Bernoulli decoder, of x given to a public method
        (the model itself skips the value check per step; ``fit`` checks the data once)."""
        self._check_x(x)
        if self.likelihood_name == "bernoulli" and not _is_binary(x):
            bad = x[~((x == 0) | (x == 1))]
            raise ValueError(f"this VAE has a Bernoulli decoder and needs binary 0/1 pixels, "
                             f"but x has {bad.numel()} other value(s), e.g. "
                             f"{float(bad[0]):g}; binarise it (x > 0.5) as for training")

    # --- networks --------------------------------------------------------------------------
    def _encoder_input(self, x: Tensor, condition: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if condition is None or self.architecture == "conv":
            return x, condition
        return torch.cat([x, condition.expand(*x.shape[:-1], -1)], -1), None

    def encode(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation of q(z | x), each (..., Q)."""
        inputs, extra = self._encoder_input(x, condition)
        out = self.encoder(inputs, extra) if extra is not None else self.encoder(inputs)
        loc, raw = out[..., :self.latent_dim], out[..., self.latent_dim:]
        return loc, F.softplus(raw) + MIN_SCALE

    def observation(self, z: Tensor, condition: Tensor | None = None) -> dist.Distribution:
        """p(x | z) as a distribution with event shape (D,) and batch shape z.shape[:-1]."""
        if condition is not None:
            z = torch.cat([z, condition.expand(*z.shape[:-1], -1)], -1)
        out = self.decoder(z)
        if self.likelihood_name == "bernoulli":
            # validate_args=False: binary data are checked once, when the model is built,
            # not at every step (the support check costs a pass over the batch).
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        if self.noise == "learned":
            loc, scale = out[..., :self.dim], F.softplus(out[..., self.dim:]) + MIN_SCALE
        elif isinstance(self.noise, str):
            loc, scale = out, self.decoder_scale.expand(self.dim)
        else:
            loc, scale = out, out.new_full((), float(self.noise))
        return dist.Normal(loc, scale, validate_args=False).to_event(1)

    def _prior(self, like: Tensor) -> dist.Distribution:
        zeros = like.new_zeros(self.latent_dim)
        return dist.Normal(zeros, torch.ones_like(zeros), validate_args=False).to_event(1)

    # --- Pyro model / guide ----------------------------------------------------------------
    def model(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, **_: Any) -> Tensor:
        if x is not None:
            self._check_x(x)
        num = x.shape[0] if x is not None else (num_data or 1)
        like = x if x is not None else next(self.decoder.parameters())
        with pyro.plate("data", num, subsample_size=subsample_size, dim=-1) as idx:
            with poutine.scale(scale=self.beta) if self.beta != 1.0 else _nothing():
                z = pyro.sample("z", self._prior(like))
            obs = None if x is None else x.index_select(0, idx)
            return pyro.sample("x", self.observation(z), obs=obs)

    def guide(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, **_: Any) -> None:
        if x is None:  # nothing observed: the model draws z from the prior
            return
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size, dim=-1) as idx:
            loc, scale = self.encode(x.index_select(0, idx))
            with poutine.scale(scale=self.beta) if self.beta != 1.0 else _nothing():
                pyro.sample("z", dist.Normal(loc, scale, validate_args=False).to_event(1))

    # --- likelihood tools ------------------------------------------------------------------
    def estimate_log_marginal(self, x: Tensor, num_samples: int = 1000, *,
                              seed: int | None = 0, **kwargs: Any) -> MarginalEstimate:
        """log p(x) ≈ log (1/K) Σ p(x, z_k)/q(z_k | x), with the per-datum ELBO and ESS.

        Evaluated at β = 1 (the model's true ELBO, whatever β it was trained with).
        """
        self._check_inputs(x)
        with _beta_one(self), torch.no_grad():
            return estimate_log_marginal(self.model, self.guide, {"x": x}, num_samples,
                                         seed=seed, **kwargs)

    def log_prob(self, x: Tensor, num_samples: int = 1000, *, seed: int | None = 0,
                 **_: Any) -> Tensor:
        """Importance-sampling estimate of log p(x_n), shaped (N,) (``density="bound"``:
        an estimator whose expectation is below log p(x), tight as K grows). Other data
        tensors (labels) are ignored."""
        return self.estimate_log_marginal(x, num_samples, seed=seed).log_marginal

    @torch.no_grad()
    def elbo_terms(self, x: Tensor, num_samples: int = 1) -> dict[str, Tensor]:
        """The seed's decomposition per datum: ELBO = reconstruction − KL, with the KL in
        closed form and the reconstruction term E_q[log p(x | z)] by Monte Carlo."""
        self._check_inputs(x)
        loc, scale = self.encode(x)
        q = dist.Normal(loc, scale).to_event(1)
        kl = torch.distributions.kl_divergence(q, self._prior(x))
        z = q.rsample((num_samples,))
        reconstruction = self.observation(z).log_prob(x).mean(0)
        return {"reconstruction": reconstruction, "kl": kl, "elbo": reconstruction - kl}

    # --- generation --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, *, mean: bool = False, **_: Any) -> Tensor:
        """Draws from p(x): z from the prior, then x | z (``mean=True``: E[x | z], the
        smooth images usually shown)."""
        z = self._prior(next(self.decoder.parameters())).sample((num_samples,))
        return self.decode(z, mean=mean)

    @torch.no_grad()
    def decode(self, z: Tensor, *, mean: bool = True) -> Tensor:
        """E[x | z] (``mean=True``) or a draw x ~ p(x | z)."""
        observation = self.observation(z)
        return observation.mean if mean else observation.sample()

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """E[x | z = μ_φ(x)]: decode the encoder's mean."""
        self._check_inputs(x)
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def interpolate(self, x_start: Tensor, x_end: Tensor, num_steps: int = 8) -> Tensor:
        """Decoded images along the straight line between two encoder means, (num_steps, D)."""
        ends = self.encode(torch.stack([x_start.reshape(-1), x_end.reshape(-1)]))[0]
        weights = torch.linspace(0, 1, num_steps, device=ends.device).unsqueeze(-1)
        return self.decode((1 - weights) * ends[0] + weights * ends[1])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, latent_dim={self.latent_dim}, likelihood="
                f"{self.likelihood_name!r}, architecture={self.architecture!r}, "
                f"beta={self.beta}")


class ConditionalVAE(VAE):
    """Conditional VAE p(x | y) with a class prior p(y): y ~ Cat(π), z ~ N(0, I),
    x | y, z from the decoder fed [z, onehot(y)]; q(z | x, y) from the encoder fed
    [x, onehot(y)].

    Beyond class-conditional generation, Bayes' rule turns it into a classifier that can
    refuse: p(y | x) ∝ p(x | y) p(y) with each p(x | y) estimated by importance sampling, and
    log p(x) = log Σ_y p(x | y) p(y) flags inputs unlike any class (the seed's "assign
    labels, while rejecting outliers").

    Arguments:
        dim: D.
        num_classes: C.
        class_prior: π, shaped (C,); default uniform. ``from_dataset`` uses the training
            frequencies.
        **kwargs: As for :class:`VAE`.
    """

    data_keys = ("x", "y")

    def __init__(self, dim: int, num_classes: int, latent_dim: int = 20, *,
                 class_prior: Tensor | None = None, **kwargs: Any) -> None:
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        super().__init__(dim, latent_dim, condition_dim=num_classes, **kwargs)
        self.num_classes = num_classes
        if class_prior is None:
            class_prior = torch.full((num_classes,), 1.0 / num_classes)
        class_prior = torch.as_tensor(class_prior, dtype=torch.get_default_dtype())
        if class_prior.shape != (num_classes,) or (class_prior < 0).any():
            raise ValueError(f"class_prior must be {num_classes} non-negative numbers, got "
                             f"{tuple(class_prior.shape)}")
        self.register_buffer("class_prior", class_prior / class_prior.sum())

    @classmethod
    def _from_dataset_extra(cls, tensors: Any) -> dict[str, Any]:
        y = tensors["y"].long()
        num_classes = int(y.max()) + 1
        counts = torch.bincount(y, minlength=num_classes).to(torch.get_default_dtype())
        return {"num_classes": num_classes, "class_prior": counts / counts.sum()}

    def _labels(self, y: Tensor) -> Tensor:
        """y as class indices: whole numbers in 0..C-1 (float labels are checked, never
        truncated: 2.7 is an error, not class 2)."""
        if y.dtype.is_floating_point:
            fractional = y != torch.round(y)
            if fractional.any():
                raise ValueError(f"labels y must be whole numbers 0..{self.num_classes - 1}, "
                                 f"got {float(y[fractional][0]):g}; pass class indices "
                                 "(e.g. y.long() if they are whole)")
            y = y.long()
        if ((y < 0) | (y >= self.num_classes)).any():
            bad = y[(y < 0) | (y >= self.num_classes)]
            raise ValueError(f"labels y must lie in 0..{self.num_classes - 1}, got "
                             f"{int(bad[0])}; this model was built for {self.num_classes} "
                             "classes (build it from data with all the classes)")
        return y

    def _onehot(self, y: Tensor) -> Tensor:
        return F.one_hot(self._labels(y), self.num_classes).to(self.class_prior.dtype)

    def model(self, x: Tensor | None = None, y: Tensor | None = None,
              num_data: int | None = None, subsample_size: int | None = None,
              **_: Any) -> Tensor:
        if x is not None:
            self._check_x(x)
        num = (x.shape[0] if x is not None else y.shape[0] if y is not None
               else (num_data or 1))
        with pyro.plate("data", num, subsample_size=subsample_size, dim=-1) as idx:
            label = pyro.sample("y", dist.Categorical(self.class_prior),
                                obs=None if y is None else self._labels(y.index_select(0, idx)))
            with poutine.scale(scale=self.beta) if self.beta != 1.0 else _nothing():
                z = pyro.sample("z", self._prior(self.class_prior))
            obs = None if x is None else x.index_select(0, idx)
            return pyro.sample("x", self.observation(z, self._onehot(label)), obs=obs)

    def guide(self, x: Tensor | None = None, y: Tensor | None = None,
              num_data: int | None = None, subsample_size: int | None = None,
              **_: Any) -> None:
        if x is None:
            return
        if y is None:
            raise ValueError("ConditionalVAE's guide q(z | x, y) needs labels y with x; "
                             "to classify unlabelled x use predict_log_proba(x)")
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size, dim=-1) as idx:
            loc, scale = self.encode(x.index_select(0, idx),
                                     self._onehot(y.index_select(0, idx)))
            with poutine.scale(scale=self.beta) if self.beta != 1.0 else _nothing():
                pyro.sample("z", dist.Normal(loc, scale, validate_args=False).to_event(1))

    # --- Bayes' rule -------------------------------------------------------------------------
    @torch.no_grad()
    def log_joint(self, x: Tensor, num_samples: int = 200, *, seed: int | None = 0) -> Tensor:
        """log p(x, y = c) for every class, shaped (N, C): one importance-sampling
        estimate of p(x | c) per class (proposal q(z | x, c)) plus log π_c."""
        self._check_inputs(x)
        columns = []
        with _beta_one(self):
            for c in range(self.num_classes):
                y = torch.full((x.shape[0],), c, dtype=torch.long, device=x.device)
                estimate = estimate_log_marginal(self.model, self.guide, {"x": x, "y": y},
                                                 num_samples, seed=None if seed is None
                                                 else seed + c)
                columns.append(estimate.log_marginal)
        return torch.stack(columns, -1)

    def predict_log_proba(self, x: Tensor, num_samples: int = 200, **kwargs: Any) -> Tensor:
        """log p(y | x) by Bayes' rule, shaped (N, C)."""
        joint = self.log_joint(x, num_samples, **kwargs)
        return joint - joint.logsumexp(-1, keepdim=True)

    def log_prob(self, x: Tensor, num_samples: int = 200, y: Tensor | None = None, *,
                 seed: int | None = 0, **_: Any) -> Tensor:
        """log p(x) = log Σ_c p(x, c) (``y`` given: log p(x, y)), shaped (N,)."""
        if y is not None:
            self._check_inputs(x)
            with _beta_one(self), torch.no_grad():
                return estimate_log_marginal(self.model, self.guide, {"x": x, "y": y},
                                             num_samples, seed=seed).log_marginal
        return self.log_joint(x, num_samples, seed=seed).logsumexp(-1)

    def classify(self, x: Tensor, *, threshold: float | None = None, num_samples: int = 200,
                 **kwargs: Any) -> Tensor:
        """argmax_y p(y | x); with ``threshold``, rows whose log p(x) falls below it get the
        label −1 (rejected as outliers). See :meth:`outlier_threshold`."""
        joint = self.log_joint(x, num_samples, **kwargs)
        labels = joint.argmax(-1)
        if threshold is not None:
            labels = torch.where(joint.logsumexp(-1) < threshold, -1, labels)
        return labels

    def outlier_threshold(self, x: Tensor, quantile: float = 0.01,
                          num_samples: int = 200) -> float:
        """The ``quantile`` of log p(x) over reference data (e.g. held-out digits): inputs
        below it are rejected at a false-rejection rate near ``quantile``."""
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
        return float(torch.quantile(self.log_prob(x, num_samples), quantile))

    @torch.no_grad()
    def sample(self, num_samples: int, *, y: Tensor | int | None = None, mean: bool = False,
               **_: Any) -> Tensor:
        """Draws from p(x), (num_samples, D); with a label ``y``, from p(x | y); with N
        labels, (num_samples, N, D) — a draw for each label."""
        if y is None:
            y = dist.Categorical(self.class_prior).sample((num_samples,))
        else:
            y = torch.as_tensor(y, device=self.class_prior.device).long()
            y = y.expand(num_samples, *y.shape)
        shape = tuple(y.shape)
        z = self._prior(self.class_prior).sample(shape)
        observation = self.observation(z, self._onehot(y))
        return observation.mean if mean else observation.sample()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_classes={self.num_classes}"


class _nothing:
    """A do-nothing context manager (``contextlib.nullcontext`` without the call cost)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: Any) -> None:
        return None


class _beta_one:
    """Temporarily evaluate a β-VAE at β = 1 (likelihood estimates are about p, not the
    β-weighted training objective)."""

    def __init__(self, model: VAE) -> None:
        self.model, self.beta = model, model.beta

    def __enter__(self) -> None:
        self.model.beta = 1.0

    def __exit__(self, *args: Any) -> None:
        self.model.beta = self.beta

