"""Mode coverage (PacGAN's protocol) and k-NN precision/recall/density/coverage, against
cases whose answers are known exactly or in expectation."""

import numpy as np
import pytest

import ppl_gen
from ppl_gen.diagnostics import mode_coverage, precision_recall


def test_mode_coverage_counts_modes_and_high_quality_samples():
    ds = ppl_gen.load_dataset("gaussian_ring")
    modes, std = np.asarray(ds.meta["modes"]), ds.meta["mode_std"]
    exact = mode_coverage(ds["x"], modes, std)
    assert exact.covered == 8
    # P(|N(0, I_2)| < 3) = 1 - exp(-9/2) = 0.98889: the data's own high-quality share
    assert exact.high_quality == pytest.approx(1 - np.exp(-4.5), abs=3 * np.sqrt(0.011 / 10000))
    collapsed = np.repeat(modes[:3], 100, axis=0) + 0.5 * std  # three modes only
    result = mode_coverage(np.concatenate([collapsed, [[5.0, 5.0]] * 100]), modes, std)
    assert result.covered == 3 and result.high_quality == pytest.approx(0.75)
    assert result.counts.tolist() == [100, 100, 100, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="NaN or inf"):
        mode_coverage(np.full((3, 2), np.nan), modes, std)


def test_precision_recall_of_one_distribution_and_of_disjoint_ones():
    rng = np.random.default_rng(0)
    real, same = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2))
    result = precision_recall(real, same, k=5)
    # Naeem et al. (2020): E[density] = 1 and coverage -> 1 - 2^-k for identical laws
    assert result.density == pytest.approx(1.0, abs=0.1)
    assert result.coverage == pytest.approx(1 - 0.5 ** 5, abs=0.03)
    assert result.precision > 0.9 and result.recall > 0.9
    far = precision_recall(real, same + 50.0, k=5)
    assert far.precision == far.recall == far.density == far.coverage == 0.0
    collapsed = precision_recall(real, 0.1 * same, k=5)  # inside the data, little spread
    assert collapsed.precision > 0.95 and collapsed.recall < 0.3
