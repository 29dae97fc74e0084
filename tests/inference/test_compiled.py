"""Trace-and-compile (``ppl_gen.inference.compiled``): the compiled function must compute
what the eager one does, and anything it cannot trace must fall back (or, when a backend is
demanded, fail) with the reason."""

import contextlib

import pyro
import pytest
import torch

import ppl_gen
from ppl_gen.diagnostics import mcse
from ppl_gen.inference import make_problem
from ppl_gen.inference.batched import BatchedPotential
from ppl_gen.inference.chees import _leapfrog
from ppl_gen.inference.compiled import CompileError, compile_function, tracing
from tests.conftest import assert_within_mcse, normal_normal


def _value_and_grad(x):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        value = (x.sin() * x.exp()).sum(-1)
        (grad,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), grad.detach()


def test_compiled_value_and_grad_matches_eager_on_new_inputs():
    example = torch.randn(4, 3, dtype=torch.float64)
    compiled = compile_function(_value_and_grad, (example,))
    assert compiled.backend in ("inductor", "fx")
    assert compiled.backend == "inductor" or "Inductor" in compiled.reason
    fresh = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for got, want in zip(compiled(fresh), _value_and_grad(fresh)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_fx_backend_replays_the_traced_graph():
    example = torch.randn(4, 3)
    compiled = compile_function(_value_and_grad, (example,), backend="fx")
    assert compiled.backend == "fx" and compiled.reason is None
    fresh = torch.randn(4, 3)
    for got, want in zip(compiled(fresh), _value_and_grad(fresh)):
        torch.testing.assert_close(got, want)


def _branchy(x):
    return x * 2 if float(x.sum()) > 0 else x * 3  # the branch depends on the value


def test_value_dependent_python_falls_back_to_eager_with_the_reason():
    compiled = compile_function(_branchy, (torch.ones(3),), name="branchy")
    assert compiled.backend == "eager"
    assert "branchy" in compiled.reason and "tensor's value in Python" in compiled.reason
    torch.testing.assert_close(compiled(-torch.ones(3)), -3 * torch.ones(3))  # still right


def test_demanded_backend_that_cannot_trace_raises():
    with pytest.raises(CompileError, match="tracing\\(\\).*compile=False"):
        compile_function(_branchy, (torch.ones(3),), backend="fx")
    with pytest.raises(ValueError, match="unknown compile backend 'fast'"):
        compile_function(_branchy, (torch.ones(3),), backend="fast")


def test_eager_backend_is_the_function_itself():
    compiled = compile_function(_branchy, (torch.ones(3),), backend=False)
    assert compiled.backend == "eager" and compiled.fn is _branchy


def test_tracing_flag_is_set_only_while_tracing():
    seen = []

    def f(x):
        seen.append(tracing())
        return x + 1

    assert not tracing()
    compile_function(f, (torch.ones(2),), backend="fx")
    # the eager reference run, then the trace; the traced graph never calls f again
    assert seen == [False, True]


def test_compiled_leapfrog_matches_eager_with_some_chains_masked():
    ds = ppl_gen.load_dataset("eight_schools", dtype=torch.float64)
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds).double()
    potential = BatchedPotential(make_problem(model, ds, device="cpu"))
    gen = torch.Generator().manual_seed(0)
    q = potential.initial(8, gen)
    with pyro.validation_enabled(False):
        energy, grad = potential.value_and_grad(q)
    args = (q, torch.randn(q.shape, generator=gen, dtype=q.dtype), grad, energy,
            torch.rand(8, 1, generator=gen, dtype=q.dtype) * 0.3,
            torch.rand(q.shape, generator=gen, dtype=q.dtype) + 0.5,
            torch.tensor([True, False] * 4).unsqueeze(-1))
    with pyro.validation_enabled(False):
        compiled = compile_function(_leapfrog(potential), args)
        assert compiled.backend != "eager", compiled.reason
        # different values, same shapes: a fresh position, other chains masked
        args = (q + 0.3, *args[1:6], ~args[6])
        for got, want in zip(compiled(*args), _leapfrog(potential)(*args)):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
        assert torch.equal(compiled(*args)[0][::2], args[0][::2])  # masked chains stay


@contextlib.contextmanager
def _always_compile():
    """Make compile="auto" judge compiling free, so it always tries."""
    from ppl_gen.inference import chees

    saved = chees.compile_cost
    chees.compile_cost = lambda: 1e-6
    try:
        yield
    finally:
        chees.compile_cost = saved


def test_chees_reports_the_backend_and_samples_an_untraceable_model_eagerly():
    y = torch.tensor([0.8, 1.3, 0.4, 1.9, 1.1])

    def checked(y):
        if not torch.all(torch.isfinite(y)):  # a value check on data, not guarded
            raise ValueError("y must be finite")
        normal_normal(y)

    with _always_compile():  # a run this short would otherwise stay eager by choice
        result = ppl_gen.fit(checked, {"y": y}, engine="chees", num_chains=8,
                             num_warmup=200, num_samples=200, seed=0, device="cpu")
    assert result.info["compiled"] == "eager"
    assert "tensor's value in Python" in result.info["compile_reason"]
    draws = result.samples["mu"].numpy()
    assert_within_mcse(draws.mean(), float(y.sum() / 6), mcse(draws), label="mu")
    with pytest.raises(CompileError, match="tracing failed|tracing .* failed"):
        ppl_gen.fit(checked, {"y": y}, engine="chees", num_chains=4, num_warmup=2,
                    num_samples=2, compile="fx", device="cpu")


