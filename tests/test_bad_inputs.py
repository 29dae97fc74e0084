"""Every bad input a user can give, from the command line and from Python: one clear error
that names the problem (and the fix), and nothing already saved changes.

Each case runs against the same workspace: an earlier run folder, a folder of the user's
own files, a plain file and a path that does not exist yet. The bytes of every file in the
workspace are hashed before and after each case.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

import ppl_gen
from ppl_gen.cli import main
from ppl_gen.config import EMConfig, MCMCConfig, SVIConfig
from ppl_gen.diagnostics import compare_posteriors, summarize, to_inference_data
from ppl_gen.io import ForeignFolderError, RunExistsError, load_run, save_run
from ppl_gen.models import build_model


def _hash_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("workspace")
    assert main(["fit", "gmm", "--engine", "em", "--max-iter", "5", "--out",
                 str(root / "run"), "--device", "cpu"]) == 0
    user = root / "user"
    user.mkdir()
    (user / "summary.json").write_text('{"mine": true}\n')  # looks like a run's, is not
    (user / "history.json").write_text("[1, 2, 3]\n")
    (user / "notes.txt").write_text("my own notes\n")
    (root / "a_file").write_text("keep me\n")
    return root


# (argv, message). {run}: an earlier run; {user}: the user's own folder; {file}: a file;
# {new}: a path that does not exist.
CLI_CASES = [
    (["fit", "no_such_model", "--out", "{new}"], "unknown model 'no_such_model'"),
    (["fit", "gmm", "--data", "cifar", "--out", "{new}"], "unknown dataset 'cifar'"),
    (["fit", "gmm", "--engine", "gibbs", "--out", "{new}"], "unknown engine 'gibbs'"),
    (["fit", "gmm", "--engine", "em", "--num-chains", "2", "--out", "{new}"],
     "--num-chains does not apply to engine 'em'"),
    (["fit", "eight_schools", "--engine", "nuts", "--num-chains", "0", "--out", "{new}"],
     "num_chains must be an integer >= 1"),
    (["fit", "gmm", "--learning-rate", "-1", "--out", "{new}"],
     "learning_rate must be a finite number > 0"),
    (["fit", "gmm", "--learning-rate", "0.01", "--final-learning-rate", "0.1", "--out",
      "{new}"], "final_learning_rate (0.1) is larger than learning_rate (0.01)"),
    (["fit", "gmm", "--option", "foo=1", "--out", "{new}"], "unknown svi option 'foo'"),
    (["fit", "gmm", "--option", "num_steps=abc", "--out", "{new}"],
     "--option num_steps=abc: expected an integer"),
    (["fit", "gmm", "--option", "progress_bar=maybe", "--out", "{new}"],
     "expected true/false, got 'maybe'"),
    (["fit", "gmm", "--option", "compile=maybe", "--out", "{new}"], "compile must be"),
    (["fit", "gmm", "--option", "batch_size=0", "--out", "{new}"],
     "batch_size must be 'auto', None or an integer >= 1"),
    (["fit", "gmm", "--batch-size", "100000", "--num-steps", "2", "--out", "{new}",
      "--device", "cpu"], "batch_size=100000 is larger than the data (600 rows)"),
    (["fit", "gmm", "--guide", "bogus", "--out", "{new}"], "unknown guide 'bogus'"),
    (["fit", "gmm", "--option", "init=prior", "--out", "{new}"], "unknown init 'prior'"),
    (["fit", "gmm", "--loss", "bogus", "--out", "{new}"], "unknown loss 'bogus'"),
    (["fit", "gmm", "--option", "loss=iwae", "--out", "{new}"],
     "loss='iwae' needs num_particles >= 2"),
    (["fit", "gmm", "--engine", "em", "--option", "tol=-1", "--out", "{new}"],
     "tol must be a finite number >= 0"),
    (["fit", "gmm", "--engine", "em", "--max-iter", "0", "--out", "{new}"],
     "max_iter must be an integer >= 1"),
    (["fit", "eight_schools", "--engine", "nuts", "--num-steps", "5", "--out", "{new}"],
     "num_steps (a fixed number of leapfrog steps) applies to engine 'hmc' only"),
    (["fit", "eight_schools", "--engine", "hmc", "--option", "max_tree_depth=5", "--out",
      "{new}"], "max_tree_depth bounds NUTS's trajectory doubling"),
    (["fit", "gmm", "--engine", "em", "--out", "/sys/ppl_gen_test/run"],
     "cannot be written"),
    (["fit", "eight_schools", "--engine", "nuts", "--option", "kernel=hmc", "--out",
      "{new}"], "option kernel='hmc' contradicts engine 'nuts'"),
    (["fit", "eight_schools", "--engine", "nuts", "--target-accept-prob", "1.5", "--out",
      "{new}"], "target_accept_prob must lie strictly between 0 and 1"),
    (["fit", "eight_schools", "--engine", "nuts", "--num-warmup", "-1", "--out", "{new}"],
     "num_warmup must be an integer >= 0"),
    (["fit", "eight_schools", "--engine", "chees", "--num-chains", "1", "--out", "{new}"],
     "num_chains must be an integer >= 2"),
    (["fit", "eight_schools", "--engine", "chees", "--option", "mass_matrix=full",
      "--out", "{new}"], "mass_matrix must be 'auto', 'diagonal' or 'dense'"),
    (["fit", "aae", "--engine", "adversarial", "--option", "betas=2,3", "--out", "{new}"],
     "betas must be two numbers in [0, 1)"),
    (["fit", "aae", "--engine", "adversarial", "--option", "discriminator_steps=0",
      "--out", "{new}"], "discriminator_steps must be an integer >= 1"),
    (["fit", "vae", "--engine", "nuts", "--out", "{new}"],
     "model VAE does not support engine 'nuts'"),
    (["fit", "gmm", "--engine", "chees", "--out", "{new}"],
     "does not support engine 'chees': it has no latent sample sites"),
    (["fit", "ppca", "--engine", "adversarial", "--out", "{new}"],
     "does not support engine 'adversarial'"),
    (["fit", "eight_schools", "--engine", "em", "--out", "{new}"],
     "engine 'em' needs a model with initialize/e_step"),
    (["fit", "bayesian_gmm", "--engine", "em", "--out", "{new}"], "priors=True"),
    (["fit", "eight_schools", "--data", "iris", "--out", "{new}"], "needs data tensor"),
    (["fit", "gmm", "--device", "tpu", "--out", "{new}"], "unknown device 'tpu'"),
    (["fit", "gmm", "--model-option", "bogus=1", "--out", "{new}"],
     "unknown option(s) bogus for model 'gmm'; its options are: num_components"),
    (["fit", "dcgan", "--data", "mnist", "--engine", "adversarial", "--out", "{new}"],
     "a GAN needs continuous data, but x holds only 0 and 1"),
    (["fit", "gan", "--engine", "svi", "--out", "{new}"],
     "model GAN does not support engine 'svi'"),
    (["fit", "wgan", "--engine", "adversarial", "--model-option", "clip_value=0",
      "--out", "{new}"], "clip_value must be > 0"),
    (["fit", "gan", "--engine", "adversarial", "--model-option", "objective=hinge",
      "--out", "{new}"], "unknown GAN objective 'hinge'"),
    (["fit", "gmm", "--data-option", "bogus=1", "--out", "{new}"],
     "unknown option(s) bogus for dataset 'gaussian_mixture'"),
    (["fit", "gmm", "--data-option", "novalue", "--out", "{new}"],
     "--data-option 'novalue' must look like KEY=VALUE"),
    (["fit", "gmm", "--split", "banana", "--out", "{new}"], "unknown split 'banana'"),
    (["fit", "gmm", "--engine", "em", "--out", "{run}"], "already holds a run"),
    (["fit", "gmm", "--engine", "em", "--out", "{user}"],
     "is not empty and is not a ppl_gen run"),
    (["fit", "gmm", "--engine", "em", "--out", "{user}", "--overwrite"],
     "never writes into such a folder, even with --overwrite"),
    (["fit", "gmm", "--engine", "em", "--out", ""], "--out is empty"),
    (["fit", "gmm", "--engine", "em", "--out", "{file}"], "exists and is not a folder"),
    (["fit", "gmm", "--engine", "em", "--out", "{file}/sub"], "is a file, not a folder"),
    (["fit", "logistic_regression", "--learning-rate", "1e12", "--num-steps", "30",
      "--out", "{new}", "--device", "cpu"], "SVI loss became nan at step"),
    (["compare", "gmm", "--out", "{run}"], "already holds a run"),
    (["compare", "eight_schools", "--out", "{user}"], "is not a ppl_gen run"),
    (["compare", "no_such_model", "--out", "{new}"], "unknown model 'no_such_model'"),
    (["demo", "--out", "{user}"], "is not a ppl_gen run"),
    # argparse's own usage errors (exit status 2, no traceback)
    (["fit", "gmm", "--vi-draws", "0", "--out", "{new}"],
     "argument --vi-draws: must be an integer >= 1, got 0"),
    (["fit", "gmm", "--vi-draws", "-3", "--out", "{new}"], "must be an integer >= 1"),
    (["fit", "gmm", "--seed", "abc", "--out", "{new}"], "argument --seed: invalid int"),
    (["fit", "gmm"], "fit needs a model and --out (or --resume DIR)"),
    (["fit", "--resume", "{user}"], "is not an interrupted ppl_gen run"),
    (["fit", "--resume", "{run}"], "this run is complete; there is nothing to resume"),
    (["fit", "--resume", "{new}"], "no such folder"),
    (["fit", "gmm", "--resume", "{run}"], "--resume DIR reads the model and --out from DIR"),
    (["fit", "gmm", "--checkpoint-seconds", "-1", "--out", "{new}"],
     "checkpoint_seconds must be > 0"),
]


@pytest.mark.parametrize("argv, message", CLI_CASES,
                         ids=[" ".join(a[:4]) + f" #{i}" for i, (a, _) in enumerate(CLI_CASES)])
def test_cli_bad_input(argv, message, workspace, capsys, recwarn):
    paths = {"{run}": workspace / "run", "{user}": workspace / "user",
             "{file}": workspace / "a_file", "{new}": workspace / "new"}
    argv = [a for a in argv]
    for key, path in paths.items():
        argv = [a.replace(key, str(path)) for a in argv]
    before = _hash_tree(workspace)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err
    assert _hash_tree(workspace) == before  # nothing saved changed, nothing half-written


def test_cli_ctrl_c_exits_cleanly_and_keeps_the_folder(workspace, capsys, monkeypatch):
    import ppl_gen.inference as inference

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "fit", interrupted)
    before = _hash_tree(workspace)
    code = main(["fit", "gmm", "--engine", "em", "--out", str(workspace / "run"),
                 "--overwrite", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert _hash_tree(workspace) == before


# --- the Python API ------------------------------------------------------------------------

def _plain_model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def _typo_guide(y):
    loc = pyro.param("loc", torch.tensor(0.0))
    pyro.sample("mu_typo", dist.Normal(loc, 1.0))


def _discrete_model(y):
    p = pyro.sample("p", dist.Beta(1.0, 1.0))
    z = pyro.sample("z", dist.Bernoulli(p))
    pyro.sample("y", dist.Normal(2.0 * z, 1.0), obs=y)


@pytest.fixture(scope="module")
def fits():
    ds = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
    vi = ppl_gen.fit(model, ds, engine="svi", num_steps=20, guide="normal", device="cpu")
    other = {**ds.tensors, "y": ds["y"] + 1.0}
    vi_other = ppl_gen.fit(model, other, engine="svi", num_steps=20, guide="normal",
                           device="cpu")
    with pytest.warns(ppl_gen.diagnostics.ReliabilityWarning):
        mcmc = ppl_gen.fit(model, ds, engine="nuts", num_warmup=10, num_samples=10,
                           num_chains=1, device="cpu")
    mnist = ppl_gen.load_dataset("mnist")
    small = {"x": mnist["x"][:64], "y": mnist["y"][:64]}
    cvae = ppl_gen.MODELS["cvae"].from_dataset(mnist)
    return {"ds": ds, "model": model, "vi": vi, "vi_other": vi_other, "mcmc": mcmc,
            "mnist": small, "cvae": cvae}


def _api_cases():
    def fit_gmm(**kw):
        ds = ppl_gen.load_dataset("gaussian_mixture")
        return lambda f: ppl_gen.fit(ppl_gen.MODELS["gmm"].from_dataset(ds), ds,
                                     device="cpu", **kw)

    return [
        ("unknown engine", fit_gmm(engine="gibbs"), KeyError, "unknown engine 'gibbs'"),
        ("vae under nuts",
         lambda f: ppl_gen.fit(ppl_gen.MODELS["vae"].from_dataset(f["mnist"]),
                               {"x": f["mnist"]["x"]}, engine="nuts", device="cpu"),
         ValueError, "does not support engine 'nuts'"),
        ("kernel contradicts engine",
         lambda f: ppl_gen.fit(f["model"], f["ds"], engine="nuts",
                               config=MCMCConfig(kernel="hmc"), device="cpu"),
         ValueError, "pick one: engine='hmc', or kernel='nuts'"),
        ("config and options", fit_gmm(config=SVIConfig(), num_steps=3), ValueError,
         "not both"),
        ("wrong config class", fit_gmm(engine="svi", config=EMConfig()), TypeError,
         "engine 'svi' takes a SVIConfig, got EMConfig"),
        ("final lr above lr", lambda f: SVIConfig(learning_rate=0.01,
                                                  final_learning_rate=0.1),
         ValueError, "is larger than learning_rate"),
        ("bernoulli decoder, data x3",
         lambda f: ppl_gen.fit(ppl_gen.MODELS["vae"].from_dataset(f["mnist"]),
                               {"x": f["mnist"]["x"] * 3}, num_steps=2, device="cpu"),
         ValueError, "outside its distribution's support"),
        ("cvae float labels",
         lambda f: ppl_gen.fit(f["cvae"], {"x": f["mnist"]["x"],
                                           "y": f["mnist"]["y"].float() + 0.5},
                               num_steps=2, device="cpu"),
         ValueError, "labels y must be whole numbers 0..9"),
        ("cvae labels out of range",
         lambda f: ppl_gen.fit(f["cvae"], {"x": f["mnist"]["x"], "y": f["mnist"]["y"] + 10},
                               num_steps=2, device="cpu"),
         ValueError, "labels y must lie in 0..9"),
        ("classify non-binary pixels",
         lambda f: f["cvae"].classify(f["mnist"]["x"][:4] * 7.0),
         ValueError, "needs binary 0/1 pixels"),
        ("compare with no VI results", lambda f: compare_posteriors({}, f["mcmc"]),
         ValueError, "no VI results to compare"),
        ("compare fits of different data",
         lambda f: compare_posteriors(f["vi_other"], f["mcmc"]), ValueError,
         "fitted on different data ('y' differs)"),
        ("compare with a non-result", lambda f: compare_posteriors(f["vi"], "mcmc"),
         TypeError, "must be an MCMC FitResult"),
        ("compare two VI fits", lambda f: compare_posteriors(f["vi"], f["vi"]), ValueError,
         "must be an MCMC result"),
        ("to_inference_data with 0 draws",
         lambda f: to_inference_data(f["vi"], num_samples=0), ValueError,
         "num_samples must be an integer >= 1"),
        ("summarize with another fit's idata",
         lambda f: summarize(f["vi"], idata=to_inference_data(f["mcmc"])), ValueError,
         "idata comes from a different fit"),
        ("guide with a site the model lacks",
         lambda f: ppl_gen.fit(_plain_model, {"y": torch.tensor(1.0)}, guide=_typo_guide,
                               num_steps=2, device="cpu"),
         ValueError, "sample site(s) mu_typo that model '_plain_model' lacks"),
        ("discrete latent under chees",
         lambda f: ppl_gen.fit(_discrete_model, {"y": torch.tensor(1.0)}, engine="chees",
                               num_warmup=2, num_samples=2, num_chains=2, device="cpu"),
         ValueError, "discrete latent site(s) 'z' (Bernoulli)"),
        ("unknown data key",
         lambda f: ppl_gen.fit(_plain_model, {"y": torch.tensor(1.0), "w": 1.0},
                               device="cpu"),
         ValueError, "data key(s) w are not arguments of model '_plain_model'"),
        ("missing data", lambda f: ppl_gen.fit(_plain_model, {}, device="cpu"), ValueError,
         "needs data argument(s) y"),
        ("NaN in the data",
         lambda f: ppl_gen.fit(_plain_model, {"y": torch.tensor(float("nan"))},
                               device="cpu"),
         ValueError, "NaN"),
        ("unknown device",
         lambda f: ppl_gen.fit(_plain_model, {"y": torch.tensor(1.0)}, device="tpu"),
         ValueError, "unknown device 'tpu'"),
        ("unknown model option",
         lambda f: build_model("gmm", ppl_gen.load_dataset("gaussian_mixture"), bogus=1),
         ValueError, "unknown option(s) bogus for model 'gmm'"),
        ("wgan-gp critic with batch norm",
         lambda f: build_model("wgan_gp", ppl_gen.load_dataset("digits"),
                               architecture="dcgan", batch_norm=True),
         ValueError, "the gradient penalty is computed per sample"),
        ("cgan labels out of range",
         lambda f: ppl_gen.fit(build_model("cgan", ppl_gen.load_dataset("two_moons")),
                               {"x": torch.zeros(8, 2), "y": torch.full((8,), 5)},
                               engine="adversarial", num_steps=1, batch_size=4,
                               device="cpu"),
         ValueError, "labels y must lie in 0..1"),
        ("dcgan on data that is not an image grid",
         lambda f: build_model("dcgan", ppl_gen.load_dataset("two_moons")),
         ValueError, "image_shape"),
        ("log_prob of a GAN",
         lambda f: build_model("gan", ppl_gen.load_dataset("gaussian_ring")).log_prob(
             x=torch.zeros(2, 2)),
         NotImplementedError, "implicit model"),
        ("guide for a non-svi engine",
         lambda f: ppl_gen.fit(_plain_model, {"y": torch.tensor(1.0)}, engine="nuts",
                               guide=_typo_guide, device="cpu"),
         ValueError, "a guide is only used by engine 'svi'"),
    ]


API_CASES = _api_cases()


@pytest.mark.parametrize("name, call, error, message", API_CASES,
                         ids=[c[0] for c in API_CASES])
def test_api_bad_input(name, call, error, message, fits, workspace):
    before = _hash_tree(workspace)
    with pytest.raises(error) as caught:
        call(fits)
    assert message in str(caught.value)
    assert _hash_tree(workspace) == before


# --- run folders ---------------------------------------------------------------------------

def test_save_run_refuses_a_folder_of_the_users_files(workspace, fits):
    before = _hash_tree(workspace)
    for overwrite in (False, True):
        with pytest.raises(ForeignFolderError, match="not a ppl_gen run"):
            save_run(workspace / "user", fits["vi"], overwrite=overwrite)
    with pytest.raises(RunExistsError, match="already holds a run"):
        save_run(workspace / "run", fits["vi"])
    assert _hash_tree(workspace) == before
    assert not list(workspace.glob(".*partial*"))


def test_overwrite_replaces_the_folder_whole(tmp_path, fits):
    out = tmp_path / "run"
    idata = to_inference_data(fits["mcmc"])
    save_run(out, fits["mcmc"], summary=summarize(fits["mcmc"], idata=idata), idata=idata,
             figures={"trace": ppl_gen.plots.plot_trace(fits["mcmc"].samples)})
    assert {"posterior.nc", "trace.png"} <= {p.name for p in out.iterdir()}
    save_run(out, fits["vi"], summary=summarize(fits["vi"]), overwrite=True)
    names = {p.name for p in out.iterdir()}
    assert "trace.png" not in names and "posterior.nc" not in names  # nothing of the old run
    assert json.loads((out / "config.json").read_text())["engine"] == "svi"
    assert load_run(out)["checkpoint"]["engine"] == "svi"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging or old folder left


def test_a_failing_save_leaves_the_old_run_exactly(tmp_path, fits, monkeypatch):
    out = tmp_path / "run"
    save_run(out, fits["vi"], summary=summarize(fits["vi"]))
    before = _hash_tree(tmp_path)

    def broken(fig, path):
        raise OSError("disk full")

    monkeypatch.setattr(ppl_gen.plots, "save_figure", broken)
    with pytest.raises(OSError, match="disk full"):
        save_run(out, fits["mcmc"], figures={"trace": None}, overwrite=True)
    assert _hash_tree(tmp_path) == before


def test_options_documented_as_words_parse(tmp_path):
    for option in ("batch_size=auto", "compile=fx", "batch_size=none", "compile=false"):
        out = tmp_path / option.replace("=", "_")
        assert main(["fit", "eight_schools", "--num-steps", "3", "--guide", "normal",
                     "--option", option, "--out", str(out), "--device", "cpu",
                     "--vi-draws", "10"]) == 0
        config = json.loads((out / "config.json").read_text())["engine_config"]
        key, value = option.split("=")
        expected = {"none": None, "false": False}.get(value, value)
        assert config[key] == expected


_KILL_DURING_SAVE = """
import os, signal, sys, warnings
warnings.simplefilter("ignore")
import ppl_gen, ppl_gen.plots
from ppl_gen.io import save_run
ds = ppl_gen.load_dataset("eight_schools")
model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
result = ppl_gen.fit(model, ds, engine="svi", num_steps=3, guide="normal", device="cpu")
def die(fig, path):
    os.kill(os.getpid(), signal.SIGKILL)  # half the new run is on disk by now
