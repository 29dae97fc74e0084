"""Gaussian mixture model: fit by EM (exact E step), by SVI with the assignments summed out
(TraceEnum_ELBO), or by NUTS over Bayesian global parameters with the assignments
marginalised."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroParam, PyroSample
from torch import Tensor

from .base import GenerativeModel, check_data_keys

__all__ = ["GaussianMixture"]


class GaussianMixture(GenerativeModel):
    """p(x) = sum_k pi_k N(x | mu_k, Sigma_k), with assignment ``z`` enumerated.

    Arguments:
        num_components: K.
        dim: D.
        covariance: ``"full"`` (Sigma_k = L_k L_k^T) or ``"diag"``.
        priors: ``False`` keeps (pi, mu, Sigma) as point parameters (EM, maximum-likelihood
            SVI); ``True`` makes them latent sites with priors pi ~ Dirichlet(1),
            mu_k ~ N(0, loc_scale^2 I), scales ~ LogNormal(0, 1) and, for full covariance,
            an LKJ(2) correlation factor — the form NUTS and autoguides need.
        loc_scale: Prior sd of the means (``priors=True``).
        reg_covar: Added to covariance diagonals in the M step, as scikit-learn's
            ``reg_covar`` (default 1e-6, the same), to keep them positive definite.

    References:
        Dempster, Laird & Rubin (1977), "Maximum likelihood from incomplete data via the EM
        algorithm"; Bishop (2006), PRML section 9.2.
    """

    data_keys = ("x",)

    def engine_refusal(self, engine: str) -> str | None:
        if engine == "em" and self.priors:
            return ("this model has priors=True: its parameters are latent, so EM's point "
                    "estimates do not apply; fit it with 'nuts' or 'svi', or build it with "
                    "priors=False (gmm)")
        if engine in self.MCMC_ENGINES and not self.priors:
            return ("it has no latent sample sites to sample: MCMC needs priors on its "
                    "parameters (bayesian_gmm, not gmm)")
        return super().engine_refusal(engine)

    def __init__(self, num_components: int, dim: int, *, covariance: str = "full",
                 priors: bool = False, loc_scale: float = 10.0, reg_covar: float = 1e-6) -> None:
        super().__init__()
        if num_components < 1 or dim < 1:
            raise ValueError(f"num_components and dim must be >= 1, got {num_components}, {dim}")
        if covariance not in ("full", "diag"):
            raise ValueError(f"unknown covariance {covariance!r}; valid values are: full, diag")
        self.num_components, self.dim = num_components, dim
        self.covariance, self.priors = covariance, priors
        self.loc_scale, self.reg_covar = loc_scale, reg_covar
        # With priors the parameters are latent and p(x) needs an integral over them.
        self.density = "intractable" if priors else "exact"
        self.engines = ("svi", "nuts", "hmc", "chees", "pathfinder") if priors else ("em", "svi")
        K, D = num_components, dim
        if priors:
            self.weights = PyroSample(lambda s: dist.Dirichlet(s._ones(K)))
            self.locs = PyroSample(lambda s: dist.Normal(s._zeros(K, D), s.loc_scale)
                                   .to_event(2))
            self.scales = PyroSample(lambda s: dist.LogNormal(s._zeros(K, D), 1.0).to_event(2))
            if covariance == "full":
                self.corr_tril = PyroSample(lambda s: dist.LKJCholesky(D, s._ones() * 2.0)
                                            .expand([K]).to_event(1))
        else:
            generator = torch.Generator().manual_seed(0)
            self.weights = PyroParam(torch.full((K,), 1.0 / K), constraints.simplex)
            self.locs = PyroParam(torch.randn(K, D, generator=generator))
            if covariance == "full":
                self.scale_tril_param = PyroParam(torch.eye(D).expand(K, D, D).clone(),
                                                  constraints.lower_cholesky)
            else:
                self.scales = PyroParam(torch.ones(K, D), constraints.positive)
        self.register_buffer("_anchor", torch.zeros(()))

    # --- helpers ---------------------------------------------------------------------
    def _zeros(self, *shape: int) -> Tensor:
        return self._anchor.new_zeros(shape)

    def _ones(self, *shape: int) -> Tensor:
        return self._anchor.new_ones(shape)

    @classmethod
    def from_dataset(cls, dataset: Any, num_components: int = 3, **kwargs: Any
                     ) -> GaussianMixture:
        tensors = getattr(dataset, "tensors", dataset)
        check_data_keys(cls.__name__, cls.data_keys, tensors)
        return cls(num_components, tensors["x"].shape[-1], **kwargs)

    def _scale_tril(self) -> Tensor:
        """(…, K, D, D) Cholesky factors of the component covariances."""
        if self.priors:
            scales = self.scales
            if self.covariance == "full":
                return scales.unsqueeze(-1) * self.corr_tril
            return torch.diag_embed(scales)
        if self.covariance == "full":
            return self.scale_tril_param
        return torch.diag_embed(self.scales)

    # --- Pyro model ------------------------------------------------------------------
    def model(self, x: Tensor | None = None, num_data: int | None = None,
              subsample_size: int | None = None, **_: Any) -> None:
        if x is not None:
            self._check_x(x)
        num_data = x.shape[0] if x is not None else (num_data or 1)
        weights, locs, scale_tril = self.weights, self.locs, self._scale_tril()
        with pyro.plate("data", num_data, subsample_size=subsample_size, dim=-1) as idx:
            z = pyro.sample("z", dist.Categorical(weights),
                            infer={"enumerate": "parallel"})
            # Gather the component of each datum; works for z shaped (N,) or (K, 1) when
            # enumerated, and with draws batched on the left (NUTS, Predictive).
            loc = _gather(locs, z, 1)
            tril = _gather(scale_tril, z, 2)
            pyro.sample("x", dist.MultivariateNormal(loc, scale_tril=tril),
                        obs=None if x is None else x.index_select(0, idx))

    @torch.no_grad()
    def sample(self, num_samples: int, **_: Any) -> Tensor:
        """Draws x ~ p(x) shaped (num_samples, D)."""
        if self.priors:
            return super().sample(1, num_data=num_samples)[0]
        z = dist.Categorical(self.weights).sample((num_samples,))
        return dist.MultivariateNormal(self.locs[z], scale_tril=self._scale_tril()[z]).sample()

    # --- exact likelihood and EM -----------------------------------------------------
    def _component_log_prob(self, x: Tensor) -> Tensor:
        """(N, K) log pi_k + log N(x_n | mu_k, Sigma_k) at the current point parameters."""
        if self.priors:
            raise ValueError("exact likelihood and EM need priors=False (point parameters); "
                             "this model has priors=True, fit it with 'nuts' or 'svi'")
        comp = dist.MultivariateNormal(self.locs, scale_tril=self._scale_tril())
        return comp.log_prob(x.unsqueeze(-2)) + self.weights.log()

    def log_prob(self, x: Tensor, **_: Any) -> Tensor:
        """Exact per-datum log p(x_n), shaped (N,) (point parameters only)."""
        if self.priors:
            raise NotImplementedError("with priors=True p(x) integrates over the parameters; "
                                      "use the posterior (fit with 'nuts') and LOO instead")
        self._check_x(x)
        return self._component_log_prob(x).logsumexp(-1)

    def log_likelihood(self, x: Tensor) -> Tensor:
        """Per-datum log-likelihood (N,), used by the EM engine."""
        return self.log_prob(x)

    @torch.no_grad()
    def initialize(self, x: Tensor, *, init: str = "kmeans", seed: int = 0) -> None:
        """Set starting parameters: responsibilities from k-means labels (scikit-learn's
        default) or from random points, then one M step."""
        self._check_x(x)
        K, N = self.num_components, x.shape[0]
        if N < K:
            raise ValueError(f"need at least num_components={K} rows, got {N}")
        if init == "kmeans":
            from sklearn.cluster import KMeans

            labels = KMeans(K, n_init=1, random_state=seed).fit(x.cpu().double().numpy()).labels_
            resp = torch.nn.functional.one_hot(torch.as_tensor(labels).long(), K).to(x)
        elif init == "random":
            g = torch.Generator().manual_seed(seed)
            resp = torch.rand(N, K, generator=g).to(x)
            resp = resp / resp.sum(-1, keepdim=True)
        else:
            raise ValueError(f"unknown init {init!r}; valid values are: kmeans, random")
        self.m_step({"resp": resp, "x": x})

    @torch.no_grad()
    def set_parameters(self, weights: Tensor, locs: Tensor, covariances: Tensor) -> None:
        """Set (pi, mu, Sigma) directly, e.g. to start EM where another fitter starts."""
        self.weights = weights.clone()
        self.locs = locs.clone()
        if self.covariance == "full":
            self.scale_tril_param = torch.linalg.cholesky(covariances)
        else:
            self.scales = covariances.sqrt() if covariances.dim() == 2 else \
                torch.diagonal(covariances, dim1=-2, dim2=-1).sqrt()

    @torch.no_grad()
    def e_step(self, x: Tensor) -> dict[str, Tensor]:
        """Exact posterior responsibilities r_nk = p(z_n = k | x_n)."""
        log_joint = self._component_log_prob(x)
        log_px = log_joint.logsumexp(-1, keepdim=True)
        return {"resp": (log_joint - log_px).exp(), "x": x, "log_likelihood": log_px.sum()}

    @torch.no_grad()
    def m_step(self, stats: Mapping[str, Tensor]) -> None:
        """Closed-form maximiser of the expected complete-data log-likelihood."""
        resp, x = stats["resp"], stats["x"]
        counts = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps  # as scikit-learn: no 0/0
        locs = resp.T @ x / counts[:, None]
        diff = x.unsqueeze(1) - locs  # (N, K, D)
        if self.covariance == "full":
            cov = torch.einsum("nk,nki,nkj->kij", resp, diff, diff) / counts[:, None, None]
            cov = cov + self.reg_covar * torch.eye(self.dim, dtype=x.dtype, device=x.device)
        else:
            cov = torch.einsum("nk,nki->ki", resp, diff ** 2) / counts[:, None] + self.reg_covar
        self.set_parameters(counts / x.shape[0], locs, cov)

    def num_parameters(self) -> int:
        K, D = self.num_components, self.dim
        cov = D * (D + 1) // 2 if self.covariance == "full" else D
        return (K - 1) + K * D + K * cov

    def extra_repr(self) -> str:
        return (f"num_components={self.num_components}, dim={self.dim}, "
                f"covariance={self.covariance!r}, priors={self.priors}")


def _gather(table: Tensor, z: Tensor, event_rank: int) -> Tensor:
    """Rows of ``table`` (*batch, K, *event) picked by component labels ``z``.

    Broadcasts ``batch`` against ``z``'s shape, so it serves z shaped (N,), enumerated z
    shaped (K, 1), and draws batched on the left (table (S, 1, K, D) against z (S, N)).
    """
    num_components = table.shape[-event_rank - 1]
    batch, event = table.shape[: -event_rank - 1], table.shape[table.dim() - event_rank:]
    shape = torch.broadcast_shapes(batch, z.shape)
    expanded = table.expand(*shape, num_components, *event)
    index = z.expand(shape).reshape(*shape, 1, *([1] * event_rank)).expand(*shape, 1, *event)
    return expanded.gather(len(shape), index).squeeze(len(shape))
