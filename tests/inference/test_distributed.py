"""Data-parallel SVI on torch.distributed: 2 CPU processes (gloo) started by torch's own
launcher (``python -m torch.distributed.run``, i.e. torchrun) against one process.

Oracles: with an exact likelihood (RealNVP, no Monte Carlo noise in the loss) and the same
global batches, the averaged gradient of two half-batches is the gradient of the whole
batch, so the 2-process loss trajectory and parameters equal the 1-process ones up to
float32 summation order (measured: 1e-7 relative on the loss, 6e-8 on the parameters
after 20 Adam steps; the gates are 1e-5); the parameters of the two ranks are bit-identical
(one all_reduce gives every rank the same bits).
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

import ppl_gen
from ppl_gen.inference.distributed import DistributedError

WORKER = Path(__file__).with_name("distributed_worker.py")


def launch(out: Path, runs: list[dict], nproc: int = 2, timeout: float = 240,
           module: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    target = module or [str(WORKER), str(out), json.dumps(runs)]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={nproc}", *target], env=env,
                          capture_output=True, text=True, timeout=timeout)


def load(out: Path, name: str, rank: int) -> dict:
    return torch.load(out / f"{name}.rank{rank}.pt", weights_only=False)


def realnvp():
    data = ppl_gen.load_dataset("two_moons", num_data=256)
    return data, ppl_gen.MODELS["realnvp"].from_dataset(data, num_transforms=2,
                                                        hidden_dims=(16,), seed=0)


def state(model) -> list[torch.Tensor]:
    return [v.detach().clone() for _, v in sorted(model.state_dict().items())]


def one_process_group():
    """A 1-process gloo group in this process (what torchrun --nproc-per-node 1 makes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                         rank=0, world_size=1)


