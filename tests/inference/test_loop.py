"""The one run loop: checkpoints, resume (bit-identical on CPU), Ctrl-C, kill -9, the
NaN guard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import ppl_gen
from ppl_gen.inference import ENGINES, Interrupted
from ppl_gen.inference.loop import load_resume


class Crash(Exception):
    """Stands in for a crash at a given step (the in-process tests)."""


def _crash_at(step):
    def callback(index, state, info):
        if index + 1 == step:
            raise Crash(step)
    return callback


def _svi_setup():
    torch.manual_seed(0)
    ds = ppl_gen.load_dataset("digits")
    data = {"x": (ds["x"][:64] > 0.5).float()}
    model = ppl_gen.MODELS["vae"].from_dataset(data, latent_dim=2, hidden_dims=(16,))
    options = dict(engine="svi", num_steps=30, batch_size=16, learning_rate=1e-2,
                   num_threads=1)
    return model, data, options


def _chees_setup():
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    options = dict(engine="chees", num_warmup=60, num_samples=40, num_chains=8,
                   compile=False)
    return model, ds, options


def _chees_diagonal_traced_setup():
    """A diagonal metric (per chain, C x D: 2-D like a dense one) with a traced leapfrog:
    resuming once recompiled it with the dense leapfrog and failed ("mat1 and mat2 shapes
    cannot be multiplied (8x10 and 8x10)")."""
    model, ds, options = _chees_setup()
    return model, ds, {**options, "mass_matrix": "diagonal", "compile": "fx"}


def _em_setup():
    ds = ppl_gen.load_dataset("gaussian_mixture")
    return ppl_gen.MODELS["gmm"].from_dataset(ds), ds, dict(engine="em", max_iter=20,
                                                           tol=0.0)


def _adversarial_setup():
    torch.manual_seed(0)
    ds = ppl_gen.load_dataset("digits")
    data = {"x": (ds["x"][:64] > 0.5).float()}
    model = ppl_gen.MODELS["aae"].from_dataset(data, latent_dim=2, hidden_dims=(16,),
                                               discriminator_dims=(8,))
    return model, data, dict(engine="adversarial", num_steps=12, batch_size=16,
                             num_threads=1)


SETUPS = {"svi": (_svi_setup, 7, 17), "chees": (_chees_setup, 10, 47),
          "chees-diagonal-traced": (_chees_diagonal_traced_setup, 10, 47),
          "em": (_em_setup, 4, 9), "adversarial": (_adversarial_setup, 5, 8)}


def _fit(setup, **kwargs):
    model, data, options = setup()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ppl_gen.fit(model, data, device="cpu", seed=3, **options, **kwargs)


def _assert_identical(a, b):
    assert a.history.keys() == b.history.keys()
    for key in a.history:
        assert (a.history[key] == b.history[key]).all(), key
    if a.samples is not None:
        for key in a.samples:
            assert torch.equal(a.samples[key], b.samples[key]), key
    if a.problem.module is not None:
        for (name, x), (_, y) in zip(a.problem.module.state_dict().items(),
                                     b.problem.module.state_dict().items()):
            assert torch.equal(x, y), name


@pytest.mark.parametrize("engine", sorted(SETUPS))
def test_resume_after_a_crash_gives_the_uninterrupted_result(engine, tmp_path):
    setup, every, crash = SETUPS[engine]
    reference = _fit(setup)
    checkpoint = tmp_path / "resume.pt"
    with pytest.raises(Crash):
        _fit(setup, checkpoint=checkpoint, checkpoint_every=every, callback=_crash_at(crash))
    saved = load_resume(checkpoint)
    assert saved["step"] == (crash // every) * every
    assert saved["engine"] == engine.split("-")[0]
    resumed = _fit(setup, resume=checkpoint)
    assert resumed.info["resumed_from"] == saved["step"]
    _assert_identical(reference, resumed)


def test_every_engine_declares_the_contract():
    for name, engine in ENGINES.items():
        assert engine.name == name
        assert engine.kind in ("optimiser", "sampler", "point", "two-player", "approximation")
        assert engine.resumable or engine.cannot_resume


def test_a_checkpoint_of_another_fit_is_refused(tmp_path):
    checkpoint = tmp_path / "resume.pt"
    with pytest.raises(Crash):
        _fit(_em_setup, checkpoint=checkpoint, checkpoint_every=2, callback=_crash_at(5))
    model, data, options = _em_setup()
    with pytest.raises(ValueError, match="belongs to another fit.*max_iter"):
        ppl_gen.fit(model, data, device="cpu", seed=3, resume=checkpoint,
                    **{**options, "max_iter": 21})
    with pytest.raises(ValueError, match="belongs to another fit.*seed"):
        ppl_gen.fit(model, data, device="cpu", seed=4, resume=checkpoint, **options)
    with pytest.raises(FileNotFoundError, match="no resume checkpoint"):
        ppl_gen.fit(model, data, device="cpu", resume=tmp_path / "none.pt", **options)
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        ppl_gen.fit(model, data, device="cpu", resume=tmp_path / "bad.pt", **options)


def test_engines_that_cannot_resume_say_so(tmp_path):
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    with pytest.raises(ValueError, match="cannot checkpoint or resume.*use engine 'chees'"):
        ppl_gen.fit(model, ds, engine="nuts", checkpoint=tmp_path / "c.pt", device="cpu")
    with pytest.raises(ValueError, match="need checkpoint=PATH"):
        ppl_gen.fit(model, ds, engine="chees", checkpoint_every=5, device="cpu")


def test_nan_guard_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    ds = ppl_gen.load_dataset("breast_cancer")
    model = ppl_gen.MODELS["logistic_regression"].from_dataset(ds)
    checkpoint = tmp_path / "resume.pt"
    with pytest.raises(FloatingPointError) as caught:
        ppl_gen.fit(model, ds, engine="svi", num_steps=50, learning_rate=1e12,
                    device="cpu", checkpoint=checkpoint, checkpoint_every=1)
    message = str(caught.value)
    assert "lower learning_rate" in message and "stopped at step" in message
    good = load_resume(checkpoint)
    assert f"last good checkpoint (step {good['step']})" in message
    assert all(torch.isfinite(p).all() for p in good["engine_state"]["params"])


_SCRIPT = """
import os, signal, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {tests!r})
from inference.test_loop import SETUPS, _fit
from ppl_gen.inference import Interrupted
engine, step, how, checkpoint = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def callback(index, state, info):
    if index + 1 == step:
        os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGINT)
setup, every, _ = SETUPS[engine]
try:
    _fit(setup, checkpoint=checkpoint, checkpoint_every=every, callback=callback)
except Interrupted as error:
    print(error)
    sys.exit(130)
"""


@pytest.mark.parametrize("engine, how", [("svi", "kill"), ("chees", "kill"),
                                         ("svi", "ctrl-c")])
def test_kill_9_or_ctrl_c_then_resume_gives_the_uninterrupted_result(engine, how, tmp_path):
    script = tmp_path / "fit.py"
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script.write_text(textwrap.dedent(_SCRIPT.format(tests=tests)))
    checkpoint = tmp_path / "resume.pt"
    setup, every, crash = SETUPS[engine]
    process = subprocess.run([sys.executable, str(script), engine, str(crash), how,
                              str(checkpoint)], capture_output=True, text=True, timeout=300)
    if how == "kill":
        assert process.returncode == -signal.SIGKILL, process.stderr
        expected_step = (crash // every) * every
    else:
        assert process.returncode == 130, process.stderr
        assert f"interrupted after step {crash}" in process.stdout
        expected_step = crash  # Ctrl-C saves after the step it interrupted
    assert load_resume(checkpoint)["step"] == expected_step
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".resume.pt")]
    _assert_identical(_fit(setup), _fit(setup, resume=checkpoint))


def test_ctrl_c_without_a_checkpoint_says_nothing_was_saved():
    def interrupt(index, state, info):
        if index == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match="nothing was saved"):
        _fit(_em_setup, callback=interrupt)


