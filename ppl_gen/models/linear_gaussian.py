"""Linear-Gaussian latent-variable models: probabilistic PCA and factor analysis.

The seed's "models with latent variables": p(z) = N(0, I) simple, p(x | z) = N(W z + mu, Psi)
linear-Gaussian, so the posterior p(z | x) is Gaussian and EM's E step is exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroParam
from torch import Tensor

from .base import GenerativeModel, check_data_keys

__all__ = ["PPCA", "FactorAnalysis", "ppca_closed_form"]


class _LinearGaussian(GenerativeModel):
    """x = W z + mu + eps, z ~ N(0, I_Q), eps ~ N(0, Psi); Psi isotropic or diagonal."""
    # MCMC samples z | x with the parameters held fixed (their exact posterior is Gaussian:
    # a test of the samplers); on a large data set that is many latent dimensions.
    engines = ("em", "svi", "nuts", "hmc", "chees", "pathfinder")

    data_keys = ("x",)
    has_local_guide = True
    noise: str = "isotropic"

    def __init__(self, dim: int, latent_dim: int, *, min_noise_var: float = 1e-6) -> None:
        super().__init__()
        if not 1 <= latent_dim <= dim:
            raise ValueError(f"latent_dim must lie in [1, dim={dim}], got {latent_dim}")
        if min_noise_var < 0:
            raise ValueError(f"min_noise_var must be >= 0, got {min_noise_var}")
        self.dim, self.latent_dim = dim, latent_dim
        # A floor on the noise variance keeps the likelihood finite when a column is
        # constant (the border pixels of digits), as scikit-learn's FactorAnalysis does.
        self.min_noise_var = min_noise_var
        generator = torch.Generator().manual_seed(0)
        self.loc = PyroParam(torch.zeros(dim))
        self.weight = PyroParam(0.1 * torch.randn(dim, latent_dim, generator=generator))
        noise_shape = () if self.noise == "isotropic" else (dim,)
        self.noise_var = PyroParam(torch.ones(noise_shape), constraints.positive)

    @classmethod
    def from_dataset(cls, dataset: Any, latent_dim: int = 2, **kwargs: Any) -> _LinearGaussian:
        tensors = getattr(dataset, "tensors", dataset)
        check_data_keys(cls.__name__, cls.data_keys, tensors)
        return cls(tensors["x"].shape[-1], latent_dim, **kwargs)

    def _noise_diag(self) -> Tensor:
        return self.noise_var.expand(self.dim)

    # --- Pyro model / exact guide ----------------------------------------------------
    def model(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, **_: Any) -> None:
        if x is not None:
            self._check_x(x)
        num_data = x.shape[0] if x is not None else (num_data or 1)
        weight, loc, noise_sd = self.weight, self.loc, self._noise_diag().sqrt()
        with pyro.plate("data", num_data, subsample_size=subsample_size, dim=-1) as idx:
            z = pyro.sample("z", dist.Normal(loc.new_zeros(self.latent_dim), 1.0).to_event(1))
            mean = (weight * z.unsqueeze(-2)).sum(-1) + loc
            pyro.sample("x", dist.Normal(mean, noise_sd).to_event(1),
                        obs=None if x is None else x.index_select(0, idx))

    def guide(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, **_: Any) -> None:
        """The exact posterior q(z | x) = p(z | x) at the current parameters."""
        if x is None:
            return
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size, dim=-1) as idx:
            mean, cov = self.posterior(x.index_select(0, idx))
            pyro.sample("z", dist.MultivariateNormal(mean, covariance_matrix=cov))

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (N, Q) and covariance (Q, Q) of p(z | x): G = (I + W^T Psi^-1 W)^-1,
        E[z] = G W^T Psi^-1 (x - mu)."""
        w_scaled = self.weight / self._noise_diag().unsqueeze(-1)  # Psi^-1 W
        eye = torch.eye(self.latent_dim, dtype=x.dtype, device=x.device)
        cov = torch.linalg.inv(eye + self.weight.T @ w_scaled)
        cov = 0.5 * (cov + cov.T)
        mean = (x - self.loc) @ w_scaled @ cov
        return mean, cov

    # --- exact likelihood --------------------------------------------------------------
    def marginal(self) -> dist.MultivariateNormal:
        """p(x) = N(mu, W W^T + Psi)."""
        cov = self.weight @ self.weight.T + torch.diag(self._noise_diag())
        return dist.MultivariateNormal(self.loc, covariance_matrix=cov)

    def log_prob(self, x: Tensor, **_: Any) -> Tensor:
        """Exact per-datum log p(x_n), shaped (N,)."""
        self._check_x(x)
        return self.marginal().log_prob(x)

    def log_likelihood(self, x: Tensor) -> Tensor:
        return self.log_prob(x)

    @torch.no_grad()
    def sample(self, num_samples: int, **_: Any) -> Tensor:
        return self.marginal().sample((num_samples,))

    # --- EM ----------------------------------------------------------------------------
    @torch.no_grad()
    def initialize(self, x: Tensor, *, init: str = "pca", seed: int = 0) -> None:
        """mu = sample mean; W from the top principal directions (``"pca"``) or random."""
        self._check_x(x)
        self.loc = x.mean(0)
        centred = x - self.loc
        if init == "pca" or init == "kmeans":  # "kmeans" is the engine default; PCA fits here
            _, s, vt = torch.linalg.svd(centred, full_matrices=False)
            scale = s[: self.latent_dim] / math.sqrt(x.shape[0])
            self.weight = vt[: self.latent_dim].T * scale * 0.5
        elif init == "random":
            g = torch.Generator().manual_seed(seed)
            self.weight = torch.randn(self.dim, self.latent_dim, generator=g).to(x)
        else:
            raise ValueError(f"unknown init {init!r}; valid values are: pca, random")
        var = centred.var(0, unbiased=False).clamp_min(self.min_noise_var)
        self.noise_var = var.mean() if self.noise == "isotropic" else var.clone()

    @torch.no_grad()
    def e_step(self, x: Tensor) -> dict[str, Tensor]:
        """Sufficient statistics of the exact posterior: sum E[z_n] (x_n - mu)^T and
        sum E[z_n z_n^T]."""
        mean, cov = self.posterior(x)
        centred = x - self.loc
        return {"zx": mean.T @ centred, "zz": x.shape[0] * cov + mean.T @ mean,
                "xx_diag": (centred ** 2).sum(0), "num_data": torch.tensor(x.shape[0])}

    @torch.no_grad()
    def m_step(self, stats: Mapping[str, Tensor]) -> None:
        """W = (sum (x-mu) E[z]^T)(sum E[z z^T])^-1; Psi = diag(S - W sum E[z](x-mu)^T)/N."""
        zx, zz, num_data = stats["zx"], stats["zz"], float(stats["num_data"])
        weight = torch.linalg.solve(zz, zx).T  # (D, Q)
        resid = (stats["xx_diag"] - (weight * zx.T).sum(-1)) / num_data  # (D,)
        self.weight = weight
        floor = self.min_noise_var
        self.noise_var = (resid.mean().clamp_min(floor) if self.noise == "isotropic"
                          else resid.clamp_min(floor))

    def num_parameters(self) -> int:
        D, Q = self.dim, self.latent_dim
        noise = 1 if self.noise == "isotropic" else D
        return D + D * Q - Q * (Q - 1) // 2 + noise  # W up to rotation

    def extra_repr(self) -> str:
        return f"dim={self.dim}, latent_dim={self.latent_dim}, noise={self.noise!r}"


