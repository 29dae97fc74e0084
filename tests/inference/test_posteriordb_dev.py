"""ChEES with engine defaults on posteriordb's development posteriors (tests/posteriordb_dev):
every parameter within the README's bands of the published reference (|z| < 4 with both
MCSEs, sd ratio in [0.8, 1.25], ESS >= 100) — or the result says it failed.

The five fast ones run here (~25 s); the two earnings regressions (N = 1,192) and the HMM are
in ``python benchmarks/posteriordb_dev.py``, which prints the whole table."""

import pytest
import torch

import ppl_gen
from tests.posteriordb_dev import compare, load

FAST = ["kidiq-kidscore_interaction", "kidiq_with_mom_work-kidscore_interaction_c",
        "mesquite-logmesquite_logvas", "nes2000-nes", "sblri-blr"]


#: Wrong at seed 0 (seeds 1 and 2 pass), and the result says so: chains that start far out
#: in sblri's tight likelihood (betas' sd 0.001 next to sigma's 0.07) are still travelling
#: when the metric windows close, the pooled variances include their spread and the step
#: size falls to ~1e-4 (issue 10 note; a mode-finding start is the planned fix).
KNOWN_FAILURES = {"sblri-blr"}


@pytest.mark.parametrize("name", FAST)
def test_chees_defaults_match_the_reference_or_warn(name):
    torch.set_num_threads(1)
    posterior = load(name)
    result = ppl_gen.fit(posterior.model, posterior.data, engine="chees", seed=0,
                         device="cpu")
    rows = compare(posterior, result.samples)
    failed = {k: v for k, v in rows.items() if not v["ok"]}
    assert not failed or result.warnings, f"silently wrong: {failed}"
    if name in KNOWN_FAILURES:
        return
    # the others pass outright at seeds 0-2 (kidiq's beta correlations reach -0.99)
    assert not failed, failed
    assert result.info["num_divergences"] == 0
