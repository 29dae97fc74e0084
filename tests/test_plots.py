"""plot_history shows what each kind of result holds (issue 11: it labelled an adversarial
run's losses and Pathfinder's ELBO as "log density (mean over chains)" per draw)."""

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import ppl_gen  # noqa: E402
from ppl_gen import plots  # noqa: E402


def _fit(model, data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ppl_gen.fit(model, data, device="cpu", seed=0, **options)


@pytest.fixture(scope="module")
def results():
    schools = ppl_gen.load_dataset("eight_schools")
    hierarchy = ppl_gen.MODELS["eight_schools"].from_dataset(schools)
    digits = ppl_gen.load_dataset("digits")
    images = {"x": (digits["x"][:64] > 0.5).float()}
    aae = ppl_gen.MODELS["aae"].from_dataset(images, latent_dim=2, hidden_dims=(16,),
                                             discriminator_dims=(8,))
    mixture = ppl_gen.load_dataset("gaussian_mixture")
    return {
        "optimiser": _fit(hierarchy, schools, engine="svi", num_steps=40, psis_draws=0),
        "sampler": _fit(hierarchy, schools, engine="chees", num_chains=4, num_warmup=20,
                        num_samples=20, compile=False),
        "approximation": _fit(hierarchy, schools, engine="pathfinder"),
        "two-player": _fit(aae, images, engine="adversarial", num_steps=6, batch_size=16),
        "point": _fit(ppl_gen.MODELS["gmm"].from_dataset(mixture), mixture, engine="em",
                      max_iter=5),
    }


@pytest.mark.parametrize("kind, ylabel, xlabel", [
    ("optimiser", "ELBO", "step"),
    ("sampler", "log density (mean over chains)", "draw"),
    ("approximation", "ELBO", "L-BFGS iteration (all paths, in turn)"),
    ("two-player", "loss per player", "step"),
    ("point", "mean log-likelihood", "EM iteration"),
])
def test_each_kind_of_result_is_plotted_as_what_it_holds(results, kind, ylabel, xlabel):
    result = results[kind]
    assert result.kind == kind
    axes = plots.plot_history(result).axes[0]
    assert (axes.get_ylabel(), axes.get_xlabel()) == (ylabel, xlabel)
    if kind == "two-player":  # one line per player, with the recorded values
        lines = {line.get_label(): line for line in axes.lines}
        assert set(lines) == {"reconstruction", "discriminator", "generator"}
        np.testing.assert_allclose(lines["generator"].get_ydata(),
                                   result.history["generator"])
    if kind == "approximation":
        np.testing.assert_allclose(axes.lines[0].get_ydata(), result.history["elbo"])
    summary = ppl_gen.diagnostics.summarize(result)
    assert ("elbo" in summary) == (kind in ("optimiser", "approximation"))
