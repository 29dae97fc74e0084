"""The checks every MCMC result gets: nested R-hat and E-BFMI against their definitions on
draws with known behaviour, and the warnings a failing run must carry."""

import json
import warnings

import numpy as np
import pytest
import torch

import ppl_gen
from ppl_gen.diagnostics.checks import ReliabilityWarning, check_draws, e_bfmi, nested_rhat
from tests.conftest import normal_normal


def test_nested_rhat_is_one_for_agreeing_chains_and_large_for_a_shifted_group():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(16, 1000))
    assert abs(nested_rhat(draws, 4) - 1) < 0.005
    draws[:4] += 1.0  # one superchain of four sits one sd away
    # B = var of superchain means ~ 0.25 * 0.75 * 4/3 = 0.25, W ~ 1 + 0 -> sqrt(1.25)
    assert nested_rhat(draws, 4) == pytest.approx(np.sqrt(1 + 0.25), rel=0.03)


def test_e_bfmi_of_independent_and_of_random_walk_energies():
    rng = np.random.default_rng(1)
    # independent energies: E[(E_n - E_{n-1})^2] = 2 Var(E), so E-BFMI = 2
    assert np.allclose(e_bfmi(rng.normal(size=(4, 20000))), 2.0, atol=0.05)
    # a slowly moving energy (random walk): far below 0.3
    walk = np.cumsum(rng.normal(size=(4, 2000)), axis=1)
    assert np.all(e_bfmi(walk) < 0.3)


def test_every_failed_threshold_is_a_sentence_naming_the_parameter():
    rng = np.random.default_rng(2)
    good = rng.normal(size=(16, 400))
    stuck = good.copy()
    stuck[0] += 5.0  # one chain elsewhere: R-hat fails
    diverging = np.zeros((16, 400), dtype=bool)
    diverging[3, 10] = True
    out, messages = check_draws({"a": good, "b": stuck},
                                {"diverging": diverging, "energy": rng.normal(size=(16, 400))},
                                engine="chees")
    assert out["parameters"]["a"]["r_hat"] < 1.01
    assert any("R-hat" in m and "b" in m and "num_warmup" in m for m in messages)
    assert any("1 divergent" in m and "target_accept_prob" in m for m in messages)
    assert out["num_divergences"] == 1
    assert len(out["e_bfmi_per_chain"]) == 16


def test_too_short_a_run_warns_in_the_result_the_summary_and_as_a_python_warning():
    y = torch.tensor([0.8, 1.3, 0.4, 1.9, 1.1])
    with pytest.warns(ReliabilityWarning, match="ESS below 100"):
        result = ppl_gen.fit(normal_normal, {"y": y}, engine="chees", num_chains=4,
                             num_warmup=10, num_samples=15, seed=0, device="cpu",
                             compile=False)
    assert any("bulk ESS below 100 for mu" in m for m in result.warnings)
    summary = ppl_gen.diagnostics.summarize(result)
    assert summary["warnings"] == list(result.warnings)
    assert summary["kind"] == "sampler" and "divergences" in summary
    json.dumps(summary)  # JSON-ready


def test_a_healthy_run_has_no_warnings():
    y = torch.tensor([0.8, 1.3, 0.4, 1.9, 1.1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReliabilityWarning)
        result = ppl_gen.fit(normal_normal, {"y": y}, engine="chees", num_chains=16,
                             num_warmup=300, num_samples=300, seed=0, device="cpu",
                             compile=False)
    assert result.warnings == ()
    diagnostics = result.info["diagnostics"]
    assert diagnostics["max_r_hat"] < 1.01 and diagnostics["max_nested_r_hat"] < 1.01
    assert diagnostics["min_ess_bulk"] > 100 and diagnostics["min_ess_tail"] > 100


def test_many_short_chains_gate_on_nested_rhat_few_chains_on_rhat():
    rng = np.random.default_rng(3)
    many, _ = check_draws({"a": rng.normal(size=(16, 200))})
    few, _ = check_draws({"a": rng.normal(size=(8, 200))})
    assert many["r_hat_limit"] == 1.1 and "max_nested_r_hat" in many
    assert few["r_hat_limit"] == 1.01 and "max_nested_r_hat" not in few
