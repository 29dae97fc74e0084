import json

import pytest

from ppl_gen.cli import main


def test_list_prints_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("eight_schools", "gmm", "ppca", "mnist", "two_moons", "nuts", "em"):
        assert name in out


def test_fit_em_writes_a_complete_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "gmm", "--engine", "em", "--out", str(out), "--device", "cpu"]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "summary.json", "checkpoint.pt", "posterior.nc",
            "history.png"} <= files
    summary = json.loads((out / "summary.json").read_text())
    lls = summary["log_likelihood"]
    assert all(b >= a - 1e-6 for a, b in zip(lls, lls[1:]))


def test_fit_nuts_writes_trace_and_pair_plots(tmp_path):
    out = tmp_path / "nuts"
    code = main(["fit", "eight_schools", "--engine", "nuts", "--out", str(out), "--device",
                 "cpu", "--num-warmup", "30", "--num-samples", "30", "--num-chains", "2",
                 "--option", "jit_compile=true"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"mean", "sd", "r_hat", "ess_bulk", "ess_tail"} <= set(summary["parameters"]["mu"])
    assert "divergences" in summary
    assert {"trace.png", "pair.png", "posterior.nc"} <= {p.name for p in out.iterdir()}


def test_fit_svi_records_the_elbo_history(tmp_path):
    out = tmp_path / "svi"
    assert main(["fit", "linear_regression", "--data", "linear_regression", "--out",
                 str(out), "--device", "cpu", "--num-steps", "50", "--guide", "mvn",
                 "--data-option", "correlation=0.5"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["elbo"]) == 50
    config = json.loads((out / "config.json").read_text())
    assert config["dataset_options"]["correlation"] == 0.5


@pytest.mark.parametrize("argv,message", [
    (["fit", "no_such_model", "--out", "{out}"], "unknown model 'no_such_model'; valid "
                                                  "models are"),
    (["fit", "gmm", "--data", "cifar", "--out", "{out}"], "unknown dataset 'cifar'"),
    (["fit", "gmm", "--engine", "gibbs", "--out", "{out}"], "unknown engine 'gibbs'"),
    (["fit", "gmm", "--engine", "nuts", "--num-chains", "0", "--out", "{out}"],
     "num_chains must be an integer >= 1"),
    (["fit", "gmm", "--learning-rate", "-1", "--out", "{out}"],
     "learning_rate must be a finite number > 0"),
    (["fit", "gmm", "--engine", "em", "--num-chains", "2", "--out", "{out}"],
     "--num-chains does not apply to engine 'em'"),
    (["fit", "gmm", "--option", "foo=1", "--out", "{out}"], "unknown svi option 'foo'"),
    (["fit", "eight_schools", "--data", "iris", "--out", "{out}"], "needs data tensor"),
    (["fit", "gmm", "--device", "tpu", "--out", "{out}"], "unknown device 'tpu'"),
])
def test_user_errors_exit_2_with_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    argv = [a.replace("{out}", str(out)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()  # nothing half-written


def test_existing_run_is_kept(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "gmm", "--engine", "em", "--out", str(out), "--device", "cpu"]) == 0
    before = (out / "summary.json").read_bytes()
    assert main(["fit", "gmm", "--engine", "em", "--max-iter", "1", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "summary.json").read_bytes() == before


def test_demo_smoke(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--out", str(out), "--device", "cpu"]) == 0
    result = json.loads((out / "comparison.json").read_text())
    assert set(result["approximations"]) == {"meanfield", "fullrank"}
    assert {"comparison.md", "comparison.png"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize("model, engine, options", [
    ("aae", "adversarial", ["--data", "digits", "--option", "num_steps=3", "--option",
                            "batch_size=32"]),
    ("cvae", "svi", ["--data", "digits", "--option", "num_steps=3", "--option",
                     "batch_size=32"]),
    ("eight_schools", "chees", ["--option", "num_warmup=20", "--option", "num_samples=20",
                                "--option", "num_chains=4"]),
])
def test_fit_new_engines_and_deep_models_from_the_command_line(model, engine, options,
                                                               tmp_path):
    out = tmp_path / model
    assert main(["fit", model, "--engine", engine, *options, "--out", str(out), "--device",
                 "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == engine
    assert (out / "checkpoint.pt").exists()


def test_a_clean_svi_run_prints_no_warnings(tmp_path, capfd):
    """ArviZ used to log "Shape validation failed" for every one-chain SVI summary."""
    assert main(["fit", "eight_schools", "--num-steps", "30", "--guide", "normal", "--out",
                 str(tmp_path / "svi"), "--device", "cpu", "--vi-draws", "200"]) == 0
    captured = capfd.readouterr()
    assert "WARNING" not in captured.err.upper() and "Warning" not in captured.err


def test_fit_ddpm_from_the_command_line_summarises_quickly(tmp_path, monkeypatch):
    """The summary evaluates DDPM's bound with one x_t draw per timestep (it once used a
    VAE's 100 importance samples: 100 x T network passes per row, minutes)."""
    from ppl_gen.models.ddpm import DDPM

    draws = []
    real_bound = DDPM.bound

    def bound(self, x, *, num_samples=1, **kwargs):
        draws.append(num_samples)
        return real_bound(self, x, num_samples=num_samples, **kwargs)

    monkeypatch.setattr(DDPM, "bound", bound)
    out = tmp_path / "ddpm"
    assert main(["fit", "ddpm", "--num-steps", "5", "--model-option", "num_steps=20",
                 "--data-option", "num_data=300", "--out", str(out), "--device", "cpu"]) == 0
    assert {"samples.png", "summary.json", "history.json"} <= {p.name for p in out.iterdir()}
    assert draws and max(draws) == 1


def test_model_options_take_tuples_and_name_a_bad_one():
    from ppl_gen.cli import _literal

    assert _literal("(16,)") == (16,)
    assert _literal("[64, 64]") == (64, 64)
    assert _literal("3") == 3 and _literal("true") is True and _literal("mlp") == "mlp"
    with pytest.raises(ValueError, match=r"write it like \(64, 64\)"):
        _literal("(64, 64")