def assert_same_run(launched: dict, result, model, local_batch: int) -> None:
    """A rank's saved run against an in-process fit: the same loss trajectory and final
    parameters up to float32 summation order (1e-5; measured 1e-7 and 6e-8)."""
    assert launched["info"]["distributed"]["local_batch"] == local_batch
    torch.testing.assert_close(launched["loss"], torch.as_tensor(result.history["loss"]),
                               rtol=1e-5, atol=0)
    for got, want in zip(launched["params"], state(model)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


COMMON = {"num_steps": 20, "learning_rate": 0.01, "device": "cpu", "seed": 3,
          "psis_draws": 0}


def test_two_processes_follow_the_one_process_trajectory(tmp_path):
    result = launch(tmp_path, [{"name": "full", "model": "realnvp",
                                "fit": {"batch_size": None}},
                               {"name": "mini", "model": "realnvp",
                                "fit": {"batch_size": 64}},
                               {"name": "user", "model": "user",
                                "fit": {"batch_size": 64, "num_steps": 200,
                                        "learning_rate": 0.05}}])
    assert result.returncode == 0, result.stderr[-3000:]
    # Full batch: the plain single-process engine (no process group at all).
    data, model = realnvp()
    alone = ppl_gen.fit(model, data, engine="svi", batch_size=None, **COMMON)
    full = [load(tmp_path, "full", r) for r in (0, 1)]
    assert_same_run(full[0], alone, model, local_batch=128)
    # Minibatches of 64: the same global batches in one process of a 1-rank group.
    data, model = realnvp()
    one_process_group()
    try:
        single = ppl_gen.fit(model, data, engine="svi", batch_size=64, distributed=True,
                             **COMMON)
    finally:
        torch.distributed.destroy_process_group()
    assert single.info["distributed"] == {**single.info["distributed"], "world_size": 1,
                                          "local_batch": 64, "steps_per_epoch": 4}
    mini = [load(tmp_path, "mini", r) for r in (0, 1)]
    assert_same_run(mini[0], single, model, local_batch=32)
    # A user's model and guide with local latents and lazily made pyro.params whose
    # initial values differ between ranks: rank 0's are broadcast, so the ranks agree.
    user = [load(tmp_path, "user", r) for r in (0, 1)]
    for run in (full, mini, user):  # every rank ends with the same bits, and one loss
        assert all(torch.equal(a, b) for a, b in zip(run[0]["params"], run[1]["params"]))
        assert torch.equal(run[0]["loss"], run[1]["loss"])
    loss = user[0]["loss"]  # and it learnt: the loss fell by far more than its noise
    assert float(loss[:10].mean()) > float(loss[-10:].mean()) + 3 * float(loss[-10:].std())
    assert "eager step" in mini[0]["info"]["compile_reason"]


@pytest.mark.slow  # one 2-process launch (~8 s); CI runs it (pytest -m slow)
def test_a_rank_that_dies_stops_the_others(tmp_path):
    started = time.perf_counter()
    result = launch(tmp_path, [{"name": "dies", "model": "realnvp", "fail_at": 3,
                                "fit": {"batch_size": 64, "num_steps": 200}}], timeout=120)
    assert result.returncode != 0
    assert "rank 1 failed on purpose after step 3" in result.stderr
    assert time.perf_counter() - started < 60  # torchrun stopped rank 0: no hang
    assert not list(tmp_path.glob("*.pt"))


CHEES = {"num_chains": 8, "num_warmup": 30, "num_samples": 30, "compile": False}


def test_chains_over_two_processes_are_the_one_process_chains(tmp_path):
    """NUTS: chain c draws from its own stream (seed + 1000 c) whichever process runs it,
    so 4 chains as 2 + 2 are the 4 chains of one process, bit for bit. ChEES: every rank
    holds the whole batch and integrates its block of chains, so 8 chains as 4 + 4 are
    one process's 8-chain batch bit for bit: one adaptation (trajectory length, step
    sizes, metric) pooled over every chain, not one per process."""
    result = launch(tmp_path, [
        {"name": "nuts", "model": "eight_schools", "engine": "nuts",
         "fit": {"num_chains": 4, "num_warmup": 30, "num_samples": 30}},
        {"name": "chees", "model": "eight_schools", "engine": "chees", "fit": CHEES}])
    assert result.returncode == 0, result.stderr[-3000:]
    data = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(data)
    with pytest.warns(ppl_gen.diagnostics.ReliabilityWarning):  # 30 draws: too few
        alone = ppl_gen.fit(model, data, engine="nuts", num_chains=4, num_warmup=30,
                            num_samples=30, device="cpu", seed=3)
    with pytest.warns(ppl_gen.diagnostics.ReliabilityWarning):
        batch = ppl_gen.fit(model, data, engine="chees", device="cpu", seed=3, **CHEES)
    for rank in (0, 1):
        nuts = load(tmp_path, "nuts", rank)
        assert nuts["info"]["distributed"]["chains_per_rank"] == [2, 2]
        for name, value in alone.samples.items():
            assert torch.equal(nuts["samples"][name], value), name
        assert (nuts["sample_stats"]["diverging"] == alone.sample_stats["diverging"]).all()
        chees = load(tmp_path, "chees", rank)
        assert chees["info"]["distributed"]["chains_per_rank"] == [4, 4]
        assert chees["info"]["distributed"]["adaptation"].startswith("pooled")
        for name, value in batch.samples.items():
            assert torch.equal(chees["samples"][name], value), name
        assert chees["info"]["trajectory_length"] == batch.info["trajectory_length"]
        assert chees["info"]["step_size_per_chain"] == batch.info["step_size_per_chain"]
        assert (chees["sample_stats"]["energy"] == batch.sample_stats["energy"]).all()
        assert len(chees["info"]["diagnostics"]["e_bfmi_per_chain"]) == 8  # checked whole


@pytest.mark.slow  # one 2-process launch that crashes (~10 s); CI runs it (pytest -m slow)
def test_a_distributed_chees_checkpoint_resumes_in_any_number_of_processes(tmp_path):
    """Rank 0 alone writes the checkpoint of a 2-process ChEES run, and it holds the whole
    batch: a run that crashed at iteration 47 resumes from iteration 40 in one process and
    ends with the uninterrupted one-process draws, bit for bit. (With blocks of 4 the
    arithmetic is the whole batch's; as 3 + 3 + 2 eight schools' dense-metric products
    round differently in the last bits and the runs part after some iterations — the same
    posterior, other draws: measured, so not asserted.)"""
    checkpoint = tmp_path / "resume.pt"
    fit = {**CHEES, "checkpoint": str(checkpoint), "checkpoint_every": 10}
    broken = launch(tmp_path, [{"name": "broken", "model": "eight_schools",
                                "engine": "chees", "fail_at": 47, "fit": fit}])
    assert broken.returncode != 0 and "failed on purpose after step 47" in broken.stderr
    assert torch.load(checkpoint, weights_only=True)["step"] == 40
    data = ppl_gen.load_dataset("eight_schools")
    model = ppl_gen.MODELS["eight_schools"].from_dataset(data)
    with pytest.warns(ppl_gen.diagnostics.ReliabilityWarning):
        batch = ppl_gen.fit(model, data, engine="chees", device="cpu", seed=3, **CHEES)
    one_process_group()
    try:
        with pytest.warns(ppl_gen.diagnostics.ReliabilityWarning):
            resumed = ppl_gen.fit(model, data, engine="chees", device="cpu", seed=3,
                                  distributed=True, resume=checkpoint, **CHEES)
    finally:
        torch.distributed.destroy_process_group()
    assert resumed.info["resumed_from"] == 40
    assert resumed.info["distributed"]["world_size"] == 1
    for name, value in batch.samples.items():
        assert torch.equal(resumed.samples[name], value), name


def test_chain_infos_merge_key_by_key():
    """Each key of the ranks' info is combined by its rule — recomputed from the gathered
    draws, summed, concatenated, the slowest — and a value the ranks disagree on (each
    ChEES batch adapts its own trajectory length and metric) is kept per rank, not
    silently rank 0's."""
    import numpy as np

    from ppl_gen.inference.distributed import merge_chain_infos

    infos = [{"num_divergences": 99, "gradient_evaluations": 1000,
              "sampling_gradient_evaluations": 400, "step_size_per_chain": [0.1, 0.2],
              "wall_time": 3.0, "trajectory_length": 1.5, "compiled": "traced",
              "mass_matrix": torch.ones(2), "init": {"init": "pathfinder", "seconds": 0.2},
              "kernel": "chees"},
             {"num_divergences": 0, "gradient_evaluations": 1200,
              "sampling_gradient_evaluations": 500, "step_size_per_chain": [0.3],
              "wall_time": 5.0, "trajectory_length": 2.5, "compiled": "traced",
              "mass_matrix": torch.full((2,), 2.0),
              "init": {"init": "pathfinder", "seconds": 0.3}, "kernel": "chees",
              "only_here": np.arange(3)}]
    stats = {"diverging": np.array([[0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=bool),
             "accept_prob": np.array([[0.5, 0.7, 0.9]] * 3)}
    info = merge_chain_infos(infos, stats, [2, 1])
    assert info["num_divergences"] == 3 and info["divergences_per_chain"] == [1, 0, 2]
    assert info["mean_accept_prob"] == pytest.approx(0.7)
    assert info["gradient_evaluations"] == 2200
    assert info["sampling_gradient_evaluations"] == 900
    assert info["step_size_per_chain"] == [0.1, 0.2, 0.3]
    assert info["wall_time"] == 5.0
    assert info["compiled"] == "traced" and info["kernel"] == "chees"  # agreed: kept once
    per_rank = info["distributed"]["per_rank"]
    assert set(per_rank) == {"trajectory_length", "mass_matrix", "init", "only_here"}
    assert per_rank["trajectory_length"] == [1.5, 2.5] and info["trajectory_length"] == 1.5
    assert per_rank["only_here"][0] is None
    assert info["distributed"]["chains_per_rank"] == [2, 1]
    assert info["distributed"]["wall_time_per_rank"] == [3.0, 5.0]


def _no_plate(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.sample("y", dist.Normal(mu, 1.0).expand([y.shape[0]]).to_event(1), obs=y)


def test_bad_distributed_requests_are_named(monkeypatch, tmp_path):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    data, model = realnvp()
    with pytest.raises(DistributedError, match="torchrun --standalone --nproc-per-node"):
        ppl_gen.fit(model, data, engine="svi", distributed=True, **COMMON)
    with pytest.raises(ValueError, match="no pyro.plate\\('data', N, subsample_size"):
        ppl_gen.fit(_no_plate, {"y": torch.zeros(8)}, engine="svi", distributed=True,
                    **COMMON)
    with pytest.raises(ValueError, match="compile='fx' cannot be used with distributed"):
        ppl_gen.fit(model, data, engine="svi", distributed=True, compile="fx", **COMMON)
    with pytest.raises(ValueError, match="distributed_timeout must be a finite number > 0"):
        ppl_gen.fit(model, data, engine="svi", distributed=True, distributed_timeout=0,
                    **COMMON)
    schools = ppl_gen.load_dataset("eight_schools")
    hierarchy = ppl_gen.MODELS["eight_schools"].from_dataset(schools)
    with pytest.raises(ValueError, match="engine 'nuts' cannot checkpoint or resume.*'chees'"):
        ppl_gen.fit(hierarchy, schools, engine="nuts", distributed=True, device="cpu",
                    checkpoint=tmp_path / "c.pt")
    with pytest.raises(DistributedError, match="torchrun --standalone"):
        ppl_gen.fit(hierarchy, schools, engine="chees", distributed=True, device="cpu",
                    num_warmup=5, num_samples=5)
    assert not list(tmp_path.iterdir())


def test_cli_under_torchrun_without_distributed_is_refused(tmp_path, monkeypatch, capsys):
    from ppl_gen.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "run"
    code = main(["fit", "realnvp", "--num-steps", "2", "--out", str(out)])
    assert code != 0
    assert "add --option distributed=true" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow  # three launches of two processes (~35 s)
def test_resumed_two_process_run_repeats_the_uninterrupted_one(tmp_path):
    checkpoint = str(tmp_path / "resume.pt")
    fit = {"batch_size": 64, "num_steps": 30}
    whole = launch(tmp_path, [{"name": "whole", "model": "vae", "fit": fit}])
    assert whole.returncode == 0, whole.stderr[-3000:]
    broken = launch(tmp_path, [{"name": "broken", "model": "vae", "fail_at": 12,
                                "fit": {**fit, "checkpoint": checkpoint,
                                        "checkpoint_every": 5}}])
    assert broken.returncode != 0 and Path(checkpoint).exists()
    assert torch.load(checkpoint, weights_only=True)["step"] == 10
    resumed = launch(tmp_path, [{"name": "resumed", "model": "vae",
                                 "fit": {**fit, "resume": checkpoint}}])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for rank in (0, 1):
        a, b = load(tmp_path, "whole", rank), load(tmp_path, "resumed", rank)
        assert torch.equal(a["loss"], b["loss"])
        assert all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))
    a, b = load(tmp_path, "whole", 0), load(tmp_path, "whole", 1)
    memory = a["rss_mb"]  # no growth over the run (1.8 epochs of 28 steps): < 20 MB
    assert float(memory[-1] - memory[5]) < 20, memory
    assert all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))
    # The VAE learnt (local latents, Monte Carlo noise): the loss fell by more than its noise.
    loss = a["loss"]
    assert float(loss[:5].mean()) > float(loss[-5:].mean()) + 3 * float(loss[-5:].std())


