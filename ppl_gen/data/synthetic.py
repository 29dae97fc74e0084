"""Generated data sets with known truth (seeded, so deterministic)."""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian_mixture", "two_moons", "linear_regression", "gaussian_ring",
           "gaussian_grid"]


def gaussian_mixture(split: str = "all", seed: int = 0, *, num_data: int = 600,
                     num_components: int = 3, dim: int = 2, separation: float = 4.0
                     ) -> tuple[dict, dict]:
    """Mixture of Gaussians with random full covariances; ``x`` (N, dim), true labels ``y``."""
    if num_components < 1 or dim < 1 or num_data < num_components:
        raise ValueError("need num_components >= 1, dim >= 1 and num_data >= num_components")
    rng = np.random.default_rng(seed)
    locs = rng.normal(scale=separation, size=(num_components, dim))
    factors = rng.normal(scale=0.6, size=(num_components, dim, dim))
    covs = factors @ factors.transpose(0, 2, 1) + 0.3 * np.eye(dim)
    weights = rng.dirichlet(5.0 * np.ones(num_components))
    y = rng.choice(num_components, size=num_data, p=weights)
    noise = rng.normal(size=(num_data, dim))
    x = locs[y] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[y], noise)
    meta = {"true_locs": locs.tolist(), "true_covs": covs.tolist(),
            "true_weights": weights.tolist()}
    return {"x": x, "y": y.astype(np.int64)}, meta


def two_moons(split: str = "all", seed: int = 0, *, num_data: int = 1000,
              noise: float = 0.08) -> tuple[dict, dict]:
    """scikit-learn's interleaving half circles; ``x`` (N, 2), moon labels ``y``."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=num_data, noise=noise, random_state=seed)
    return {"x": x, "y": y.astype(np.int64)}, {}


def linear_regression(split: str = "all", seed: int = 0, *, num_data: int = 50,
                      num_features: int = 3, noise_scale: float = 1.0,
                      correlation: float = 0.0) -> tuple[dict, dict]:
    """y = x @ w + b + noise with equicorrelated features (``correlation`` in [0, 1)).

    High ``correlation`` gives a strongly correlated posterior over ``w`` — the case where a
    mean-field guide fails and ``compare`` should say so.
    """
    if not 0 <= correlation < 1:
        raise ValueError(f"correlation must lie in [0, 1), got {correlation}")
    rng = np.random.default_rng(seed)
    cov = (1 - correlation) * np.eye(num_features) + correlation
    x = rng.normal(size=(num_data, num_features)) @ np.linalg.cholesky(cov).T
    w = rng.normal(size=num_features)
    b = rng.normal()
    y = x @ w + b + noise_scale * rng.normal(size=num_data)
    return {"x": x, "y": y}, {"true_weight": w.tolist(), "true_bias": float(b),
                              "noise_scale": noise_scale}


def _modes(locs: np.ndarray, std: float, num_data: int, seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    y = rng.integers(len(locs), size=num_data)
    x = locs[y] + std * rng.normal(size=(num_data, 2))
    return {"x": x, "y": y.astype(np.int64)}, {"modes": locs.tolist(), "mode_std": std}


def gaussian_ring(split: str = "all", seed: int = 0, *, num_data: int = 10000,
                  num_modes: int = 8, radius: float = 1.0, std: float = 0.01
                  ) -> tuple[dict, dict]:
    """PacGAN's 2D-ring (Lin et al. 2018, section 5.1): ``num_modes`` equally weighted
    Gaussians with standard deviation ``std`` on a circle; ``meta["modes"]`` holds the
    means, ``y`` each point's mode."""
    angles = 2 * np.pi * np.arange(num_modes) / num_modes
    locs = radius * np.stack([np.cos(angles), np.sin(angles)], -1)
    return _modes(locs, std, num_data, seed)


def gaussian_grid(split: str = "all", seed: int = 0, *, num_data: int = 10000,
                  std: float = 0.05) -> tuple[dict, dict]:
    """PacGAN's 2D-grid: 25 equally weighted Gaussians at {-4, -2, 0, 2, 4}^2 with
    standard deviation ``std``."""
    axis = np.arange(-4.0, 5.0, 2.0)
    locs = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    return _modes(locs, std, num_data, seed)