def test_guarded_data_check_compiles():
    ds = ppl_gen.load_dataset("breast_cancer")
    data = {"x": ds["x"][:, :3], "y": ds["y"]}
    model = ppl_gen.MODELS["logistic_regression"].from_dataset(data)  # checks y with tracing()
    with _always_compile():
        result = ppl_gen.fit(model, data, engine="chees", num_chains=4, num_warmup=5,
                             num_samples=5, seed=0, device="cpu")
    assert result.info["compiled"] in ("inductor", "fx"), result.info["compile_reason"]


def test_auto_compiles_only_when_it_saves_time(monkeypatch):
    """compile="auto" times the eager step and compiles only when the rest of the run is
    expected to cost more than compiling (asked after 10 iterations and after warmup)."""
    from ppl_gen.inference import chees

    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    # eager runs earlier in this process would count toward compiling (ski rental)
    monkeypatch.setattr(chees, "_eager_seconds_in_process", 0.0)
    short = ppl_gen.fit(model, ds, engine="chees", num_chains=4, num_warmup=20,
                        num_samples=20, seed=0, device="cpu")
    assert short.info["compiled"] == "eager"
    assert short.info["compile_decision"].startswith("eager: the remaining")
    monkeypatch.setattr(chees, "compile_cost", lambda: 1e-6)
    cheap = ppl_gen.fit(model, ds, engine="chees", num_chains=4, num_warmup=20,
                        num_samples=20, seed=0, device="cpu")
    assert cheap.info["compiled"] in ("inductor", "fx")
    assert cheap.info["compile_decision"].startswith("compiled: the remaining")


def test_a_run_that_inductor_does_not_pay_for_is_traced_with_the_same_draws(monkeypatch):
    """When Inductor's compile would cost more than it saves but the run is long enough,
    compile="auto" replays the traced ATen graph: the same ops as eager Pyro, so the draws
    are bit-identical to compile=False."""
    from ppl_gen.inference import chees

    monkeypatch.setattr(chees, "compile_cost", lambda: 1e6)  # Inductor never pays
    monkeypatch.setattr(chees, "TRACE_SECONDS", 1e-6)  # tracing always does
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    traced = ppl_gen.fit(model, ds, engine="chees", num_chains=4, num_warmup=30,
                         num_samples=30, seed=3, device="cpu")
    assert traced.info["compiled"] == "fx"
    assert traced.info["compile_decision"].startswith("traced: the remaining")
    eager = ppl_gen.fit(model, ds, engine="chees", num_chains=4, num_warmup=30,
                        num_samples=30, seed=3, compile=False, device="cpu")
    for name, value in eager.samples.items():
        assert torch.equal(value, traced.samples[name]), name


def test_the_compile_cost_counts_an_empty_inductor_cache(monkeypatch, tmp_path):
    """A first compile in a process with an empty disk cache pays every kernel's build
    (15.8 s against 6.2 s measured for eight schools): compile="auto" prices it so."""
    from ppl_gen.inference import chees

    monkeypatch.setattr(chees, "_compiled_in_process", False)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "empty"))
    assert chees.compile_cost() == chees.COMPILE_SECONDS + chees.COLD_CACHE_STARTUP_SECONDS
    assert not (tmp_path / "empty").exists()  # a check, not Inductor's cache_dir(): no mkdir
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "kernel").write_text("")
    assert chees.compile_cost() == chees.COMPILE_SECONDS + chees.COMPILE_STARTUP_SECONDS
    monkeypatch.setattr(chees, "_compiled_in_process", True)
    assert chees.compile_cost() == chees.COMPILE_SECONDS


def test_many_short_eager_runs_end_up_compiling(monkeypatch):
    """Ski rental across fits: a process whose eager runs have already cost more than
    compiling would compiles the next one, though that run alone is short."""
    from ppl_gen.inference import chees

    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    monkeypatch.setattr(chees, "compile_cost", lambda: 5.0)
    monkeypatch.setattr(chees, "_eager_seconds_in_process", 0.0)
    first = ppl_gen.fit(model, ds, engine="chees", num_chains=4, num_warmup=20,
                        num_samples=20, seed=0, device="cpu")
    assert first.info["compiled"] == "eager" and chees._eager_seconds_in_process > 0
    monkeypatch.setattr(chees, "_eager_seconds_in_process", 11.0)  # as if many runs before
    later = ppl_gen.fit(model, ds, engine="chees", num_chains=4, num_warmup=20,
                        num_samples=20, seed=0, device="cpu")
    assert later.info["compiled"] in ("inductor", "fx"), later.info["compile_decision"]


def test_bad_compile_setting():
    ds = ppl_gen.load_dataset("eight_schools")
    with pytest.raises(ValueError, match="compile must be"):
        ppl_gen.fit(ppl_gen.MODELS["eight_schools"].from_dataset(ds), ds, engine="chees",
                    compile="fast")
