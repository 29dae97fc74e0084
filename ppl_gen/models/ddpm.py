"""Denoising diffusion probabilistic models (Ho et al. 2020) as a Pyro model/guide pair.

The *guide* is the fixed forward chain q(x_{1:T} | x_0) = prod_t N(sqrt(1 - beta_t) x_{t-1},
beta_t I) (no parameters); the *model* is the learned reverse chain p(x_T) = N(0, I),
p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I), with x_0 the observed site. So
Pyro's ELBO of the pair *is* the DDPM bound

    -log p(x_0) <= L_T + sum_{t>=2} L_{t-1} + L_0,

L_T = KL(q(x_T | x_0) || p(x_T)), L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)),
L_0 = -log p_theta(x_0 | x_1) — estimated by Monte Carlo over the whole chain. Two cheaper
objectives are named losses of the SVI engine (``SVIConfig.loss``):

- ``"ddpm_rb"``: the same bound, Rao-Blackwellised: one timestep t ~ U{1..T} per datum,
  x_t drawn from q(x_t | x_0) in closed form, and that term's Gaussian KL in closed form,
  times T, plus L_T exactly — unbiased for the bound, with far lower variance;
- ``"ddpm_simple"`` (the default, Ho et al.'s Algorithm 1): ||eps - eps_theta(x_t, t)||^2,
  the bound's terms with their weights dropped.

mu_theta is parameterised by the noise predictor: mu = (x_t - beta_t / sqrt(1 - abar_t) *
eps_theta(x_t, t)) / sqrt(alpha_t), and sigma_t^2 = beta_t. :meth:`DDPM.bound` evaluates the
bound per datum and per timestep (closed-form KLs, Monte Carlo over x_t only) in nats and
bits per dimension; :meth:`DDPM.sample` runs Algorithm 2, on all T steps or a strided
subset (DDPM's ancestral sampler on the coarser chain), or DDIM (Song et al. 2021).

For images with K grey levels, ``decoder="discretized"`` makes L_0 Ho et al.'s discretised
decoder (their eq. 13): p(x_0 | x_1) integrates N(mu_theta(x_1, 1), sigma_1^2) over each
pixel's bin, the edge bins reaching to +-inf, so the bound is on the *discrete* data's code
length and needs no dequantisation.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from .._rng import seeded
from ..nn import (
    TimeEmbedding,
    UNet,
    check_data_range,
    from_unit,
    image_shape_for,
    log_jacobian,
    to_unit,
)
from .base import GenerativeModel, continuous_data

__all__ = ["DDPM", "beta_schedule", "DDPMBound", "DiscretizedNormal", "SCHEDULES",
           "DDPM_OBJECTIVES", "DECODERS", "DENOISERS"]

SCHEDULES = ("linear", "cosine")
DDPM_OBJECTIVES = ("elbo", "ddpm_rb", "ddpm_simple")
DECODERS = ("gaussian", "discretized")
DENOISERS = ("mlp", "unet")


class DiscretizedNormal(dist.TorchDistribution):
    """N(loc, scale) integrated over the bins of ``num_levels`` evenly spaced values on
    [low, high] (Ho et al. 2020, eq. 13): each level's bin reaches half a step either side,
    the first and last to -inf and +inf, so the probabilities of the levels sum to one.
    ``log_prob`` takes values on the grid; ``sample`` draws the normal and rounds to it."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = False

    def __init__(self, loc: Tensor, scale: Tensor, num_levels: int, low: float = -1.0,
                 high: float = 1.0, validate_args: bool | None = None) -> None:
        self.loc, self.scale = broadcast_all(loc, scale)
        self.num_levels, self.low, self.high = num_levels, float(low), float(high)
        self.half = (self.high - self.low) / (2 * (num_levels - 1))
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape: Any, _instance: Any = None) -> DiscretizedNormal:
        shape = torch.Size(batch_shape)
        return DiscretizedNormal(self.loc.expand(shape), self.scale.expand(shape),
                                 self.num_levels, self.low, self.high)

    def log_prob(self, value: Tensor) -> Tensor:
        upper = (value + self.half - self.loc) / self.scale
        lower = (value - self.half - self.loc) / self.scale
        top = value > self.high - self.half  # the last level: its bin reaches +inf
        bottom = value < self.low + self.half  # the first: from -inf
        ndtr = torch.special.ndtr
        # P(lower < Z < upper), from the side of the mean that keeps its precision
        middle = torch.where(lower > 0, ndtr(-lower) - ndtr(-upper), ndtr(upper) - ndtr(lower))
        log_middle = middle.clamp(min=1e-12).log()
        log_top = torch.special.log_ndtr(-lower)
        log_bottom = torch.special.log_ndtr(upper)
        return torch.where(top, log_top, torch.where(bottom, log_bottom, log_middle))

    def sample(self, sample_shape: Any = ()) -> Tensor:
        with torch.no_grad():
            x = torch.normal(self.loc.expand(self._extended_shape(sample_shape)),
                             self.scale.expand(self._extended_shape(sample_shape)))
            step = 2 * self.half
            level = ((x - self.low) / step).round().clamp(0, self.num_levels - 1)
            return self.low + level * step