ppl_gen.plots.save_figure = die
save_run(sys.argv[1], result, summary={"new": True}, figures={"history": None},
         overwrite=True)
"""


def test_kill_9_during_an_overwrite_save_leaves_the_old_run(tmp_path, fits):
    import subprocess
    import sys

    out = tmp_path / "run"
    save_run(out, fits["vi"], summary={"old": True})
    before = _hash_tree(tmp_path)
    script = tmp_path.parent / f"{tmp_path.name}_kill.py"
    script.write_text(_KILL_DURING_SAVE)
    process = subprocess.run([sys.executable, str(script), str(out)], capture_output=True,
                             text=True, timeout=300)
    assert process.returncode == -9, process.stderr
    stages = [p for p in tmp_path.iterdir() if p.name.startswith(".run.partial-")]
    assert len(stages) == 1  # the dead save's staging folder; the run itself untouched
    assert {k: v for k, v in _hash_tree(tmp_path).items()
            if not k.startswith(".run.partial-")} == before
    assert json.loads((out / "summary.json").read_text()) == {"old": True}
    save_run(out, fits["vi"], summary={"next": True}, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # stale stage removed


def test_stale_staging_folders_of_dead_processes_are_removed(tmp_path, fits):
    out = tmp_path / "run"
    stale = tmp_path / ".run.partial-999999999-abc"  # no such process
    stale.mkdir()
    (stale / "checkpoint.pt").write_bytes(b"half")
    save_run(out, fits["vi"])
    assert not stale.exists() and (out / ".ppl_gen_run.json").exists()


def test_an_empty_folder_is_used(tmp_path, fits):
    out = tmp_path / "empty"
    out.mkdir()
    save_run(out, fits["vi"])
    assert (out / "config.json").exists()


def test_run_files_follow_the_umask(tmp_path, fits):
    import os

    old = os.umask(0o022)
    try:
        out = save_run(tmp_path / "run", fits["vi"], summary=summarize(fits["vi"]))
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    assert (out / "summary.json").stat().st_mode & 0o777 == 0o644


def test_truncated_posterior_netcdf_fails_clearly(tmp_path, fits):
    out = tmp_path / "run"
    idata = to_inference_data(fits["mcmc"])
    save_run(out, fits["mcmc"], idata=idata)
    data = (out / "posterior.nc").read_bytes()
    (out / "posterior.nc").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="posterior.nc is corrupt or truncated"):
        load_run(out)


def test_a_run_from_before_the_marker_is_still_a_run(tmp_path, fits):
    out = save_run(tmp_path / "old", fits["vi"])
    (out / ".ppl_gen_run.json").unlink()  # as written by ppl_gen 0.1 before this change
    assert load_run(out)["config"]["engine"] == "svi"
    with pytest.raises(RunExistsError):
        save_run(out, fits["vi"])
    shutil.rmtree(out)
