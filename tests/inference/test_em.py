import pytest
import torch

import ppl_gen
from ppl_gen.config import EMConfig
from ppl_gen.inference import em, make_problem


def test_em_rejects_models_without_an_exact_e_step():
    ds = ppl_gen.load_dataset("eight_schools")
    with pytest.raises(TypeError, match="engine 'em' needs a model with initialize/e_step"):
        ppl_gen.fit(ppl_gen.MODELS["eight_schools"].from_dataset(ds), ds, engine="em",
                    device="cpu")
    mix = ppl_gen.load_dataset("gaussian_mixture")
    with pytest.raises(ValueError, match="priors=True"):
        ppl_gen.fit(ppl_gen.MODELS["bayesian_gmm"].from_dataset(mix), mix, engine="em",
                    device="cpu")


def test_em_stops_at_tolerance_and_records_every_iteration():
    ds = ppl_gen.load_dataset("gaussian_mixture", dtype=torch.float64)
    model = ppl_gen.MODELS["gmm"].from_dataset(ds).double()
    result = ppl_gen.fit(model, ds, engine="em", tol=1e-3, device="cpu")
    lls = result.history["log_likelihood"]
    assert result.info["converged"]
    assert len(lls) == result.info["num_iterations"] + 1
    assert abs(lls[-1] - lls[-2]) < 1e-3 <= abs(lls[-2] - lls[-3])
    capped = ppl_gen.fit(model, ds, engine="em", tol=0.0, max_iter=3, device="cpu")
    assert capped.info["num_iterations"] == 3 and not capped.info["converged"]


def test_monotonicity_guard_catches_an_inexact_m_step():
    ds = ppl_gen.load_dataset("gaussian_mixture", dtype=torch.float64)
    model = ppl_gen.MODELS["gmm"].from_dataset(ds).double()
    problem = make_problem(model, ds, device="cpu")
    state = em.init(problem, EMConfig(), seed=0)
    for _ in range(3):
        state, _ = em.step(state)
    original = model.m_step

    def bad_m_step(stats):  # shrink every covariance: not the maximiser
        original(stats)
        model.scale_tril_param = model.scale_tril_param * 0.5

    model.m_step = bad_m_step
    with pytest.raises(RuntimeError, match="log-likelihood decreased .* not exact"):
        em.step(state)