def _resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_does_not_grow_over_a_long_enumerated_svi_fit():
    """pyro#3068: TraceEnum_ELBO once leaked every step's tensors (GBs on the GMM
    tutorial). Live tensors and resident memory are measured at step 100 and at step
    800 of a GMM fit with z summed out."""
    import gc

    ds = ppl_gen.load_dataset("gaussian_mixture")
    model = ppl_gen.MODELS["gmm"].from_dataset(ds)
    seen = {}

    def measure(index, state, info):
        if index + 1 in (100, 800):
            gc.collect()
            seen[index + 1] = (sum(torch.is_tensor(o) for o in gc.get_objects()),
                               _resident_mb())

    result = ppl_gen.fit(model, ds, engine="svi", num_steps=800, learning_rate=0.01,
                         device="cpu", callback=measure)
    assert result.info["loss"] == "TraceEnum_ELBO"
    tensors = seen[800][0] - seen[100][0]
    growth = seen[800][1] - seen[100][1]
    # A leak of one 600 x 3 tensor per step would be 700 tensors and ~10 MB here.
    assert tensors <= 10, f"{tensors} more live tensors after 700 more steps"
    assert growth < 20, f"resident memory grew {growth:.1f} MB over 700 steps"


def test_library_calls_leave_the_callers_random_state_alone():
    import random

    import numpy as np

    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    vae = ppl_gen.MODELS["vae"].from_dataset({"x": torch.ones(4, 3)}, latent_dim=1)
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    result = ppl_gen.fit(model, ds, engine="svi", num_steps=5, guide="normal", device="cpu")
    ppl_gen.diagnostics.summarize(result, num_samples=5, seed=9)
    vae.log_prob(torch.ones(4, 3), num_samples=3, seed=0)
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]
