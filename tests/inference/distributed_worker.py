"""Run by tests/inference/test_distributed.py under torch's launcher (torchrun): SVI fits
described by a JSON list, each rank saving its loss trajectory and final parameters to
OUT/NAME.rank{R}.pt.

    python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        tests/inference/distributed_worker.py OUT '[{"name": "a", "model": "realnvp",
        "fit": {"batch_size": 64}}]'

``model`` is "realnvp" (256 two-moons points, an exact likelihood: the loss has no Monte
Carlo noise), "vae" (binarised digits, local latents) or "user" (a plain Pyro model and
guide with local latents and lazily created ``pyro.param``s); with ``engine`` "nuts" or
"chees" (model "eight_schools") the chains are spread over the processes instead.
``fit`` holds ``fit`` options (distributed=True, 20 steps, seed 3 unless given).
``fail_at``: rank 1 raises after that step; ``hang_at``: rank 1 stops answering (sleeps)
after that step.
"""

import json
import os
import sys
import time

import pyro
import pyro.distributions as dist
import torch

import ppl_gen


def rss_mb() -> float:
    """The process's current resident memory (Linux), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def factor_model(x, subsample_size=None):
    """A user's model: one latent factor per row, a lazily created global loading whose
    initial value differs between ranks (rank 0's must win)."""
    rank = int(os.environ.get("RANK", "0"))
    w = pyro.param("w", lambda: torch.full((x.shape[1],), 1.0 + rank))
    with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z[:, None] * w, 0.5).to_event(1), obs=x[idx])


def factor_guide(x, subsample_size=None):
    loc = pyro.param("z_loc", lambda: torch.zeros(x.shape[0]))
    scale = pyro.param("z_scale", lambda: torch.ones(x.shape[0]),
                       constraint=dist.constraints.positive)
    with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
        pyro.sample("z", dist.Normal(loc[idx], scale[idx]))


def build(name: str, rank: int):
    if name == "eight_schools":
        data = ppl_gen.load_dataset("eight_schools")
        return data, ppl_gen.MODELS["eight_schools"].from_dataset(data)
    if name == "user":  # the same data on every rank; each reads its shard
        generator = torch.Generator().manual_seed(0)
        z = torch.randn(256, 1, generator=generator)
        noise = torch.randn(256, 3, generator=generator)
        return {"x": z * torch.tensor([1.0, -2.0, 0.5]) + 0.5 * noise}, factor_model
    if name == "realnvp":
        data = ppl_gen.load_dataset("two_moons", num_data=256)
        # seed=rank: the ranks' networks start apart, rank 0's values must win
        return data, ppl_gen.MODELS["realnvp"].from_dataset(
            data, num_transforms=2, hidden_dims=(16,), seed=rank)
    torch.manual_seed(rank)
    data = ppl_gen.load_dataset("digits", binarize=True)
    return data, ppl_gen.MODELS["vae"].from_dataset(data, latent_dim=2, hidden_dims=(32,))


def main() -> None:
    out, runs = sys.argv[1], json.loads(sys.argv[2])
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    for run in runs:
        data, model = build(run["model"], rank)
        fail_at, hang_at = run.get("fail_at", 0), run.get("hang_at", 0)

        memory = []

        def callback(index, state, info, fail_at=fail_at, hang_at=hang_at, memory=memory):
            memory.append(rss_mb())
            if rank == 1 and fail_at and index + 1 == fail_at:
                raise RuntimeError(f"rank 1 failed on purpose after step {fail_at}")
            if rank == 1 and hang_at and index + 1 == hang_at:
                time.sleep(120)

        engine = run.get("engine", "svi")
        if engine != "svi":  # chains over processes: draws gathered on every rank
            result = ppl_gen.fit(model, data, engine=engine, distributed=True,
                                 device="cpu", seed=3, callback=callback,
                                 **run.get("fit", {}))
            torch.save({"samples": result.samples, "sample_stats": result.sample_stats,
                        "info": {k: result.info.get(k) for k in
                                 ("distributed", "divergences_per_chain",
                                  "diagnostics", "trajectory_length",
                                  "step_size_per_chain")}},
                       os.path.join(out, f"{run['name']}.rank{rank}.pt"))
            continue
        options = {"num_steps": 20, "learning_rate": 0.01, "distributed": True,
                   "device": "cpu", "seed": 3, "psis_draws": 0, **run.get("fit", {})}
        if run["model"] == "user":
            options["guide"] = factor_guide
        result = ppl_gen.fit(model, data, engine="svi", callback=callback, **options)
        if run["model"] == "user":
            params = [v.detach().clone()
                      for _, v in sorted(result.param_state["params"].items())]
        else:
            params = [v.detach().clone() for _, v in sorted(model.state_dict().items())]
        torch.save({"loss": torch.as_tensor(result.history["loss"]), "params": params,
                    "rss_mb": torch.tensor(memory),
                    "info": {k: result.info.get(k) for k in
                             ("distributed", "compiled", "compile_reason")}},
                   os.path.join(out, f"{run['name']}.rank{rank}.pt"))


if __name__ == "__main__":
    main()