class PPCA(_LinearGaussian):
    """Probabilistic PCA: x = W z + mu + eps with isotropic noise sigma^2 I.

    Arguments:
        dim: Data dimension D.
        latent_dim: Q <= D.
        min_noise_var: Floor on the noise variance (default 1e-6).

    References:
        Tipping & Bishop (1999), "Probabilistic principal component analysis", JRSS B 61(3).
    """

    noise = "isotropic"


class FactorAnalysis(_LinearGaussian):
    """Factor analysis: x = W z + mu + eps with diagonal noise Psi.

    References:
        Rubin & Thayer (1982), "EM algorithms for ML factor analysis", Psychometrika 47(1).
    """

    noise = "diagonal"


def ppca_closed_form(x: Tensor, latent_dim: int) -> dict[str, Tensor]:
    """Tipping & Bishop's maximum-likelihood solution (their eq. 7-8).

    sigma^2 = mean of the D - Q smallest eigenvalues of the sample covariance S;
    W = U_Q (Lambda_Q - sigma^2 I)^{1/2}; returns loc, weight, noise_var and the
    maximised mean log-likelihood.
    """
    num_data, dim = x.shape
    loc = x.mean(0)
    cov = (x - loc).T @ (x - loc) / num_data
    evals, evecs = torch.linalg.eigh(cov)
    evals, evecs = evals.flip(0), evecs.flip(1)
    noise_var = evals[latent_dim:].mean()
    weight = evecs[:, :latent_dim] * (evals[:latent_dim] - noise_var).clamp_min(0).sqrt()
    model_cov = weight @ weight.T + noise_var * torch.eye(dim, dtype=x.dtype)
    mean_ll = dist.MultivariateNormal(loc, covariance_matrix=model_cov).log_prob(x).mean()
    return {"loc": loc, "weight": weight, "noise_var": noise_var, "mean_log_likelihood": mean_ll}
