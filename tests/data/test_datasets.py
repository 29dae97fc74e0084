import numpy as np
import pytest
import torch

from ppl_gen.data import DATASETS, Dataset, as_tensor_dict, deterministic_split, load_dataset


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_loads_finite_tensors(name):
    ds = load_dataset(name)
    assert isinstance(ds, Dataset) and ds.num_data > 0
    for value in ds.tensors.values():
        assert isinstance(value, torch.Tensor)
        if value.is_floating_point():
            assert torch.isfinite(value).all()
    assert DATASETS.descriptions[name]


def test_eight_schools_is_rubins_data():
    ds = load_dataset("eight_schools")
    assert ds["y"].tolist() == [28, 8, -3, 7, -1, 1, 18, 12]
    assert ds["sigma"].tolist() == [15, 10, 16, 11, 9, 11, 10, 18]
    assert "BSD-3" in ds.meta["licence"]


@pytest.mark.parametrize("name,num", [("iris", 150), ("breast_cancer", 569), ("digits", 1797),
                                      ("mnist", 5000)])
def test_splits_are_fixed_disjoint_and_complete(name, num):
    train = load_dataset(name, split="train", seed=0)
    again = load_dataset(name, split="train", seed=123)  # the split ignores the seed
    test = load_dataset(name, split="test")
    assert torch.equal(train["x"], again["x"])
    assert train.num_data + test.num_data == num
    train_rows = deterministic_split(num, "train")
    test_rows = deterministic_split(num, "test")
    assert not set(train_rows) & set(test_rows)
    assert sorted([*train_rows, *test_rows]) == list(range(num))


def test_mnist_is_binarised_by_default_and_standardised_tables():
    x = load_dataset("mnist", split="test")["x"]
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert x.shape == (1000, 784)
    grey = load_dataset("mnist", split="test", binarize=False)["x"]
    assert 0 <= grey.min() and grey.max() <= 1 and len(grey.unique()) > 2
    table = load_dataset("diabetes")
    np.testing.assert_allclose(table["x"].mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(table["x"].std(0, unbiased=False).numpy(), 1, atol=1e-4)


def test_synthetic_data_depend_on_seed_only():
    a = load_dataset("gaussian_mixture", seed=1)["x"]
    b = load_dataset("gaussian_mixture", seed=1)["x"]
    c = load_dataset("gaussian_mixture", seed=2)["x"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_dataset_option_and_split():
    with pytest.raises(ValueError, match="unknown option.*colour.*valid options are: binarize"):
        load_dataset("mnist", colour=True)
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        load_dataset("iris", split="validation")
    with pytest.raises(ValueError, match="correlation must lie in"):
        load_dataset("linear_regression", correlation=1.0)


def test_nan_and_inf_data_are_rejected_with_the_argument_name():
    x = np.ones((4, 2))
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"'x' contains 1 NaN/inf value\(s\) \(first at index "
                                         r"\(2, 1\)\)"):
        as_tensor_dict({"x": x})
    with pytest.raises(ValueError, match="'y' contains"):
        as_tensor_dict({"y": torch.tensor([1.0, float("inf")])})
    with pytest.raises(TypeError, match="data must be a ppl_gen Dataset or a dict"):
        as_tensor_dict([1, 2, 3])


def test_loader_specific_errors():
    with pytest.raises(ValueError, match="eight_schools has 8 rows and no train/test split"):
        load_dataset("eight_schools", split="train")
    with pytest.raises(ValueError, match="choose binarize=True or dequantize=True, not both"):
        load_dataset("digits", binarize=True, dequantize=True)
    with pytest.raises(KeyError, match="dataset 'iris' has no tensor 'sigma'; it has: x, y"):
        load_dataset("iris")["sigma"]


def test_dequantised_digits_are_continuous_and_in_range():
    x = load_dataset("digits", dequantize=True, seed=3)["x"]
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert len(x.unique()) > 1000  # continuous values, not 17 levels


def test_stochastic_binarization_is_a_fixed_bernoulli_draw_of_the_intensities():
    grey = load_dataset("mnist", split="test", binarize=False)["x"]
    first = load_dataset("mnist", split="test", binarize="stochastic")
    again = load_dataset("mnist", split="test", binarize="stochastic")
    other_seed = load_dataset("mnist", split="test", binarize="stochastic", seed=1)["x"]
    x = first["x"]
    assert set(x.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(x, again["x"])  # fixed draw: reproducible
    assert not torch.equal(x, other_seed)
    # E[x] = intensity: over 784,000 pixels the mean differs by < 4 binomial sds (~0.002).
    sd = float((grey * (1 - grey)).sum().sqrt() / grey.numel())
    assert abs(float(x.mean() - grey.mean())) < 4 * sd
    assert x[grey == 0].sum() == 0 and x[grey == 1].min() == 1  # certain pixels stay put
    assert first.meta["binarized"] == "stochastic"
    with pytest.raises(ValueError, match="unknown binarize"):
        load_dataset("mnist", binarize="random")


def test_splits_are_shuffled_disjoint_and_fixed():
    train, test = deterministic_split(100, "train"), deterministic_split(100, "test")
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    assert (np.diff(test) < 0).any()  # not sorted: a label-sorted file comes out mixed
    assert (deterministic_split(100, "test") == test).all()
    assert (deterministic_split(100, "all") == np.arange(100)).all()
    mnist = load_dataset("mnist", split="test")
    assert len(set(mnist["y"][:10].tolist())) > 3


def test_version_and_python_m(capsys):
    import subprocess
    import sys

    from ppl_gen.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    import ppl_gen

    assert exit_.value.code == 0 and ppl_gen.__version__ in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "ppl_gen", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("ppl-gen ")