@pytest.mark.slow  # one launch that waits out a 5 s collective timeout
def test_a_rank_that_hangs_times_out_with_a_message(tmp_path):
    result = launch(tmp_path, [{"name": "hangs", "model": "realnvp", "hang_at": 3,
                                "fit": {"batch_size": 64, "num_steps": 50,
                                        "distributed_timeout": 5}}], timeout=150)
    assert result.returncode != 0
    assert "another rank probably died or stopped answering" in result.stderr


@pytest.mark.slow  # the command line under torchrun: one run folder, written by rank 0
def test_cli_two_processes_write_one_run(tmp_path):
    out = tmp_path / "run"
    result = launch(tmp_path, [], module=[
        "-m", "ppl_gen", "fit", "realnvp", "--data-option", "num_data=256",
        "--model-option", "num_transforms=2", "--model-option", "hidden_dims=(16,)",
        "--num-steps", "20", "--batch-size", "64", "--option", "distributed=true",
        "--device", "cpu", "--out", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("fitting realnvp on two_moons with svi on 2 processes") == 1
    assert result.stdout.count("wrote ") == 1
    config = json.loads((out / "config.json").read_text())
    assert config["engine_config"]["distributed"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def command_lines() -> dict[int, str]:
    """Every process's command line (Linux /proc)."""
    lines = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    lines[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return lines


def kill_processes_mentioning(text: str) -> None:
    for pid, cmdline in command_lines().items():
        if text in cmdline and pid != os.getpid():
            try:
                os.kill(pid, 9)
            except OSError:
                pass


@pytest.mark.slow  # three launches: whole, killed with -9 after a checkpoint, resumed (~40 s)
def test_cli_two_process_run_killed_and_resumed_repeats_the_whole_one(tmp_path):
    args = ["-m", "ppl_gen", "fit", "realnvp", "--data-option", "num_data=256",
            "--model-option", "num_transforms=2", "--model-option", "hidden_dims=(16,)",
            "--num-steps", "3000", "--batch-size", "64", "--option", "distributed=true",
            "--device", "cpu", "--checkpoint-every", "200"]
    whole = launch(tmp_path, [], module=[*args, "--out", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    process = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                "--nproc-per-node=2", *args, "--out", str(out)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "resume.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        # torchrun starts each rank in its own session: kill every process of this run
        # (the agent and both ranks, found by the run's folder in their command lines).
        kill_processes_mentioning(str(out))
        process.wait()
    time.sleep(0.5)
    assert not any(str(out) in cmdline for cmdline in command_lines().values())
    assert (out / "resume.pt").exists()
    resumed = launch(tmp_path, [], module=["-m", "ppl_gen", "fit", "--resume", str(out)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((tmp_path / "whole" / "history.json").read_text())
    b = json.loads((out / "history.json").read_text())
    assert a["loss"] == b["loss"] and len(b["loss"]) == 3000
    first = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["model_state"]
    second = torch.load(out / "checkpoint.pt", weights_only=False)["model_state"]
    assert all(torch.equal(first[k], second[k]) for k in first)
