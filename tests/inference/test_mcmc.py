import numpy as np
import pytest
import torch

import ppl_gen
from ppl_gen.config import MCMCConfig
from ppl_gen.diagnostics import ess, mcse, rhat
from ppl_gen.inference import make_problem, mcmc
from tests.conftest import assert_divergences, assert_within_mcse, normal_normal

# posteriordb reference posterior for eight_schools-eight_schools_noncentered (priors
# mu ~ N(0, 5), tau ~ HalfCauchy(5)): means of mu and tau. The reference draws (10,000)
# carry their own Monte Carlo error, about sd / 100 = 0.03, added to our MCSE in quadrature.
REFERENCE = {"mu": 4.41, "tau": 3.60}
REFERENCE_SE = {"mu": 0.033, "tau": 0.032}


@pytest.fixture(scope="module")
def eight_schools_nuts():
    ds = ppl_gen.load_dataset("eight_schools", dtype=torch.float64)
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds).double()
    # jit_compile halves Pyro's per-iteration cost here (8 vs 17 ms, measured).
    return ppl_gen.fit(model, ds, engine="nuts", num_warmup=300, num_samples=600,
                       num_chains=4, target_accept_prob=0.9, jit_compile=True, seed=1,
                       device="cpu")


@pytest.mark.slow  # Pyro NUTS, 27 s / 13 s: CI runs it (pytest -m slow)
def test_eight_schools_noncentered_matches_posteriordb(eight_schools_nuts):
    result = eight_schools_nuts
    for name, truth in REFERENCE.items():
        draws = result.samples[name].numpy()
        assert rhat(draws) < 1.01, f"{name}: r_hat {rhat(draws):.4f}"
        assert ess(draws) > 400
        error = float(np.hypot(mcse(draws), REFERENCE_SE[name]))
        assert_within_mcse(float(draws.mean()), truth, error, k=4, label=name)
    assert result.samples["theta"].shape == (4, 600, 8)  # deterministic site included
    stats = result.sample_stats
    assert stats["diverging"].shape == (4, 600) and stats["diverging"].dtype == bool
    assert np.all((stats["accept_prob"] >= 0) & (stats["accept_prob"] <= 1))
    assert stats["step_size"].shape == (4, 600)
    # Step sizes are fixed after warmup: constant along each chain.
    assert np.all(stats["step_size"] == stats["step_size"][:, :1])


@pytest.mark.slow  # Pyro NUTS, 27 s / 13 s: CI runs it (pytest -m slow)
def test_centered_eight_schools_reports_its_divergences():
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools_centered"].from_dataset(ds)
    result = ppl_gen.fit(model, ds, engine="nuts", num_warmup=150, num_samples=200,
                         num_chains=2, jit_compile=True, seed=0, device="cpu")
    diverging = result.sample_stats["diverging"]
    assert result.info["num_divergences"] == int(diverging.sum()) > 0
    assert result.info["divergences_per_chain"] == diverging.sum(1).tolist()


def test_nuts_recovers_the_exact_conjugate_posterior():
    ds = ppl_gen.load_dataset("linear_regression", dtype=torch.float64, num_data=40)
    model = ppl_gen.MODELS["linear_regression"].from_dataset(ds).double()
    mean, cov = model.exact_posterior(ds["x"], ds["y"])
    result = ppl_gen.fit(model, ds, engine="nuts", num_warmup=300, num_samples=500,
                         num_chains=2, seed=0, jit_compile=True, device="cpu")
    assert_divergences(result)
    chains = torch.cat([result.samples["weight"], result.samples["bias"][..., None]], -1)
    chains = chains.numpy()
    sd = cov.diag().sqrt().numpy()
    for i in range(chains.shape[-1]):
        assert_within_mcse(chains[..., i].mean(), float(mean[i]), mcse(chains[..., i]), k=4,
                           label=f"coefficient {i}")
    # Covariance: correlations and sds to within sampling error (ESS ~ 800 here gives a
    # standard error near 1 / sqrt(800) = 0.035 for a correlation; 0.15 is > 4 of those).
    flat = chains.reshape(-1, chains.shape[-1])
    sample_cov = np.cov(flat.T)
    np.testing.assert_allclose(np.sqrt(np.diag(sample_cov)) / sd, 1, atol=0.12)
    corr = cov.numpy() / np.outer(sd, sd)
    sample_sd = np.sqrt(np.diag(sample_cov))
    np.testing.assert_allclose(sample_cov / np.outer(sample_sd, sample_sd), corr, atol=0.15)


