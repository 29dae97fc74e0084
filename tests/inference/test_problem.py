"""Binding models to data, devices and threads: the bad inputs a user can give."""

import pyro
import pyro.distributions as dist
import pytest
import torch

import ppl_gen
from ppl_gen.inference import make_problem, resolve_device
from ppl_gen.inference.base import num_threads


def _model(x, y=None):
    w = pyro.sample("w", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Normal(w * x, 1.0), obs=y)


def test_auto_device_and_missing_cuda():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available.*use device='cpu'"):
            resolve_device("cuda")
        ds = ppl_gen.load_dataset("eight_schools")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            ppl_gen.fit(ppl_gen.MODELS["eight_schools"].from_dataset(ds), ds, device="cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_keeps_everything_on_the_device():  # pragma: no cover - no GPU in CI
    ds = ppl_gen.load_dataset("eight_schools")
    result = ppl_gen.fit(ppl_gen.MODELS["eight_schools"].from_dataset(ds), ds, engine="nuts",
                         num_warmup=20, num_samples=20, num_chains=1, device="cuda")
    assert result.samples["mu"].device.type == "cuda"


def test_user_model_data_errors():
    x = torch.linspace(-1, 1, 5)
    with pytest.raises(ValueError, match="data key\\(s\\) Y are not arguments of model "
                                         "'_model', whose arguments are: x, y"):
        make_problem(_model, {"x": x, "Y": x}, device="cpu")
    with pytest.raises(ValueError, match="needs data argument\\(s\\) x"):
        make_problem(_model, {"y": x}, device="cpu")
    with pytest.raises(ValueError, match="has no observed sample site"):
        make_problem(_model, {"x": x}, device="cpu")
    with pytest.raises(ValueError, match="'y' contains 1 NaN/inf"):
        make_problem(_model, {"x": x, "y": torch.tensor([1.0, float("nan"), 0, 0, 0])},
                     device="cpu")
    with pytest.raises(ValueError, match="failed on the given data"):
        make_problem(_model, {"x": x, "y": torch.zeros(3)}, device="cpu")
    with pytest.raises(TypeError, match="model must be a ppl_gen model or a Pyro model"):
        make_problem(42, {"x": x}, device="cpu")


def test_zoo_model_shape_errors_name_the_expected_shape():
    ds = ppl_gen.load_dataset("breast_cancer")
    model = ppl_gen.MODELS["logistic_regression"].from_dataset(ds)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 30\), got \(569, 29\)"):
        ppl_gen.fit(model, {"x": ds["x"][:, :29], "y": ds["y"]}, device="cpu")
    with pytest.raises(ValueError, match="binary target y in \\{0, 1\\}"):
        ppl_gen.fit(model, {"x": ds["x"], "y": ds["y"] * 2}, device="cpu")
    with pytest.raises(ValueError, match="needs data argument\\(s\\) y"):
        ppl_gen.fit(model, {"x": ds["x"]}, device="cpu")
    with pytest.raises(ValueError, match="needs data tensor\\(s\\) y, sigma"):
        ppl_gen.MODELS["eight_schools"].from_dataset(ppl_gen.load_dataset("iris"))


def test_fit_option_errors():
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    with pytest.raises(ValueError, match="unknown svi option\\(s\\) num_chains"):
        ppl_gen.fit(model, ds, engine="svi", num_chains=2)
    with pytest.raises(TypeError, match="engine 'nuts' takes a MCMCConfig, got SVIConfig"):
        ppl_gen.fit(model, ds, engine="nuts", config=ppl_gen.SVIConfig())
    with pytest.raises(ValueError, match="either as config=... or as keyword"):
        ppl_gen.fit(model, ds, engine="svi", config=ppl_gen.SVIConfig(), num_steps=3)
    with pytest.raises(ValueError, match="only used by engine 'svi'"):
        ppl_gen.fit(model, ds, engine="nuts", guide=lambda **kw: None)


def test_num_threads_context_restores():
    before = torch.get_num_threads()
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
