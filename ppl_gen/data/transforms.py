"""Array transforms used by the loaders: standardise, binarise, dequantise."""

from __future__ import annotations

import numpy as np

__all__ = ["standardize", "binarize", "dequantize"]


def standardize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column (constant columns are left at zero)."""
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def binarize(x: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """Pixels in [0, 1] to {0, 1} by a fixed threshold (deterministic binarisation)."""
    return (x > threshold).astype(x.dtype)


def dequantize(x: np.ndarray, *, levels: int, rng: np.random.Generator) -> np.ndarray:
    """Integer intensities in ``[0, levels)`` to continuous values in [0, 1] (uniform noise).

    Uniform dequantisation (Uria et al. 2013) makes a discrete image a valid sample of a
    continuous density, so flows and Gaussian decoders get a finite log-likelihood.
    """
    return (x + rng.uniform(size=x.shape)) / levels
