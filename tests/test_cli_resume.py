"""``ppl-gen fit`` interrupted by Ctrl-C leaves a resumable partial run; ``--resume``
finishes it with the result of an uninterrupted fit; a run being replaced stays intact
until its replacement is complete."""

from __future__ import annotations

import hashlib
import json
import os
import signal

import pytest

import ppl_gen.inference as inference
from ppl_gen.cli import main
from ppl_gen.io import load_run, run_status

FIT = ["fit", "logistic_regression", "--num-steps", "40", "--checkpoint-every", "5",
       "--device", "cpu", "--vi-draws", "50"]


def _interrupt_at(monkeypatch, step):
    """Ctrl-C (a real SIGINT to this process) during step ``step`` of the next fit."""
    real_fit = inference.fit

    def fit(*args, **kwargs):
        def callback(index, state, info):
            if index + 1 == step:
                os.kill(os.getpid(), signal.SIGINT)
        return real_fit(*args, callback=callback, **kwargs)

    monkeypatch.setattr(inference, "fit", fit)
    return real_fit


def _tree(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())}


def test_ctrl_c_leaves_a_partial_run_that_resume_finishes_exactly(tmp_path, monkeypatch,
                                                                  capsys):
    reference = tmp_path / "reference"
    assert main([*FIT, "--out", str(reference)]) == 0
    out = tmp_path / "run"
    real_fit = _interrupt_at(monkeypatch, 12)
    assert main([*FIT, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted after step 12 of 40" in err and f"--resume {out}" in err
    assert "Traceback" not in err
    assert run_status(out) == "partial"
    assert {"resume.pt", "cli.json", ".ppl_gen_run.json"} <= {p.name for p in out.iterdir()}
    with pytest.raises(ValueError, match="holds an interrupted run"):
        load_run(out)
    assert main([*FIT, "--out", str(out)]) == 2  # a fresh fit must not clobber it
    assert "holds an interrupted run; continue it with ppl-gen fit --resume" in \
        capsys.readouterr().err
    monkeypatch.setattr(inference, "fit", real_fit)
    assert main(["fit", "--resume", str(out)]) == 0
    assert run_status(out) == "complete"
    assert (out / "history.json").read_bytes() == (reference / "history.json").read_bytes()
    assert "resume.pt" not in {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["info"]["resumed_from"] == 12


def test_a_run_being_replaced_survives_an_interrupted_overwrite(tmp_path, monkeypatch,
                                                                capsys):
    out = tmp_path / "run"
    assert main([*FIT, "--out", str(out)]) == 0
    before = _tree(out)
    real_fit = _interrupt_at(monkeypatch, 7)
    assert main([*FIT, "--learning-rate", "0.02", "--out", str(out), "--overwrite"]) == 130
    assert _tree(out) == before  # the old run, byte for byte
    sibling = tmp_path / ".run.resume"
    assert run_status(sibling) == "partial"
    assert f"--resume {sibling}" in capsys.readouterr().err
    monkeypatch.setattr(inference, "fit", real_fit)
    assert main(["fit", "--resume", str(sibling)]) == 0
    assert not sibling.exists()
    config = json.loads((out / "config.json").read_text())
    assert config["engine_config"]["learning_rate"] == 0.02
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_engines_that_cannot_resume_write_no_partial_run(tmp_path):
    out = tmp_path / "nuts"
    assert main(["fit", "eight_schools", "--engine", "nuts", "--num-warmup", "20",
                 "--num-samples", "20", "--num-chains", "1", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert run_status(out) == "complete"
