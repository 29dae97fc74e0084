"""The one outer-plate implementation (ppl_gen.traces.outer) behind the batched potential,
predictive draws, PSIS draws and importance sampling."""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from ppl_gen.traces import outer_dim, sum_to_outer, under_outer_plate


def _model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", y.shape[0], dim=-1):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_the_outer_plate_batches_every_site_and_the_sums_match_one_run_each():
    y = torch.tensor([0.3, -1.2, 2.0])
    wrapped = under_outer_plate(_model, "draws", 5, nesting=1)
    assert wrapped.__name__ == "_model"
    trace = poutine.trace(wrapped).get_trace(y)
    assert outer_dim(1) == -2
    assert trace.nodes["mu"]["value"].shape == (5, 1)
    per_draw = sum(sum_to_outer(site["fn"].log_prob(site["value"]), 1, 5)
                   for site in trace.nodes.values() if site["type"] == "sample")
    for k in range(5):  # each draw's total is the single run at that draw
        mu = trace.nodes["mu"]["value"][k, 0]
        alone = poutine.trace(poutine.condition(_model, {"mu": mu})).get_trace(y)
        assert float(per_draw[k]) == pytest.approx(float(alone.log_prob_sum()), rel=1e-6)


def test_sum_to_outer_broadcasts_shared_sites_and_refuses_extra_dims():
    shared = torch.tensor([1.0, 2.0])  # a data-plate site that does not see the draws
    assert torch.equal(sum_to_outer(shared, 1, 4), torch.full((4,), 3.0))
    one = torch.ones(1, 3)  # size-1 outer dim: the same for every draw
    assert torch.equal(sum_to_outer(one, 1, 4), torch.full((4,), 3.0))
    inner = torch.arange(24.0).reshape(4, 2, 3)  # (draws, plate, plate)
    assert torch.equal(sum_to_outer(inner, 2, 4), inner.reshape(4, -1).sum(-1))
    with pytest.raises(ValueError, match="site 'w' has log-density shape \\(2, 4, 3\\)"):
        sum_to_outer(torch.zeros(2, 4, 3), 1, 4, name="w", strict=True)
