"""Adversarial autoencoder, and the plain autoencoder it repairs.

The seed asks "is an autoencoder a generative model?" An autoencoder learns codes z = f(x)
and a decoder g(z), but nothing makes the codes follow any distribution one could sample,
so decoding z ~ p(z) produces images from regions no training code visited. The
adversarial autoencoder (Makhzani et al. 2016) adds a discriminator D(z) that tells prior
draws from codes, and trains the encoder to fool it: the aggregate posterior
q(z) = E_x q(z | x) is matched to *any prior that can be sampled* — a Gaussian, a uniform
box, a mixture — with no density of q needed. The Pyro model is the usual p(z) p(x | z); the
guide is the deterministic encoder, q(z | x) = δ(f(x)). Training is the adversarial
engine's three phases: reconstruction, discriminator, generator (the encoder).

References:
    Makhzani, Shlens, Jaitly, Goodfellow & Frey (2016), "Adversarial autoencoders", ICLR
    workshop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor
from torch.nn import functional as F

from ..nn import MLP
from .base import GenerativeModel, check_data_keys

__all__ = ["AdversarialAutoencoder", "energy_distance"]

PRIORS = ("gaussian", "uniform", "mixture")
LIKELIHOODS = ("bernoulli", "gaussian")


class AdversarialAutoencoder(GenerativeModel):
    """Deterministic encoder, decoder p(x | z), discriminator on z.

    Arguments:
        dim: D.
        latent_dim: Q (2 makes the code space plottable).
        hidden_dims: Hidden widths of encoder and decoder (mirrored).
        prior: ``"gaussian"`` (N(0, I)), ``"uniform"`` (U[-1, 1]^Q) or ``"mixture"``
            (``num_components`` Gaussians, sd 0.5, centred on a circle of radius 4 in the
            first two code dimensions — the AAE paper's figure).
        likelihood: ``"bernoulli"`` or ``"gaussian"`` (σ = ``noise``).
        noise: σ of the Gaussian decoder.
        discriminator_dims: Hidden widths of D(z).
        adversarial: ``False`` gives the plain autoencoder: reconstruction only, the prior
            never enforced (the seed's counterexample).
        num_components: Mixture prior's components.
    """

    engines = ("adversarial",)
    data_keys = ("x",)
    density = "implicit"
    has_local_guide = True
    default_batch_size = 100

    def __init__(self, dim: int, latent_dim: int = 2, *,
                 hidden_dims: tuple[int, ...] = (256, 256), prior: str = "gaussian",
                 likelihood: str = "bernoulli", noise: float = 0.1,
                 discriminator_dims: tuple[int, ...] = (128, 128), adversarial: bool = True,
                 num_components: int = 10) -> None:
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; valid values are: {', '.join(PRIORS)}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; valid values are: "
                             f"{', '.join(LIKELIHOODS)}")
        if prior == "mixture" and latent_dim < 2:
            raise ValueError("prior='mixture' places components on a circle: latent_dim "
                             "must be >= 2")
        if not noise > 0:
            raise ValueError(f"noise must be > 0, got {noise!r}")
        self.dim, self.latent_dim = dim, latent_dim
        self.prior_name, self.likelihood_name, self.noise = prior, likelihood, float(noise)
        self.adversarial = adversarial
        self.encoder = MLP(dim, latent_dim, hidden_dims)
        self.decoder = MLP(latent_dim, dim, tuple(hidden_dims)[::-1])
        self.discriminator = MLP(latent_dim, 1, discriminator_dims)
        angles = torch.arange(num_components) * (2 * math.pi / num_components)
        locs = torch.zeros(num_components, latent_dim)
        locs[:, 0], locs[:, 1] = 4 * angles.cos(), 4 * angles.sin()
        self.register_buffer("component_locs", locs)

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> AdversarialAutoencoder:
        tensors = getattr(dataset, "tensors", dataset)
        check_data_keys(cls.__name__, cls.data_keys, tensors)
        x = tensors["x"]
        binary = bool(((x == 0) | (x == 1)).all())
        kwargs.setdefault("likelihood", "bernoulli" if binary else "gaussian")
        return cls(x.shape[-1], **kwargs)

    # --- distributions -------------------------------------------------------------------
    def prior(self) -> dist.Distribution:
        """p(z), event shape (Q,)."""
        locs = self.component_locs
        zeros = locs.new_zeros(self.latent_dim)
        if self.prior_name == "gaussian":
            return dist.Normal(zeros, 1.0).to_event(1)
        if self.prior_name == "uniform":
            return dist.Uniform(zeros - 1, zeros + 1).to_event(1)
        mixing = dist.Categorical(logits=locs.new_zeros(locs.shape[0]))
        return dist.MixtureSameFamily(mixing, dist.Normal(locs, 0.5).to_event(1))

    def observation(self, z: Tensor) -> dist.Distribution:
        out = self.decoder(z)
        if self.likelihood_name == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        return dist.Normal(out, self.noise, validate_args=False).to_event(1)

    # --- Pyro model / guide --------------------------------------------------------------
    def model(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, **_: Any) -> Tensor:
        if x is not None:
            self._check_x(x)
        num = x.shape[0] if x is not None else (num_data or 1)
        with pyro.plate("data", num, subsample_size=subsample_size, dim=-1) as idx:
            z = pyro.sample("z", self.prior())
            obs = None if x is None else x.index_select(0, idx)
            return pyro.sample("x", self.observation(z), obs=obs)

    def guide(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, **_: Any) -> None:
        """q(z | x) = δ(f(x)): the deterministic encoder."""
        if x is None:
            return
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size, dim=-1) as idx:
            pyro.sample("z", dist.Delta(self.encoder(x.index_select(0, idx))).to_event(1))

    # --- adversarial engine ---------------------------------------------------------------
    def adversarial_phases(self) -> dict[str, Iterable[Tensor]]:
        phases: dict[str, Iterable[Tensor]] = {
            "reconstruction": [*self.encoder.parameters(), *self.decoder.parameters()]}
        if self.adversarial:
            phases["discriminator"] = list(self.discriminator.parameters())
            phases["generator"] = list(self.encoder.parameters())
        return phases

    def adversarial_loss(self, phase: str, batch: dict[str, Tensor]) -> Tensor:
        """Mean per-datum losses. ``reconstruction``: −log p(x | f(x)); ``discriminator``:
        cross-entropy of D telling prior draws (label 1) from codes (label 0);
        ``generator``: the non-saturating −log D(f(x)) that moves codes towards the prior."""
        x = batch["x"]
        self._check_x(x)
        codes = self.encoder(x)
        if phase == "reconstruction":
            return -self.observation(codes).log_prob(x).mean()
        if phase == "discriminator":
            prior_draws = self.prior().sample((x.shape[0],))
            real = self.discriminator(prior_draws)
            fake = self.discriminator(codes.detach())
            return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                    + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        if phase == "generator":
            fake = self.discriminator(codes)
            return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
        raise ValueError(f"unknown phase {phase!r}; valid phases are: "
                         f"{', '.join(self.adversarial_phases())}")

    # --- use ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Codes f(x), (N, Q)."""
        self._check_x(x)
        return self.encoder(x)

    @torch.no_grad()
    def decode(self, z: Tensor, *, mean: bool = True) -> Tensor:
        observation = self.observation(z)
        return observation.mean if mean else observation.sample()

    @torch.no_grad()
    def sample(self, num_samples: int, *, mean: bool = False, **_: Any) -> Tensor:
        """Decode prior draws: generation works only if the codes follow the prior."""
        return self.decode(self.prior().sample((num_samples,)), mean=mean)

    @torch.no_grad()
    def prior_mismatch(self, x: Tensor, num_prior: int = 2000, *, seed: int = 0) -> float:
        """Energy distance between the codes of ``x`` and as many prior draws: 0 when the
        aggregate posterior equals the prior (Székely & Rizzo 2013)."""
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            prior_draws = self.prior().sample((num_prior,))
        finally:
            torch.random.set_rng_state(generator_state)
        return float(energy_distance(self.encode(x), prior_draws))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, latent_dim={self.latent_dim}, prior={self.prior_name!r}, "
                f"adversarial={self.adversarial}")


def energy_distance(a: Tensor, b: Tensor) -> Tensor:
    """2 E|A − B| − E|A − A'| − E|B − B'| (V-statistic), for samples shaped (N, Q), (M, Q)."""
    return 2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()
