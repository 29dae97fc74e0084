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


def test_frechet_distance_against_its_closed_form_for_gaussians():
    from ppl_gen.diagnostics import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 2)) * [1.0, 2.0]
    b = rng.normal(size=(20000, 2)) * [3.0, 1.0] + [1.0, 0.0]
    # diagonal covariances: ||dmu||^2 + sum (s_a - s_b)^2 = 1 + (1-3)^2 + (2-1)^2 = 6
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_the_digit_classifier_and_the_measures_in_its_feature_space():
    import torch

    from ppl_gen.diagnostics import class_coverage, digit_classifier, frechet_distance

    classifier = digit_classifier()
    test = ppl_gen.load_dataset("mnist", split="test", binarize=False)
    train = ppl_gen.load_dataset("mnist", split="train", binarize=False)
    accuracy = float((classifier.predict(test["x"]) == test["y"]).float().mean())
    assert accuracy > 0.9  # measured 0.92 on the 1,000 held-out images
    coverage = class_coverage(test["x"])
    assert coverage["classes"] == 10 and coverage["entropy"] > 0.98 * np.log(10)
    assert class_coverage(test["x"][test["y"] == 3])["counts"][3] > 80
    real, held_out = classifier.embed(train["x"][:1000]), classifier.embed(test["x"])
    noise = classifier.embed(torch.rand(1000, 784))
    assert frechet_distance(held_out, real) < 0.05 * frechet_distance(held_out, noise)
    result = precision_recall(real, held_out, k=5)
    assert result.precision > 0.9 and result.recall > 0.9
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        classifier.predict(torch.full((2, 784), 5.0))
    with pytest.raises(ValueError, match="digit_classifier\\('digits'\\) for 8x8"):
        classifier.predict(torch.rand(2, 64))


def test_the_8x8_digit_classifier_separates_real_digits_from_noise():
    """The same network on scikit-learn's 8x8 digits: accurate on the held-out split, and
    in its feature space held-out digits are near the training digits, noise is far."""
    import torch

    from ppl_gen.diagnostics import class_coverage, digit_classifier, frechet_distance

    classifier = digit_classifier("digits")
    assert classifier is digit_classifier("digits")  # cached
    test = ppl_gen.load_dataset("digits", split="test")
    train = ppl_gen.load_dataset("digits", split="train")
    accuracy = float((classifier.predict(test["x"]) == test["y"]).float().mean())
    assert accuracy > 0.93, accuracy
    assert class_coverage(test["x"], classifier=classifier)["classes"] == 10
    real, held_out = classifier.embed(train["x"]), classifier.embed(test["x"])
    noise = classifier.embed(torch.rand(359, 64))
    assert frechet_distance(held_out, real) < 0.05 * frechet_distance(held_out, noise)
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        digit_classifier("cifar")
