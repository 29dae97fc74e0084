"""Sample-based quality and diversity measures, for every family that can sample (GANs
above all, whose density cannot be evaluated).

- :func:`mode_coverage`: PacGAN's protocol on mixtures with known modes (Lin et al. 2018,
  section 5.1; their ``MetricLogger``): a sample is *high quality* when its standardised
  distance to the nearest mode is below 3; a mode is *covered* when at least one
  high-quality sample is assigned to it.
- :func:`precision_recall`: k-nearest-neighbour precision and recall (Kynkäänniemi et al.
  2019) and density and coverage (Naeem et al. 2020) between real and generated points
  (in a feature space of your choice: raw coordinates, or a classifier's features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["ModeCoverage", "mode_coverage", "PrecisionRecall", "precision_recall"]


def _array(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"expected points shaped (N, D), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("the points hold NaN or inf values (a diverged generator?)")
    return array


@dataclass(frozen=True)
class ModeCoverage:
    """How many of a mixture's modes a sample covers (PacGAN's protocol).

    Attributes:
        covered: Modes with at least one high-quality sample.
        num_modes: Modes in the mixture.
        high_quality: Share of samples within ``threshold`` standard deviations of their
            nearest mode.
        counts: High-quality samples per mode.
    """

    covered: int
    num_modes: int
    high_quality: float
    counts: np.ndarray


def mode_coverage(samples: Any, modes: Any, std: float, *,
                  threshold: float = 3.0) -> ModeCoverage:
    """PacGAN's mode coverage of ``samples`` (N, D) for a mixture of isotropic Gaussians
    with means ``modes`` (K, D) and standard deviation ``std``."""
    x, locs = _array(samples), _array(modes)
    if x.shape[1] != locs.shape[1]:
        raise ValueError(f"samples have {x.shape[1]} dimensions, modes {locs.shape[1]}")
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std!r}")
    distances = np.linalg.norm(x[:, None, :] - locs[None], axis=-1) / std
    nearest = distances.argmin(1)
    good = distances[np.arange(len(x)), nearest] < threshold
    counts = np.bincount(nearest[good], minlength=len(locs))
    return ModeCoverage(int((counts > 0).sum()), len(locs), float(good.mean()), counts)


@dataclass(frozen=True)
class PrecisionRecall:
    """k-NN precision and recall, density and coverage; all in [0, 1] but density, whose
    expectation is 1 when the two sets come from one distribution.

    Attributes:
        precision: Share of generated points inside the real data's k-NN balls.
        recall: Share of real points inside the generated points' k-NN balls.
        density: Mean number of real k-NN balls containing a generated point, over k.
        coverage: Share of real points whose k-NN ball holds a generated point.
    """

    precision: float
    recall: float
    density: float
    coverage: float


def _knn_radii(points: np.ndarray, k: int) -> np.ndarray:
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself


def precision_recall(real: Any, generated: Any, *, k: int = 5) -> PrecisionRecall:
    """Precision, recall, density and coverage with k-nearest-neighbour balls (pairwise
    distances held in memory: a few thousand points per set)."""
    x, y = _array(real), _array(generated)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real points have {x.shape[1]} dimensions, generated {y.shape[1]}")
    if not isinstance(k, int) or not 1 <= k < min(len(x), len(y)):
        raise ValueError(f"k must be an integer in [1, {min(len(x), len(y)) - 1}], got {k!r}")
    real_radii, fake_radii = _knn_radii(x, k), _knn_radii(y, k)
    cross = np.linalg.norm(x[:, None] - y[None], axis=-1)  # (N_real, N_generated)
    inside_real = cross < real_radii[:, None]
    precision = float(inside_real.any(0).mean())
    recall = float((cross < fake_radii[None, :]).any(1).mean())
    density = float(inside_real.sum(0).mean() / k)
    coverage = float((cross.min(1) < real_radii).mean())
    return PrecisionRecall(precision, recall, density, coverage)
