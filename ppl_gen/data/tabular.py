"""Small real data sets for the statistical models: eight schools and scikit-learn's tables."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import numpy as np

from .base import deterministic_split
from .transforms import standardize

__all__ = ["eight_schools", "iris", "breast_cancer", "diabetes"]


def eight_schools(split: str = "all", seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rubin (1981) SAT coaching effects: ``y`` (J,) estimates with known ``sigma`` (J,)."""
    if split != "all":
        raise ValueError("eight_schools has 8 rows and no train/test split; use split='all'")
    raw = json.loads(resources.files("ppl_gen.data").joinpath("_files/eight_schools.json")
                     .read_text())
    data = raw["data"]
    tensors = {"y": np.asarray(data["y"], float), "sigma": np.asarray(data["sigma"], float)}
    meta = {"source": raw["source"], "licence": "BSD-3-Clause (posteriordb)",
            "reference": "Rubin (1981), J. Educational Statistics 6(4)"}
    return tensors, meta


def _sklearn_table(loader_name: str, split: str, *, target: str) -> tuple[dict, dict]:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader_name)()
    x = standardize(np.asarray(bunch.data, float))
    y = np.asarray(bunch.target)
    if target == "standardized":
        y = standardize(y.astype(float)[:, None])[:, 0]
    rows = deterministic_split(len(x), split)
    meta = {"feature_names": list(map(str, bunch.feature_names)), "source":
            f"scikit-learn {loader_name}", "num_rows_total": len(x)}
    if hasattr(bunch, "target_names"):
        meta["target_names"] = list(map(str, bunch.target_names))
    return {"x": x[rows], "y": y[rows]}, meta


def iris(split: str = "all", seed: int = 0) -> tuple[dict, dict]:
    """Fisher's iris: standardised 4 features ``x`` and 3 classes ``y``."""
    return _sklearn_table("load_iris", split, target="label")


def breast_cancer(split: str = "all", seed: int = 0) -> tuple[dict, dict]:
    """Wisconsin breast cancer: 30 standardised features ``x``, binary target ``y``
    (1 = benign)."""
    tensors, meta = _sklearn_table("load_breast_cancer", split, target="label")
    tensors["y"] = tensors["y"].astype(float)
    return tensors, meta


def diabetes(split: str = "all", seed: int = 0) -> tuple[dict, dict]:
    """Diabetes progression: 10 standardised features ``x``, standardised target ``y``."""
    return _sklearn_table("load_diabetes", split, target="standardized")