def beta_schedule(name: str, num_steps: int) -> Tensor:
    """beta_1..beta_T (float64): ``"linear"`` from 1e-4 to 0.02 scaled to T steps (Ho et
    al. 2020, for T = 1000), or ``"cosine"`` (Nichol & Dhariwal 2021, s = 0.008, clipped at
    0.999)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid values are: {', '.join(SCHEDULES)}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if name == "linear":
        scale = 1000 / num_steps
        return torch.linspace(1e-4 * scale, min(0.02 * scale, 0.999), num_steps,
                              dtype=torch.float64)
    s = 0.008
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    abar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


class _Denoiser(nn.Module):
    """eps_theta(x_t, t): an MLP on [x_t, embed(t)] with SiLU activations."""

    def __init__(self, dim: int, hidden_dims: tuple[int, ...], embedding_dim: int) -> None:
        super().__init__()
        self.embed = TimeEmbedding(embedding_dim)
        layers: list[nn.Module] = []
        width = dim + 2 * (embedding_dim // 2)
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        embedding = self.embed(t).to(x.dtype).expand(*x.shape[:-1], -1)
        return self.net(torch.cat([x, embedding], -1))


def _make_denoiser(denoiser: nn.Module | str | None, dim: int, hidden_dims: tuple[int, ...],
                   embedding_dim: int, image_shape: tuple[int, ...] | None,
                   unet_channels: tuple[int, ...]) -> nn.Module:
    if isinstance(denoiser, nn.Module):
        if image_shape is not None:
            raise ValueError("image_shape applies to denoiser='unet' only; leave it out "
                             "with your own denoiser module")
        return denoiser
    if denoiser not in (None, *DENOISERS):
        raise ValueError(f"unknown denoiser {denoiser!r}; valid values are "
                         f"{', '.join(map(repr, DENOISERS))} or your own eps_theta(x, t) "
                         "module")
    if denoiser == "unet":
        if image_shape is not None and len(image_shape) == 3:
            shape = tuple(int(v) for v in image_shape)
            if math.prod(shape) != dim:
                raise ValueError(f"image_shape {shape} does not have dim={dim} values")
        else:
            shape = image_shape_for(dim, None if image_shape is None else tuple(image_shape))
        return UNet(shape, unet_channels, embedding_dim=embedding_dim)
    if image_shape is not None:
        raise ValueError("image_shape is for denoiser='unet'; pass denoiser='unet' with it, "
                         "or leave it out")
    return _Denoiser(dim, hidden_dims, embedding_dim)


class DDPMBound(NamedTuple):
    """The DDPM bound per datum.

    Attributes:
        nll: The bound on -log p(x_0) in nats, (N,) (data space: the [-1, 1] scaling's
            Jacobian included; with the discretised decoder, on the levels' probabilities).
        bits_per_dim: ``nll / (D log 2)``.
        terms: (T + 1, N): row 0 is L_0, row t-1 is L_{t-1} for t = 2..T, row T is L_T.
    """

    nll: Tensor
    bits_per_dim: Tensor
    terms: Tensor


class DDPM(GenerativeModel):
    """A DDPM with an MLP or U-Net noise predictor.

    Arguments:
        dim: Data dimensions D.
        num_steps: T.
        schedule: ``"linear"`` or ``"cosine"`` betas.
        hidden_dims: Widths of the MLP noise predictor.
        embedding_dim: Width of the sinusoidal time embedding.
        data_range: (low, high) of the data, mapped to [-1, 1] (images); ``None`` keeps the
            data as they are (2-D points, standardised tables).
        denoiser: ``"mlp"`` (the default: an MLP on [x_t, embed(t)], for points and
            tables), ``"unet"`` (a small U-Net, :class:`ppl_gen.nn.UNet`, for images), or
            your own eps_theta(x, t) module (e.g. the closed-form optimum).
        image_shape: (H, W) or (C, H, W) of the images for ``denoiser="unet"`` (default:
            the square of ``dim``; ``from_dataset`` reads it from the data).
        unet_channels: Feature channels per resolution of the U-Net (each entry after the
            first halves the resolution).
        decoder: ``"gaussian"`` (a density on continuous or dequantised data) or
            ``"discretized"`` (images whose pixels take ``num_levels`` evenly spaced values
            on ``data_range``: the bound is then on the discrete data, in bits per pixel,
            with no dequantisation).
        num_levels: The number of grey levels K for ``decoder="discretized"`` (17 for
            scikit-learn's digits, 256 for 8-bit images).
    """

    observed = "x"
    data_keys = ("x",)
    density = "bound"
    has_local_guide = True
    engines = ("svi",)
    default_loss = "ddpm_simple"
    #: Summaries evaluate the bound with one x_t draw per timestep: it is Rao-Blackwellised
    #: already (a VAE's 100 importance samples would mean 100 x T network passes per row).
    summary_log_prob_options: ClassVar[dict[str, Any]] = {"num_samples": 1}
    sample_figure = True

    def __init__(self, dim: int, num_steps: int = 1000, *, schedule: str = "linear",
                 hidden_dims: tuple[int, ...] = (128, 128, 128), embedding_dim: int = 32,
                 data_range: tuple[float, float] | None = None,
                 denoiser: nn.Module | str | None = None, decoder: str = "gaussian",
                 num_levels: int | None = None, image_shape: tuple[int, ...] | None = None,
                 unet_channels: tuple[int, ...] = (16, 32, 32)) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        betas = beta_schedule(schedule, num_steps)
        data_range = check_data_range(data_range)
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; valid decoders are: "
                             f"{', '.join(DECODERS)}")
        if decoder == "discretized":
            if data_range is None:
                raise ValueError("decoder='discretized' is for images: give data_range=(low, "
                                 "high), the values of the darkest and brightest level")
            if isinstance(num_levels, bool) or not isinstance(num_levels, int) or \
                    num_levels < 2:
                raise ValueError(f"decoder='discretized' needs num_levels, the number of "
                                 f"grey levels (an integer >= 2: 17 for the digits, 256 for "
                                 f"8-bit images), got {num_levels!r}")
        elif num_levels is not None:
            raise ValueError("num_levels applies to decoder='discretized' only; pass "
                             "decoder='discretized' with it, or leave it out")
        self.decoder, self.num_levels = decoder, num_levels
        self.dim, self.num_steps, self.schedule = dim, num_steps, schedule
        self.data_range = data_range
        dtype = torch.get_default_dtype()
        alphas = 1 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
        # index t-1 holds timestep t's values (t = 1..T)
        for name, value in (("betas", betas), ("alphas", alphas), ("abar", abar),
                            ("abar_prev", abar_prev),
                            ("posterior_var", betas * (1 - abar_prev) / (1 - abar))):
            self.register_buffer(name, value.to(dtype))
        self.denoiser = _make_denoiser(denoiser, dim, tuple(hidden_dims), embedding_dim,
                                       image_shape, tuple(unet_channels))

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> DDPM:
        """Sizes from the data; images (``meta["image_shape"]``) are mapped to [-1, 1]."""
        _, x, meta = continuous_data(cls, dataset, "DDPM here has a Gaussian decoder "
                                     "p(x_0 | x_1) for continuous data")
        if "image_shape" in meta:
            kwargs.setdefault("data_range", (float(x.min()), float(x.max())))
            if kwargs.get("denoiser") == "unet":
                kwargs.setdefault("image_shape", tuple(meta["image_shape"]))
        return cls(x.shape[-1], **kwargs)

    def _check_x(self, x: Tensor) -> None:
        super()._check_x(x)
        if self.decoder != "discretized":
            return
        low, high = self.data_range
        level = (x - low) / (high - low) * (self.num_levels - 1)
        off = (level - level.round()).abs()
        if bool((level < -1e-4).any() or (level > self.num_levels - 1 + 1e-4).any()
                or (off > 1e-3).any()):
            raise ValueError(f"x is not on the grid of {self.num_levels} levels on "
                             f"[{low:g}, {high:g}] that decoder='discretized' models "
                             f"(worst distance {float(off.max()):.3g} levels; dequantised "
                             "data?): load the images without dequantize=True, or use "
                             "decoder='gaussian'")

    # --- the chain's closed forms --------------------------------------------------------
    def _to_unit(self, x: Tensor) -> Tensor:
        return to_unit(x, self.data_range)

    def _from_unit(self, u: Tensor) -> Tensor:
        return from_unit(u, self.data_range)

    def _log_jacobian(self) -> float:
        """log |d unit / d x| summed over dimensions (0 without a data range)."""
        return log_jacobian(self.dim, self.data_range)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (network space; t in 1..T)."""
        abar = self.abar[t - 1].unsqueeze(-1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def q_posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0) (t >= 2)."""
        i = t - 1
        beta, alpha = self.betas[i].unsqueeze(-1), self.alphas[i].unsqueeze(-1)
        abar, abar_prev = self.abar[i].unsqueeze(-1), self.abar_prev[i].unsqueeze(-1)
        mean = (abar_prev.sqrt() * beta / (1 - abar)) * x0 \
            + (alpha.sqrt() * (1 - abar_prev) / (1 - abar)) * xt
        return mean, self.posterior_var[i].unsqueeze(-1).expand_as(mean)

    def p_mean(self, xt: Tensor, t: Tensor, denoiser: nn.Module | None = None) -> Tensor:
        """mu_theta(x_t, t) from the predicted noise (``denoiser``: ``self.denoiser``
        looked up once by a caller that loops over timesteps: under Pyro each lookup of a
        plain submodule emits a param message per tensor, ~1 ms for the U-Net)."""
        i = t - 1
        beta, alpha, abar = (v[i].unsqueeze(-1) for v in (self.betas, self.alphas, self.abar))
        eps = (self.denoiser if denoiser is None else denoiser)(xt, t)
        return (xt - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()

    def p_scale(self, t: Tensor) -> Tensor:
        """sigma_t = sqrt(beta_t)."""
        return self.betas[t - 1].sqrt()

    # --- Pyro model / guide --------------------------------------------------------------
    def _timesteps(self, t: int, like: Tensor) -> Tensor:
        return torch.full(like.shape[:-1], t, dtype=torch.long, device=like.device)

    def model(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, ddpm_objective: str = "elbo",
              **_: Any) -> Tensor | None:
        """The reverse chain x_T -> ... -> x_1 -> x_0 (``"elbo"``), or one of the
        per-timestep objectives as a ``pyro.factor`` (``"ddpm_rb"``, ``"ddpm_simple"``)."""
        if ddpm_objective not in DDPM_OBJECTIVES:
            raise ValueError(f"unknown ddpm_objective {ddpm_objective!r}; valid values are: "
                             f"{', '.join(DDPM_OBJECTIVES)}")
        if x is not None:
            self._check_x(x)
        num = x.shape[0] if x is not None else (num_data or 1)
        like = self.betas
        with pyro.plate("data", num, subsample_size=subsample_size, dim=-1) as idx:
            x0 = None if x is None else self._to_unit(x.index_select(0, idx))
            if ddpm_objective != "elbo":
                if x0 is None:
                    raise ValueError(f"ddpm_objective={ddpm_objective!r} trains on data: "
                                     "pass x")
                pyro.factor(ddpm_objective, -self._objective(x0, ddpm_objective))
                return None
            denoiser = self.denoiser
            zeros = like.new_zeros(len(idx), self.dim)
            xt = pyro.sample(f"x_{self.num_steps}",
                             dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            for t in range(self.num_steps, 1, -1):
                steps = self._timesteps(t, xt)
                xt = pyro.sample(f"x_{t - 1}", dist.Normal(
                    self.p_mean(xt, steps, denoiser), self.p_scale(steps).unsqueeze(-1)
                    .expand(*xt.shape)).to_event(1))
            steps = self._timesteps(1, xt)
            mean = self.p_mean(xt, steps, denoiser)
            scale = self.p_scale(steps).unsqueeze(-1).expand(*mean.shape)
            obs = None if x is None else x.index_select(0, idx)
            if self.data_range is None:
                return pyro.sample("x", dist.Normal(mean, scale).to_event(1), obs=obs)
            # The decoder in data space: unit = 2 (x - low) / (high - low) - 1, affine.
            low, high = self.data_range
            half = (high - low) / 2
            if self.decoder == "discretized":
                return pyro.sample("x", DiscretizedNormal(
                    low + (mean + 1) * half, scale * half, self.num_levels, low, high
                ).to_event(1), obs=obs)
            return pyro.sample("x", dist.Normal(low + (mean + 1) * half,
                                                scale * half).to_event(1), obs=obs)

    def guide(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, ddpm_objective: str = "elbo",
              **_: Any) -> None:
        """The fixed forward chain q(x_{1:T} | x_0) (empty for the per-timestep
        objectives, which draw x_t in closed form)."""
        if x is None or ddpm_objective != "elbo":
            return
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size, dim=-1) as idx:
            previous = self._to_unit(x.index_select(0, idx))
            for t in range(1, self.num_steps + 1):
                beta = self.betas[t - 1]
                previous = pyro.sample(f"x_{t}", dist.Normal(
                    (1 - beta).sqrt() * previous,
                    beta.sqrt().expand(*previous.shape)).to_event(1))

    # --- objectives and the bound --------------------------------------------------------
    def _kl_terms(self, x0: Tensor, t: Tensor, xt: Tensor,
                  denoiser: nn.Module | None = None) -> Tensor:
        """L_{t-1} (t >= 2) or L_0 (t = 1) per datum, network space."""
        mean = self.p_mean(xt, t, denoiser)
        var = self.betas[t - 1].unsqueeze(-1)
        post_mean, post_var = self.q_posterior(x0, xt, t.clamp(min=2))
        kl = 0.5 * (torch.log(var / post_var) + (post_var + (post_mean - mean) ** 2) / var
                    - 1).sum(-1)
        if self.decoder == "discretized":
            nll0 = -DiscretizedNormal(mean, var.sqrt().expand_as(mean),
                                      self.num_levels).log_prob(x0).sum(-1)
        else:
            nll0 = -dist.Normal(mean, var.sqrt().expand_as(mean)).log_prob(x0).sum(-1)
        return torch.where(t == 1, nll0, kl)

    def _prior_term(self, x0: Tensor) -> Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) per datum."""
        abar = self.abar[-1]
        mean, var = abar.sqrt() * x0, (1 - abar)
        return 0.5 * (var + mean ** 2 - 1 - torch.log(var)).sum(-1)

    def _objective(self, x0: Tensor, name: str) -> Tensor:
        t = torch.randint(1, self.num_steps + 1, x0.shape[:-1], device=x0.device)
        noise = torch.randn_like(x0)
        xt = self.q_sample(x0, t, noise)
        if name == "ddpm_simple":
            return ((noise - self.denoiser(xt, t)) ** 2).sum(-1)
        # Rao-Blackwellised bound, network space (the Jacobian is a constant)
        return self.num_steps * self._kl_terms(x0, t, xt) + self._prior_term(x0)

    @torch.no_grad()
    def bound(self, x: Tensor, *, num_samples: int = 1, seed: int | None = 0,
              batch_size: int = 1024) -> DDPMBound:
        """The DDPM bound on -log p(x) per datum and per timestep: every L_{t-1} and L_0
        with x_t ~ q(x_t | x_0) (``num_samples`` draws averaged), L_T exactly; in data
        space (the Jacobian of the [-1, 1] map included)."""
        self._check_x(x)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or \
                num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        rows, denoiser = [], self.denoiser
        with seeded(seed):
            for start in range(0, x.shape[0], batch_size):
                x0 = self._to_unit(x[start:start + batch_size])
                terms = x0.new_zeros(self.num_steps + 1, x0.shape[0])
                for t in range(1, self.num_steps + 1):
                    steps = self._timesteps(t, x0)
                    total = x0.new_zeros(x0.shape[0])
                    for _ in range(num_samples):
                        xt = self.q_sample(x0, steps, torch.randn_like(x0))
                        total += self._kl_terms(x0, steps, xt, denoiser)
                    terms[t - 1] = total / num_samples
                terms[-1] = self._prior_term(x0)
                rows.append(terms)
        terms = torch.cat(rows, 1)
        # a density's bound moves to data space with the map's Jacobian; the discretised
        # decoder's bound is on probabilities of the levels, the same in either space
        nll = terms.sum(0) - (self._log_jacobian() if self.decoder == "gaussian" else 0.0)
        return DDPMBound(nll, nll / (self.dim * math.log(2)), terms)

    def log_prob(self, x: Tensor, *, num_samples: int = 1, seed: int | None = 0,
                 **_: Any) -> Tensor:
        """Minus the DDPM bound: a lower bound on log p(x) (``density="bound"``)."""
        return -self.bound(x, num_samples=num_samples, seed=seed).nll

    # --- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, *, num_steps: int | None = None,
               method: str = "ancestral", eta: float | None = None, **_: Any) -> Tensor:
        """Draw ``num_samples`` points in data space, (num_samples, D).

        Arguments:
            num_samples: How many.
            num_steps: Denoising steps S <= T (default T). With S < T the chain is
                strided: timesteps tau_1 < ... < tau_S evenly spaced.
            method: ``"ancestral"`` — Algorithm 2 of Ho et al. (2020) on the sub-chain
                (betas recomputed from abar on the taus, sigma^2 = beta); ``"ddim"`` — the
                DDIM update of Song et al. (2021, eq. 12): x_{prev} = sqrt(abar_prev) x0_hat
                + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z, with x0_hat the denoiser's
                estimate of x_0 and sigma = eta sqrt((1 - abar_prev) / (1 - abar)
                (1 - abar / abar_prev)).
            eta: DDIM only (default 0: deterministic, the probability-flow ODE's first-order
                step, which stays accurate with far fewer steps); 1 is as stochastic as the
                ancestral sampler.
        """
        steps = self.num_steps if num_steps is None else num_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or \
                not 1 <= steps <= self.num_steps:
            raise ValueError(f"num_steps must be an integer in 1..{self.num_steps}, got "
                             f"{num_steps!r}")
        if method not in ("ancestral", "ddim"):
            raise ValueError(f"unknown method {method!r}; valid methods are 'ancestral' "
                             "(Ho et al. 2020) and 'ddim' (Song et al. 2021)")
        if eta is not None and method != "ddim":
            raise ValueError("eta sets the noise of the DDIM sampler; pass method='ddim' "
                             "with it, or leave eta out")
        eta = 0.0 if eta is None else eta
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or \
                not math.isfinite(eta) or eta < 0:
            raise ValueError(f"eta must be a finite number >= 0 (0: deterministic DDIM, 1: "
                             f"as noisy as ancestral sampling), got {eta!r}")
        taus = torch.linspace(1, self.num_steps, steps).round().long().unique()
        abar = self.abar[taus - 1]
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        x = torch.randn(num_samples, self.dim, dtype=self.betas.dtype,
                        device=self.betas.device)
        denoiser = self.denoiser
        for k in range(len(taus) - 1, -1, -1):
            t = torch.full((num_samples,), int(taus[k]), dtype=torch.long, device=x.device)
            eps = denoiser(x, t)
            if method == "ancestral":
                alpha = abar[k] / abar_prev[k]
                beta = 1 - alpha
                mean = (x - beta / (1 - abar[k]).sqrt() * eps) / alpha.sqrt()
                x = mean + (beta.sqrt() * torch.randn_like(x) if k > 0 else 0)
                continue
            x0 = (x - (1 - abar[k]).sqrt() * eps) / abar[k].sqrt()
            sigma = eta * ((1 - abar_prev[k]) / (1 - abar[k])
                           * (1 - abar[k] / abar_prev[k])).sqrt()
            x = abar_prev[k].sqrt() * x0 + (1 - abar_prev[k] - sigma ** 2).clamp(
                min=0).sqrt() * eps
            if eta > 0 and k > 0:
                x = x + sigma * torch.randn_like(x)
        return self._from_unit(x)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_steps={self.num_steps}, schedule={self.schedule!r}, "
                f"data_range={self.data_range}, decoder={self.decoder!r}"
                + (f", num_levels={self.num_levels}" if self.num_levels else ""))
