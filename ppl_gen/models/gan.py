"""Generative adversarial networks as Pyro programs: minimax and non-saturating GAN,
least-squares GAN, WGAN (weight clipping), WGAN-GP (gradient penalty), DCGAN and the
class-conditional GAN.

The generator is the Pyro model: ``z ~ N(0, I)`` in ``pyro.plate("data")`` and
``x = G(z)`` a deterministic site, so ``Predictive``, ``poutine.trace`` and every Pyro tool
see an ordinary program. It defines no density (``density = "implicit"``): ``log_prob``
raises and says which families have one. The discriminator (or critic) is a module of the
model, and training is two-player (the ``adversarial`` engine): each step runs the
``discriminator`` phase ``discriminator_steps`` times (n_critic), then the ``generator``
phase, each with its own Adam (``AdversarialConfig.discriminator_learning_rate`` gives the
two-time-scale update rule).

The objectives are named, tested pieces (:data:`GAN_OBJECTIVES`), not inlined per model.
With logits ``l`` and D = sigmoid(l):

- ``minimax`` (Goodfellow et al. 2014): D maximises E log D(x) + E log(1 - D(G(z))); G
  minimises E log(1 - D(G(z))) — it saturates when D is confident (the lecture notes'
  argument; measured in the tests).
- ``non_saturating``: G minimises -E log D(G(z)) instead (same fixed point).
- ``least_squares`` (Mao et al. 2017): squared distance of the raw score from the labels.
- ``wgan`` (Arjovsky et al. 2017): the critic maximises E C(x) - E C(G(z)) with its weights
  clipped to [-c, c]; ``wgan_gp`` (Gulrajani et al. 2017) replaces clipping by the penalty
  lambda E (|grad C(x_hat)| - 1)^2 on random interpolates.

Training tricks from the notes: data mapped to [-1, 1] (the generator ends in tanh) when
``data_range`` is given (images: from the data), one-sided label smoothing
(``label_smoothing``: real labels 1 - s), batch norm in the DCGAN networks (never in a
WGAN-GP critic: the penalty is per sample, batch norm mixes samples).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import MLP, check_data_range, check_image_grid, from_unit, image_shape_for, to_unit
from ..registry import Registry
from .base import GenerativeModel, check_data_keys, continuous_data

__all__ = ["GAN", "GANObjective", "GAN_OBJECTIVES", "ARCHITECTURES"]

ARCHITECTURES = ("mlp", "dcgan")


@dataclass(frozen=True)
class GANObjective:
    """One GAN objective: the two players' losses (to minimise) on the discriminator's raw
    scores, and what the critic needs besides.

    Attributes:
        discriminator_loss: ``(real_scores, fake_scores, label_smoothing) -> loss``.
        generator_loss: ``fake_scores -> loss``.
        critic: Scores are unbounded critic values (Wasserstein), not logits.
        clip: Clip the critic's weights after every critic step (WGAN).
        gradient_penalty: Add the WGAN-GP penalty to the critic's loss.
    """

    discriminator_loss: Callable[[Tensor, Tensor, float], Tensor]
    generator_loss: Callable[[Tensor], Tensor]
    critic: bool = False
    clip: bool = False
    gradient_penalty: bool = False


def _bce_discriminator(real: Tensor, fake: Tensor, smoothing: float) -> Tensor:
    """Cross-entropy of D telling data (label 1 - smoothing) from samples (label 0)."""
    target = 1.0 - smoothing
    real_loss = target * F.softplus(-real) + (1 - target) * F.softplus(real)
    return real_loss.mean() + F.softplus(fake).mean()


def _least_squares_discriminator(real: Tensor, fake: Tensor, smoothing: float) -> Tensor:
    return 0.5 * ((real - (1.0 - smoothing)) ** 2).mean() + 0.5 * (fake ** 2).mean()


def _wasserstein_critic(real: Tensor, fake: Tensor, smoothing: float) -> Tensor:
    return fake.mean() - real.mean()


GAN_OBJECTIVES: Registry[GANObjective] = Registry("GAN objective")
GAN_OBJECTIVES.register("minimax", "log(1 - D(G(z))) for G: the original, saturating game")(
    GANObjective(_bce_discriminator, lambda fake: -F.softplus(fake).mean()))
GAN_OBJECTIVES.register("non_saturating", "-log D(G(z)) for G: the same fixed point, strong "
                        "gradients early")(
    GANObjective(_bce_discriminator, lambda fake: F.softplus(-fake).mean()))
GAN_OBJECTIVES.register("least_squares", "LSGAN: squared distance of scores from labels")(
    GANObjective(_least_squares_discriminator,
                 lambda fake: 0.5 * ((fake - 1.0) ** 2).mean()))
GAN_OBJECTIVES.register("wgan", "Wasserstein critic with weight clipping")(
    GANObjective(_wasserstein_critic, lambda fake: -fake.mean(), critic=True, clip=True))
GAN_OBJECTIVES.register("wgan_gp", "Wasserstein critic with a gradient penalty")(
    GANObjective(_wasserstein_critic, lambda fake: -fake.mean(), critic=True,
                 gradient_penalty=True))


class _DCGenerator(nn.Module):
    """z -> dense -> (2C, H/4, W/4) -> two stride-2 transposed convolutions, batch norm and
    ReLU between (Radford et al. 2016), flattened output (..., H*W) before the tanh."""

    def __init__(self, in_dim: int, image_shape: tuple[int, int], channels: int) -> None:
        super().__init__()
        self.small, self.channels = check_image_grid(image_shape), channels
        size = 2 * channels * self.small[0] * self.small[1]
        self.dense = nn.Sequential(nn.Linear(in_dim, size), nn.BatchNorm1d(size), nn.ReLU())
        self.deconvolutions = nn.Sequential(
            nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1),
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.ConvTranspose2d(channels, 1, 4, stride=2, padding=1), nn.Flatten())

    def forward(self, z: Tensor) -> Tensor:
        batch = z.shape[:-1]
        hidden = self.dense(z.reshape(-1, z.shape[-1]))
        hidden = hidden.reshape(-1, 2 * self.channels, *self.small)
        return self.deconvolutions(hidden).reshape(*batch, -1)


class _DCDiscriminator(nn.Module):
    """Two stride-2 convolutions with LeakyReLU(0.2) (batch norm on the second unless
    ``batch_norm=False``), then a linear score. Class labels enter as constant extra input
    maps (``extra`` channels)."""

    def __init__(self, image_shape: tuple[int, int], channels: int, extra: int,
                 batch_norm: bool) -> None:
        super().__init__()
        small = check_image_grid(image_shape)
        self.image_shape, self.extra = tuple(image_shape), extra
        self.features = nn.Sequential(
            nn.Conv2d(1 + extra, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1),
            nn.BatchNorm2d(2 * channels) if batch_norm else nn.Identity(), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * channels * small[0] * small[1], 1))

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[:-1]
        pixels = x.shape[-1] - self.extra
        image = x[..., :pixels].reshape(-1, 1, *self.image_shape)
        if self.extra:
            maps = x[..., pixels:].reshape(-1, self.extra, 1, 1).expand(
                -1, -1, *self.image_shape)
            image = torch.cat([image, maps], 1)
        return self.features(image).reshape(*batch, 1)


@contextlib.contextmanager
def _evaluation(module: nn.Module) -> Iterator[None]:
    training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(training)


def _drop_final_bias(network: nn.Module) -> None:
    """A Wasserstein critic's last bias cancels in E C(x) - E C(G(z)) and in the gradient
    penalty: it would never move, so it is left out."""
    last = [m for m in network.modules() if isinstance(m, nn.Linear)][-1]
    last.register_parameter("bias", None)


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class GAN(GenerativeModel):
    """A generative adversarial network: ``x = G(z)``, z ~ N(0, I), trained against a
    discriminator (or critic) D.

    Arguments:
        dim: Data dimensions D (pixels for images).
        latent_dim: Dimensions of z.
        objective: One of :data:`GAN_OBJECTIVES`: ``"minimax"``, ``"non_saturating"``
            (default), ``"least_squares"``, ``"wgan"``, ``"wgan_gp"``.
        architecture: ``"mlp"`` or ``"dcgan"`` (images; height and width multiples of 4).
        generator_dims, discriminator_dims: Hidden widths of the MLP networks.
        image_shape: (height, width) for ``"dcgan"`` (default: the square with D pixels).
        channels: Channels of the DCGAN's first convolution (the second has twice as many).
        num_classes: > 0 gives the class-conditional GAN: labels ``y`` (one-hot) enter
            both networks, and ``y`` is an observed site with prior ``class_prior``.
        class_prior: Label frequencies (default uniform).
        data_range: (low, high) of the data: mapped to [-1, 1] for the networks, the
            generator ending in tanh. ``None``: no mapping, a linear output (2-D data).
        label_smoothing: One-sided label smoothing s (real labels 1 - s), for the
            cross-entropy and least-squares objectives.
        clip_value: c of WGAN's weight clipping.
        penalty_weight: lambda of WGAN-GP's gradient penalty.
        batch_norm: Batch norm in the DCGAN discriminator; default: on, except under
            ``wgan_gp`` (where it is an error).
        generator, discriminator: Your own networks instead (``latent_dim + num_classes ->
            dim`` and ``dim + num_classes -> 1``), e.g. to hold a generator fixed.
    """

    observed = "x"
    data_keys = ("x",)
    density = "implicit"
    engines = ("adversarial",)
    default_batch_size = 64

    def __init__(self, dim: int, latent_dim: int = 2, *, objective: str = "non_saturating",
                 architecture: str = "mlp", generator_dims: tuple[int, ...] = (128, 128),
                 discriminator_dims: tuple[int, ...] = (128, 128),
                 image_shape: tuple[int, int] | None = None, channels: int = 32,
                 num_classes: int = 0, class_prior: Tensor | None = None,
                 data_range: tuple[float, float] | None = None, label_smoothing: float = 0.0,
                 clip_value: float = 0.01, penalty_weight: float = 10.0,
                 batch_norm: bool | None = None, generator: nn.Module | None = None,
                 discriminator: nn.Module | None = None) -> None:
        super().__init__()
        GAN_OBJECTIVES[objective]  # unknown names: the registry's error with the list
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; valid values are: "
                             f"{', '.join(ARCHITECTURES)}")
        for name, value in (("dim", dim), ("latent_dim", latent_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or \
                num_classes < 0 or num_classes == 1:
            raise ValueError(f"num_classes must be 0 (unconditional) or an integer >= 2, got "
                             f"{num_classes!r}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing!r}")
        if not clip_value > 0:
            raise ValueError(f"clip_value must be > 0 (WGAN clips the critic's weights to "
                             f"[-c, c]), got {clip_value!r}")
        if not penalty_weight >= 0:
            raise ValueError(f"penalty_weight must be >= 0, got {penalty_weight!r}")
        data_range = check_data_range(data_range)
        penalised = GAN_OBJECTIVES[objective].gradient_penalty
        if batch_norm is None:
            batch_norm = not penalised
        if penalised and batch_norm:
            raise ValueError("objective='wgan_gp' with batch norm in the critic: the gradient "
                             "penalty is computed per sample, and batch norm makes each "
                             "score depend on the whole batch, so the penalty is wrong; use "
                             "batch_norm=False (layer norm, or none, is fine)")
        self.dim, self.latent_dim, self.objective_name = dim, latent_dim, objective
        self.architecture, self.num_classes = architecture, num_classes
        self.data_range, self.label_smoothing = data_range, float(label_smoothing)
        self.clip_value, self.penalty_weight = float(clip_value), float(penalty_weight)
        # MLP GANs keep image_shape too: it says how to show samples as images.
        self.image_shape = (image_shape_for(dim, image_shape) if architecture == "dcgan"
                            else image_shape)
        self.register_buffer("_anchor", torch.zeros(()))  # dtype and device of z
        if num_classes:
            self.data_keys = ("x", "y")
            prior = (torch.full((num_classes,), 1.0 / num_classes) if class_prior is None
                     else torch.as_tensor(class_prior, dtype=torch.get_default_dtype()))
            if prior.shape != (num_classes,) or (prior < 0).any():
                raise ValueError(f"class_prior must be {num_classes} non-negative numbers")
            self.register_buffer("class_prior", prior / prior.sum())
        in_generator = latent_dim + num_classes
        if generator is None:
            if architecture == "dcgan":
                generator = _DCGenerator(in_generator, self.image_shape, channels)
            else:
                generator = MLP(in_generator, dim, generator_dims)
        if discriminator is None:
            if architecture == "dcgan":
                discriminator = _DCDiscriminator(self.image_shape, channels, num_classes,
                                                 batch_norm)
            else:
                discriminator = MLP(dim + num_classes, 1, discriminator_dims,
                                    activation=functools.partial(nn.LeakyReLU, 0.2))
            if GAN_OBJECTIVES[objective].critic:
                _drop_final_bias(discriminator)
        if penalised and _has_batch_norm(discriminator):
            raise ValueError("objective='wgan_gp' with a critic that has batch norm: the "
                             "gradient penalty is per sample and batch norm mixes samples; "
                             "give the critic no batch norm (layer norm is fine)")
        self.generator, self.discriminator = generator, discriminator

    @property
    def objective(self) -> GANObjective:
        return GAN_OBJECTIVES[self.objective_name]

    @classmethod
    def from_dataset(cls, dataset: Any, *, conditional: bool = False, **kwargs: Any) -> GAN:
        """Sizes from the data; images get ``data_range`` (mapped to [-1, 1]) and their
        ``image_shape``; ``num_classes`` (conditional GAN) and ``class_prior`` from ``y``
        when ``conditional=True``. Binary data are refused: G(z) is continuous."""
        tensors, x, meta = continuous_data(
            cls, dataset, "a GAN needs continuous data",
            " (G(z) is continuous, so D would tell fakes apart by their values alone)")
        if "image_shape" in meta:
            kwargs.setdefault("image_shape", tuple(meta["image_shape"]))
            kwargs.setdefault("data_range", (float(x.min()), float(x.max())))
        if conditional:
            check_data_keys(cls.__name__ + " (conditional)", ("x", "y"), tensors)
            y = tensors["y"]
            if y.dtype.is_floating_point or (y < 0).any():
                raise ValueError("labels y must be non-negative integers for the "
                                 "conditional GAN")
            num_classes = int(y.max()) + 1
            counts = torch.bincount(y.long(), minlength=num_classes).float()
            kwargs.setdefault("num_classes", num_classes)
            kwargs.setdefault("class_prior", counts / counts.sum())
        return cls(x.shape[-1], **kwargs)

    # --- data <-> network space ----------------------------------------------------------
    def _to_unit(self, x: Tensor) -> Tensor:
        return to_unit(x, self.data_range)

    def _from_unit(self, u: Tensor) -> Tensor:
        return from_unit(u, self.data_range)

    def _labels(self, y: Tensor) -> Tensor:
        if y.dtype.is_floating_point:
            if (y != torch.round(y)).any():
                raise ValueError(f"labels y must be whole numbers 0..{self.num_classes - 1}")
            y = y.long()
        if ((y < 0) | (y >= self.num_classes)).any():
            bad = y[(y < 0) | (y >= self.num_classes)]
            raise ValueError(f"labels y must lie in 0..{self.num_classes - 1}, got "
                             f"{int(bad[0])}; this GAN was built for {self.num_classes} "
                             "classes")
        return y

    def _with_labels(self, values: Tensor, labels: Tensor | None) -> Tensor:
        if not self.num_classes:
            return values
        if labels is None:
            raise ValueError("this conditional GAN needs labels y")
        onehot = F.one_hot(labels, self.num_classes).to(values.dtype)
        return torch.cat([values, onehot.expand(*values.shape[:-1], -1)], -1)

    def generate_unit(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """G(z) in the networks' space ([-1, 1] when ``data_range`` is set)."""
        out = self.generator(self._with_labels(z, labels))
        return torch.tanh(out) if self.data_range is not None else out

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """x = G(z) in data space, (..., D)."""
        return self._from_unit(self.generate_unit(z, labels))

    def score(self, x_unit: Tensor, labels: Tensor | None = None) -> Tensor:
        """The discriminator's raw score (a logit, or a critic value) at network-space
        inputs, shaped (...,)."""
        return self.discriminator(self._with_labels(x_unit, labels)).squeeze(-1)

    def discriminate(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """D's score at data-space inputs (for plots and the optimal-discriminator test)."""
        return self.score(self._to_unit(x), labels)

    def _prior(self, like: Tensor) -> dist.Distribution:
        zeros = like.new_zeros(self.latent_dim)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    # --- Pyro model ----------------------------------------------------------------------
    def model(self, x: Tensor | None = None, y: Tensor | None = None,
              num_data: int | None = None, subsample_size: int | None = None,
              **_: Any) -> Tensor:
        """z ~ N(0, I) (and y ~ Cat(class_prior) when conditional), x = G(z, y): a
        deterministic site — the generator defines no density over x."""
        if x is not None:
            self._check_x(x)
        num = (x.shape[0] if x is not None else y.shape[0] if y is not None
               else (num_data or 1))
        like = self._anchor
        with pyro.plate("data", num, subsample_size=subsample_size, dim=-1) as idx:
            z = pyro.sample("z", self._prior(like))
            labels = None
            if self.num_classes:
                labels = pyro.sample("y", dist.Categorical(self.class_prior),
                                     obs=None if y is None
                                     else self._labels(y.index_select(0, idx)))
            # The program is G in evaluation mode: batch norm's running statistics, so
            # x_n depends on z_n alone (training uses batch statistics, in
            # adversarial_loss), and tracing the model never moves those statistics.
            with _evaluation(self.generator):
                return pyro.deterministic("x", self.generate(z, labels), event_dim=1)

    def log_prob(self, **data: Any) -> Tensor:
        raise NotImplementedError(
            "a GAN is an implicit model: x = G(z) has no tractable density (the generator "
            "maps a low-dimensional z onto a thin set), so log p(x) is not defined; for "
            "likelihoods use a flow (realnvp, maf, nsf) or an autoregressive model (exact), "
            "or a VAE (a bound)")

    # --- the two players -----------------------------------------------------------------
    def adversarial_phases(self) -> dict[str, Iterable[Tensor]]:
        return {"discriminator": list(self.discriminator.parameters()),
                "generator": list(self.generator.parameters())}

    def gradient_penalty(self, real: Tensor, fake: Tensor,
                         labels: Tensor | None = None) -> Tensor:
        """WGAN-GP's E (||grad_x C(x_hat)||_2 - 1)^2 at x_hat = e x + (1 - e) G(z),
        e ~ U(0, 1) per row (network space)."""
        weight = torch.rand(real.shape[0], 1, dtype=real.dtype, device=real.device)
        mixed = (weight * real + (1 - weight) * fake).detach().requires_grad_(True)
        scores = self.score(mixed, labels)
        (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        return ((grad.norm(dim=-1) - 1) ** 2).mean()

    def adversarial_loss(self, phase: str, batch: dict[str, Tensor]) -> Tensor:
        """``discriminator``: the objective's critic loss on a minibatch of data and as
        many generated points (plus the gradient penalty under ``wgan_gp``);
        ``generator``: the objective's generator loss on fresh samples. Samples are
        generated with the batch's labels (conditional GAN)."""
        x = batch["x"]
        self._check_x(x)
        labels = self._labels(batch["y"]) if self.num_classes else None
        z = torch.randn(x.shape[0], self.latent_dim, dtype=x.dtype, device=x.device)
        objective = self.objective
        if phase == "discriminator":
            real = self._to_unit(x)
            with torch.no_grad():
                fake = self.generate_unit(z, labels)
            loss = objective.discriminator_loss(self.score(real, labels),
                                                self.score(fake, labels),
                                                0.0 if objective.critic
                                                else self.label_smoothing)
            if objective.gradient_penalty and self.penalty_weight:
                loss = loss + self.penalty_weight * self.gradient_penalty(real, fake, labels)
            return loss
        if phase == "generator":
            return objective.generator_loss(self.score(self.generate_unit(z, labels),
                                                       labels))
        raise ValueError(f"unknown phase {phase!r}; valid phases are: discriminator, "
                         "generator")

    def adversarial_after_step(self, phase: str) -> None:
        """WGAN: clip the critic's weights to [-c, c] after each critic step."""
        if phase == "discriminator" and self.objective.clip:
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-self.clip_value, self.clip_value)

    # --- use -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, *, y: Tensor | int | None = None, **_: Any) -> Tensor:
        """x = G(z) for z ~ N(0, I), (num_samples, D), with the networks in evaluation
        mode (batch norm's running statistics). Conditional GANs take a label ``y`` (or N
        labels: (num_samples, N, D), a draw for each; default: drawn from
        ``class_prior``)."""
        like = self._anchor
        labels = None
        shape: tuple[int, ...] = (num_samples,)
        if self.num_classes:
            if y is None:
                labels = dist.Categorical(self.class_prior).sample((num_samples,))
            else:
                labels = torch.as_tensor(y, device=like.device).long()
                labels = self._labels(labels.expand(num_samples, *labels.shape))
                shape = tuple(labels.shape)
        z = self._prior(like).sample(shape)
        with _evaluation(self):
            return self.generate(z, labels)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, latent_dim={self.latent_dim}, "
                f"objective={self.objective_name!r}, architecture={self.architecture!r}, "
                f"num_classes={self.num_classes}")