def test_hmc_kernel_and_user_model():
    y = torch.tensor([0.8, 1.3, 0.4, 1.9, 1.1])

    model = normal_normal

    result = ppl_gen.fit(model, {"y": y}, engine="hmc", num_warmup=200, num_samples=400,
                         num_chains=2, num_steps=8, seed=0, device="cpu")
    assert_divergences(result)
    draws = result.samples["mu"].numpy()
    post_mean, post_sd = float(y.sum() / 6), (1 / 6) ** 0.5
    assert_within_mcse(draws.mean(), post_mean, mcse(draws), k=4, label="mu")
    assert abs(draws.std() / post_sd - 1) < 0.15


def test_same_seed_same_draws():
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    kwargs = dict(engine="nuts", num_warmup=20, num_samples=10, num_chains=2, seed=5,
                  device="cpu")
    a, b = ppl_gen.fit(model, ds, **kwargs), ppl_gen.fit(model, ds, **kwargs)
    torch.testing.assert_close(a.samples["mu"], b.samples["mu"])
    assert not torch.equal(a.samples["mu"][0], a.samples["mu"][1])  # chains differ


def test_step_layer():
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    problem = make_problem(model, ds, device="cpu")
    state = mcmc.init(problem, MCMCConfig(num_warmup=5, num_samples=5, num_chains=3))
    state, info = mcmc.step(state)
    assert state.iteration == 1 and info.extras["accept_prob"].shape == (3,)


def test_the_kernel_readout_agrees_with_pyros_public_numbers():
    """The per-iteration statistics read from Pyro's private fields, checked on the
    installed Pyro against what it reports publicly: the acceptance probabilities of the
    sampling iterations average to ``logging()``'s running mean (printed to 3 decimals),
    the divergences are ``diagnostics()``'s, the energy is ``potential_fn`` at the draw.
    The public fallback (for a Pyro without those fields) gives the same divergences and
    energies, and NaN acceptance probabilities with the reason."""
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools_centered"].from_dataset(ds)  # diverges
    problem = make_problem(model, ds, device="cpu")
    config = MCMCConfig(num_warmup=20, num_samples=40, num_chains=1, max_tree_depth=5,
                        target_accept_prob=0.6)  # short trees: cheap, and it diverges
    state = mcmc.init(problem, config, seed=0)
    readout = state.readouts[0]
    assert readout.fallback is None  # this Pyro has every field
    accept, diverging = [], 0
    for i in range(60):
        state, info = mcmc.step(state)
        kernel = state.kernels[0]
        with torch.no_grad():
            potential = float(kernel.potential_fn(state.params[0]))
        assert info.extras["potential_energy"][0] == pytest.approx(potential, rel=1e-5,
                                                                   abs=1e-5)
        if i >= config.num_warmup:
            accept.append(info.extras["accept_prob"][0])
            diverging += int(info.extras["diverging"][0])
    assert abs(np.mean(accept) - float(kernel.logging()["acc. prob"])) <= 5e-4 + 1e-9
    assert diverging == len(kernel.diagnostics()["divergences"]) > 0

    state = mcmc.init(problem, config, seed=0)
    readout = state.readouts[0]
    readout.fallback = "forced, for the test"
    diverging = 0
    for _ in range(30):
        state, info = mcmc.step(state)
        assert np.isnan(info.extras["accept_prob"][0])
        with torch.no_grad():
            potential = float(state.kernels[0].potential_fn(state.params[0]))
        assert info.extras["potential_energy"][0] == pytest.approx(potential, rel=1e-6)
        diverging += int(info.extras["diverging"][0])
    assert diverging == len(state.kernels[0].diagnostics()["divergences"])


def _standard_normal(y):
    import pyro
    import pyro.distributions as dist

    x = pyro.sample("x", dist.Normal(torch.zeros(5), 1.0).to_event(1))
    pyro.sample("y", dist.Normal(x[..., 0], 1e3), obs=y)  # a nearly flat likelihood


