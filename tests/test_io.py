import json

import pytest
import torch

import ppl_gen
from ppl_gen.diagnostics import summarize, to_inference_data
from ppl_gen.io import RunExistsError, load_checkpoint, load_run, save_run


@pytest.fixture(scope="module")
def em_run(tmp_path_factory):
    ds = ppl_gen.load_dataset("gaussian_mixture")
    model = ppl_gen.MODELS["gmm"].from_dataset(ds)
    result = ppl_gen.fit(model, ds, engine="em", device="cpu")
    out = tmp_path_factory.mktemp("runs") / "gmm"
    record = {"model_name": "gmm", "dataset": "gaussian_mixture",
              "dataset_options": {"split": "all"}, "model_options": {}}
    save_run(out, result, summary=summarize(result), idata=to_inference_data(result),
             extra_config=record)
    return out, model, ds


def test_round_trip_rebuilds_the_fitted_model(em_run):
    out, model, ds = em_run
    assert {p.name for p in out.iterdir()} >= {"config.json", "summary.json", "history.json",
                                               "checkpoint.pt", "posterior.nc"}
    run = load_run(out)
    torch.testing.assert_close(run["model"].log_prob(ds["x"]), model.log_prob(ds["x"]))
    assert run["config"]["engine"] == "em"
    assert run["idata"].posterior["locs"].shape == (1, 1, 3, 2)
    with torch.no_grad():
        expected = float(model.log_prob(ds["x"]).mean())
    assert run["summary"]["log_likelihood"][-1] == pytest.approx(expected, rel=1e-6)


def test_an_existing_run_is_never_overwritten_silently(em_run):
    out, model, ds = em_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = ppl_gen.fit(model, ds, engine="em", max_iter=2, device="cpu")
    with pytest.raises(RunExistsError, match="already holds a run.*--overwrite"):
        save_run(out, result)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_corrupt_or_foreign_checkpoints_fail_clearly(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt or not a ppl_gen checkpoint.*re-run"):
        load_checkpoint(bad)
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="not a ppl_gen checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="holds no complete ppl_gen run"):
        load_run(tmp_path)


def _copy_run(out, target):
    """A private copy of the shared run folder, for tests that damage it."""
    target.mkdir()
    for p in out.iterdir():
        (target / p.name).write_bytes(p.read_bytes())
    return target


def test_truncated_checkpoint_in_a_run_folder(em_run, tmp_path):
    out, _, _ = em_run
    copy = _copy_run(out, tmp_path / "copy")
    data = (copy / "checkpoint.pt").read_bytes()
    (copy / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        load_run(copy)
    json.loads((copy / "config.json").read_text())  # the rest is intact


def test_out_path_that_is_a_file(tmp_path, em_run):
    _, model, ds = em_run
    target = tmp_path / "a_file"
    target.write_text("keep me")
    result = ppl_gen.fit(model, ds, engine="em", max_iter=2, device="cpu")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        save_run(target, result)
    assert target.read_text() == "keep me"


def test_corrupt_json_in_a_run_folder(em_run, tmp_path):
    out, _, _ = em_run
    copy = _copy_run(out, tmp_path / "copy2")
    (copy / "summary.json").write_text("{not json")
    with pytest.raises(ValueError, match="summary.json is corrupt"):
        load_run(copy)
