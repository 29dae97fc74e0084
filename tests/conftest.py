"""Every test starts from a clean Pyro param store, fixed seeds and one torch thread.

One intra-op thread: on these 2-core machines a second thread makes each small op wait
for a scheduler tick (measured ~4 ms stalls), which would dominate the suite's run time.
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppl_gen  # noqa: F401  (sets pyro's module_local_params before any test)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _hermetic() -> None:
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    np.random.seed(0)
    pyro.enable_validation(True)


def assert_divergences(result, expected: int = 0) -> None:
    """An MCMC test states how many divergent transitions its run may have (issue 15):
    zero unless the test says why. A divergence means the draws near it may be biased, so
    a statistical check that passes despite them is not the check it claims to be."""
    count = int(result.info["num_divergences"])
    assert count <= expected, (
        f"{count} divergent transitions after warmup (this test allows {expected}): "
        f"{result.info.get('divergences_per_chain')}")


def assert_within_mcse(estimate: float, truth: float, mcse: float, *, k: float = 4.0,
                       label: str = "") -> None:
    """|estimate - truth| < k * MCSE: the ESS-gated check for MCMC means."""
    assert abs(estimate - truth) < k * mcse, (
        f"{label}: |{estimate:.4f} - {truth:.4f}| = {abs(estimate - truth):.4f} "
        f">= {k} x MCSE {mcse:.4f}")


def assert_variance_within_mcse(draws: np.ndarray, truth: float, *, mean: float | None = None,
                                k: float = 4.0, label: str = "") -> None:
    """The variance of draws (chain, draw) within k Monte Carlo standard errors of the
    truth, the error computed from the ESS of the centred squares — not of the draws: HMC's
    antithetic draws make the mean super-efficient (ESS above the number of draws) while the
    squares mix far more slowly, so the mean's ESS understates a variance's error."""
    from ppl_gen.diagnostics import mcse

    draws = np.asarray(draws, dtype=float)
    centre = draws.mean() if mean is None else mean
    squares = (draws - centre) ** 2
    estimate = float(squares.mean())
    assert_within_mcse(estimate, truth, mcse(squares), k=k, label=f"{label} variance")


def normal_normal(y):
    """A plain Pyro user model with a known posterior: mu ~ N(0, 1), y_i ~ N(mu, 1), so
    mu | y ~ N(sum(y) / (n + 1), 1 / (n + 1))."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=y)