def test_nuts_energy_is_the_hamiltonian_after_the_momentum_draw():
    """E-BFMI for NUTS (issue 10): each iteration's energy is U(q) + K(p) at the fresh
    momentum, so energy[n] - potential_energy[n - 1] is the kinetic energy of a draw
    p ~ N(0, M): chi-square(d) / 2 whatever the mass matrix, mean d / 2 and variance d / 2,
    independent across iterations — checked within 4 Monte Carlo sds. Its E-BFMI lands in
    diagnostics and passes (no warning) on this Gaussian."""
    result = ppl_gen.fit(_standard_normal, {"y": torch.tensor(0.0)}, engine="nuts",
                         num_chains=2, num_warmup=150, num_samples=400, seed=3,
                         device="cpu")
    assert_divergences(result)
    stats = result.sample_stats
    kinetic = (stats["energy"][:, 1:] - stats["potential_energy"][:, :-1]).ravel()
    d = 5
    assert (kinetic >= 0).all()
    assert abs(kinetic.mean() - d / 2) < 4 * np.sqrt(d / 2 / kinetic.size)
    bfmi = result.info["diagnostics"]["e_bfmi_per_chain"]
    assert len(bfmi) == 2 and min(bfmi) > 0.3
    assert not any("E-BFMI" in w for w in result.warnings)
    from ppl_gen.diagnostics import to_inference_data

    idata = to_inference_data(result)
    assert np.allclose(np.asarray(idata.sample_stats["energy"]), stats["energy"])


@pytest.mark.slow  # Pyro NUTS on a funnel fills its trees: ~60 s; CI runs it
def test_nuts_warns_about_low_e_bfmi_on_a_funnel():
    """Neal's funnel (v ~ N(0, 3), x | v ~ N(0, e^v)): the energy levels are far wider
    than one momentum draw moves them, E-BFMI falls well under 0.3, and the result says so;
    ChEES on the same posterior (its energy is H at the kept state) agrees."""
    import pyro
    import pyro.distributions as dist

    def funnel(y):
        v = pyro.sample("v", dist.Normal(0.0, 3.0))
        x = pyro.sample("x", dist.Normal(torch.zeros(9), torch.exp(v / 2)[..., None])
                        .to_event(1))
        pyro.sample("y", dist.Normal(x[..., 0], 100.0), obs=y)

    for engine in ("nuts", "chees"):
        result = ppl_gen.fit(funnel, {"y": torch.tensor(0.0)}, engine=engine,
                             num_chains=4, num_warmup=300, num_samples=300, seed=1,
                             device="cpu")
        bfmi = result.info["diagnostics"]["e_bfmi_per_chain"]
        assert np.median(bfmi) < 0.3, (engine, bfmi)
        assert any("E-BFMI below 0.3" in w for w in result.warnings), engine


def test_model_without_latents_is_rejected():
    ds = ppl_gen.load_dataset("gaussian_mixture")
    with pytest.raises(ValueError, match="no latent sample sites.*bayesian_gmm"):
        ppl_gen.fit(ppl_gen.MODELS["gmm"].from_dataset(ds), ds, engine="nuts",
                    num_warmup=1, num_samples=1, device="cpu")


def test_deterministic_sites_are_computed_in_bounded_chunks_and_only_when_there(monkeypatch):
    """After sampling, the deterministic sites come from batched model runs over the draws:
    in chunks that bound the memory (the same values as one pass: eight schools' theta is
    mu + tau theta_tilde), and not at all for a model without any (the pass used to run
    anyway: 20 s and 6 GB after a 4,800-draw fit of a 100,000-row regression)."""
    from ppl_gen.inference import chees, predictive

    data = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(data)
    options = dict(engine="chees", num_chains=4, num_warmup=30, num_samples=20,
                   compile=False, device="cpu", seed=2)
    with pytest.warns(ppl_gen.diagnostics.ReliabilityWarning):
        whole = ppl_gen.fit(model, data, **options)
    calls = []
    evaluate = predictive.evaluate_draws

    def counted(problem, draws, **kwargs):
        calls.append(next(iter(draws.values())).shape[0])
        return evaluate(problem, draws, **kwargs)

    monkeypatch.setattr(mcmc, "evaluate_draws", counted)
    monkeypatch.setattr(mcmc, "DETERMINISTIC_CHUNK_NUMBERS", 8 * 30)  # 30 draws of 8
    with pytest.warns(ppl_gen.diagnostics.ReliabilityWarning):
        chunked = ppl_gen.fit(model, data, **options)
    assert calls == [30, 30, 20]  # 80 draws in chunks of 30
    for name, value in whole.samples.items():
        assert torch.equal(chunked.samples[name], value), name
    theta = whole.samples["mu"][..., None] + whole.samples["tau"][..., None] * \
        whole.samples["theta_tilde"]
    torch.testing.assert_close(whole.samples["theta"], theta)
    calls.clear()
    cancer = ppl_gen.load_dataset("breast_cancer")
    regression = ppl_gen.MODELS["logistic_regression"].from_dataset(cancer)
    with pytest.warns(ppl_gen.diagnostics.ReliabilityWarning):
        plain = ppl_gen.fit(regression, cancer, **options)
    assert calls == [] and set(plain.samples) == {"weight", "bias"}
    assert chees._deterministic is mcmc._deterministic  # one implementation for both
