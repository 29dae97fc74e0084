"""The fair MCMC benchmark issue 10 asks for: whole fresh processes, equal chains, equal
iterations, one pinned core for everyone, five seeds in interleaved order, cold and warm.

For each model (eight schools non-centred; Bayesian logistic regression on breast_cancer, 30
features), each seed and each sampler, in rotating order:

- ``chees``: ppl_gen's default engine, ``ppl_gen.fit(model_fn, data, engine="chees")`` on
  the plain Pyro function below, 16 chains, 500 + 500, everything else default;
- ``numpyro``: NumPyro's NUTS, ``chain_method="vectorized"``, 16 chains, 500 + 500, the same
  model written in NumPyro (same priors);
- ``pyro``: Pyro's own ``MCMC(NUTS(model_fn, jit_compile=True), num_chains=16)``, 500 + 500
  (with 16 chains on a pinned core Pyro draws them one after another).

Each run is a new Python process pinned to one core (``os.sched_setaffinity``; torch with 1
thread, XLA's Eigen pool off), with an empty Inductor cache of its own. **Cold** = min bulk
ESS over the parameters / the process's wall time from its spawn to the end of its first
fit (interpreter start, imports and compilation included), as a user's first run sees
it. **Warm** = the same sampler run again in the same process with another seed: ESS /
that call's seconds (Pyro: not run twice, its jit trace is ~1 s of minutes). Before any
ESS/s is printed every run is checked: max R-hat <= 1.01 and every posterior mean within 4
combined MCSEs of the other samplers' pooled means; a run that fails is marked, not
dropped.

    python benchmarks/mcmc_fair.py [--seeds 5] [--pyro-seeds 5] [--chains 16]
                                   [--samplers chees numpyro pyro]
                                   [--models "eight schools" "logistic regression"]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

#: ``--chains`` reaches the spawned workers through the environment.
CHAINS = int(os.environ.get("PPL_GEN_FAIR_CHAINS", "16"))
WARMUP, DRAWS = 500, 500
MODELS = ("eight schools", "logistic regression")
SAMPLERS = ("chees", "numpyro", "pyro")


# --- the models, as a user writes them ----------------------------------------------------
def pyro_models():
    import pyro
    import pyro.distributions as dist
    import torch

    def eight_schools(y, sigma):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("data", y.shape[0]):
            theta_tilde = pyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
            pyro.sample("y", dist.Normal(mu + tau * theta_tilde, sigma), obs=y)

    def logistic(x, y):
        weight = pyro.sample("weight", dist.Normal(torch.zeros(x.shape[1]), 1.0).to_event(1))
        bias = pyro.sample("bias", dist.Normal(0.0, 10.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Bernoulli(logits=(x * weight).sum(-1) + bias), obs=y)

    return {"eight schools": eight_schools, "logistic regression": logistic}


def numpyro_models():
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd

    def eight_schools(y, sigma):
        mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
        with numpyro.plate("data", y.shape[0]):
            theta_tilde = numpyro.sample("theta_tilde", nd.Normal(0.0, 1.0))
            numpyro.sample("y", nd.Normal(mu + tau * theta_tilde, sigma), obs=y)

    def logistic(x, y):
        weight = numpyro.sample("weight", nd.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
        bias = numpyro.sample("bias", nd.Normal(0.0, 10.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", nd.Bernoulli(logits=x @ weight + bias), obs=y)

    return {"eight schools": eight_schools, "logistic regression": logistic}


def torch_data(model: str):
    import ppl_gen

    if model == "eight schools":
        ds = ppl_gen.load_dataset("eight_schools")
        return {"y": ds["y"], "sigma": ds["sigma"]}
    ds = ppl_gen.load_dataset("breast_cancer")
    return {"x": ds["x"], "y": ds["y"]}


# --- one run in this (fresh) process --------------------------------------------------------
def _stats(samples: dict) -> dict:
    """Per scalar parameter: mean, MCSE, R-hat and bulk ESS; samples (chain, draw, ...)."""
    import numpy as np

    from ppl_gen.diagnostics import ess, mcse, rhat

    out = {}
    for name, value in samples.items():
        array = np.asarray(value, dtype=float)
        flat = array.reshape(array.shape[0], array.shape[1], -1)
        for j in range(flat.shape[-1]):
            label = f"{name}[{j}]" if flat.shape[-1] > 1 or array.ndim > 2 else name
            draws = flat[..., j]
            out[label] = {"mean": float(draws.mean()), "mcse": mcse(draws),
                          "rhat": rhat(draws), "ess": ess(draws)}
    return out


def _run(sampler: str, model: str, seed: int) -> tuple[dict, float]:
    if sampler == "numpyro":
        import jax
        import jax.numpy as jnp
        from numpyro.infer import MCMC, NUTS

        data = {k: jnp.asarray(v.numpy()) for k, v in torch_data(model).items()}
        started = time.perf_counter()
        # A second call builds a new MCMC object, as a user's second fit would: re-running
        # the same object fails in NumPyro 0.22 with vectorized chains (a rank-0 vmap), and
        # JAX retraces the new one (its executables are cached per function object).
        mcmc = MCMC(NUTS(numpyro_models()[model]), num_warmup=WARMUP, num_samples=DRAWS,
                    num_chains=CHAINS, chain_method="vectorized", progress_bar=False)
        key = jax.random.PRNGKey(seed)
        mcmc.run(key, **data)
        samples = {k: jax.device_get(v) for k, v in
                   mcmc.get_samples(group_by_chain=True).items()}
        return samples, time.perf_counter() - started
    import torch

    torch.set_num_threads(1)
    data = torch_data(model)
    fn = pyro_models()[model]
    if sampler == "chees":
        import warnings

        import ppl_gen

        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = ppl_gen.fit(fn, data, engine="chees", num_chains=CHAINS,
                                 num_warmup=WARMUP, num_samples=DRAWS, seed=seed,
                                 device="cpu")
        seconds = time.perf_counter() - started
        return {k: v.numpy() for k, v in result.samples.items()
                if k in ("mu", "tau", "theta_tilde", "weight", "bias")}, seconds
    import warnings

    import pyro
    from pyro.infer import MCMC, NUTS

    pyro.set_rng_seed(seed)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "chains will be drawn sequentially"
        mcmc = MCMC(NUTS(fn, jit_compile=True, ignore_jit_warnings=True), num_samples=DRAWS,
                    warmup_steps=WARMUP, num_chains=CHAINS, disable_progbar=True)
        mcmc.run(**data)
    samples = {k: v.numpy() for k, v in mcmc.get_samples(group_by_chain=True).items()}
    return samples, time.perf_counter() - started




def worker(sampler: str, model: str, seed: int) -> None:
    cold_samples, cold_seconds = _run(sampler, model, seed)
    cold_done_at = time.time()  # the parent measures the cold process up to here
    record = {"cold_fit_seconds": cold_seconds, "cold_done_at": cold_done_at,
              "stats": _stats(cold_samples)}
    if sampler != "pyro":
        warm_samples, warm_seconds = _run(sampler, model, seed + 1000)
        warm = _stats(warm_samples)
        record.update(warm_fit_seconds=warm_seconds,
                      warm_min_ess=min(v["ess"] for v in warm.values()),
                      warm_max_rhat=max(v["rhat"] for v in warm.values()))
    print("RESULT " + json.dumps(record), flush=True)


# --- the driver -------------------------------------------------------------------------------
def _spawn(sampler: str, model: str, seed: int, core: int) -> dict:
    cache = tempfile.mkdtemp(prefix="fair-inductor-")
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    spawned = time.time()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c",
         f"import os; os.sched_setaffinity(0, {{{core}}}); import sys; "
         f"sys.argv = ['mcmc_fair', '--worker', {sampler!r}, {model!r}, '{seed}']; "
         f"exec(open({__file__!r}).read())"],
        env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"{sampler} on {model} seed {seed} failed:\n{proc.stderr[-3000:]}")
    record = json.loads(line[0][7:])
    # cold: from the spawn to the end of the first fit (start-up, imports, compile, fit),
    # not the warm second fit or the statistics the worker computes afterwards
    record["process_seconds"] = record["cold_done_at"] - spawned
    record["worker_seconds"] = wall
    record["min_ess"] = min(v["ess"] for v in record["stats"].values())
    record["max_rhat"] = max(v["rhat"] for v in record["stats"].values())
    return record


def _checked(runs: dict, sampler: str, model: str) -> list[bool]:
    """Per run of ``sampler``: R-hat <= 1.01 and every mean within 4 combined MCSEs of the
    pooled means of the *other* samplers' runs."""
    others = [r for (s, m), rs in runs.items() if m == model and s != sampler for r in rs]
    verdicts = []
    for run in runs[(sampler, model)]:
        ok = run["max_rhat"] <= 1.01
        for name, row in run["stats"].items():
            pooled = [o["stats"][name] for o in others if name in o["stats"]]
            if not pooled:
                continue
            mean = statistics.fmean(p["mean"] for p in pooled)
            se = math.sqrt(sum(p["mcse"] ** 2 for p in pooled)) / len(pooled)
            ok &= abs(row["mean"] - mean) <= 4 * math.hypot(row["mcse"], se)
        verdicts.append(bool(ok))
    return verdicts


def main(args: argparse.Namespace) -> None:
    core = max(os.sched_getaffinity(0))
    runs: dict = {(s, m): [] for s in args.samplers for m in args.models}
    order = list(args.samplers)
    print(f"# fair MCMC benchmark: {CHAINS} chains, {WARMUP} + {DRAWS}, core {core}, "
          f"{args.seeds} seeds\n", flush=True)
    for seed in range(args.seeds):
        for model in args.models:
            for sampler in order:
                if sampler == "pyro" and seed >= args.pyro_seeds:
                    continue  # minutes per run: fewer seeds (--pyro-seeds)
                record = _spawn(sampler, model, seed, core)
                runs[(sampler, model)].append(record)
                warm = (f", warm fit {record['warm_fit_seconds']:.1f} s ESS "
                        f"{record['warm_min_ess']:.0f}" if "warm_fit_seconds" in record else "")
                print(f"seed {seed} {model} {sampler}: process {record['process_seconds']:.1f}"
                      f" s (fit {record['cold_fit_seconds']:.1f} s), min ESS "
                      f"{record['min_ess']:.0f}, max R-hat {record['max_rhat']:.3f}{warm}",
                      flush=True)
            order = order[1:] + order[:1]  # rotate who goes first
    print("\n| model | sampler | cold ESS/s (whole process) | warm ESS/s (second call) | "
          "process s | min ESS | max R-hat | runs checked |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    medians = {}
    for model in args.models:
        for sampler in args.samplers:
            rs = runs[(sampler, model)]
            verdicts = _checked(runs, sampler, model)
            cold = statistics.median(r["min_ess"] / r["process_seconds"] for r in rs)
            warm = (statistics.median(r["warm_min_ess"] / r["warm_fit_seconds"] for r in rs)
                    if all("warm_fit_seconds" in r for r in rs) else None)
            medians[(sampler, model)] = (cold, warm, rs)
            print(f"| {model} | {sampler} | {cold:.1f} | "
                  f"{'—' if warm is None else f'{warm:.1f}'} | "
                  f"{statistics.median(r['process_seconds'] for r in rs):.1f} | "
                  f"{statistics.median(r['min_ess'] for r in rs):.0f} | "
                  f"{max(r['max_rhat'] for r in rs):.3f} | {sum(verdicts)} of {len(rs)} |",
                  flush=True)
    if "chees" in args.samplers:
        print("\nPaired ratios (same seed, same model), median over seeds:\n")
        print("| model | ChEES / NumPyro cold | ChEES / NumPyro warm | ChEES / Pyro cold |")
        print("| --- | --- | --- | --- |")
        for model in args.models:
            mine = runs[("chees", model)]
            cells = []
            for other, key in (("numpyro", "cold"), ("numpyro", "warm"), ("pyro", "cold")):
                theirs = runs.get((other, model))
                if not theirs:
                    cells.append("—")
                    continue
                if key == "cold":
                    ratios = [(a["min_ess"] / a["process_seconds"])
                              / (b["min_ess"] / b["process_seconds"])
                              for a, b in zip(mine, theirs)]  # seed by seed
                else:
                    ratios = [(a["warm_min_ess"] / a["warm_fit_seconds"])
                              / (b["warm_min_ess"] / b["warm_fit_seconds"])
                              for a, b in zip(mine, theirs)]
                cells.append(f"{statistics.median(ratios):.2f} "
                             f"({min(ratios):.2f}–{max(ratios):.2f})")
            print(f"| {model} | {' | '.join(cells)} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--seeds", type=int, default=5)
        parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS),
                            choices=SAMPLERS)
        parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
        parser.add_argument("--pyro-seeds", type=int, default=5,
                            help="seeds for Pyro's NUTS (its runs take minutes each)")
        parser.add_argument("--chains", type=int, default=16,
                            help="chains on every side (default 16)")
        arguments = parser.parse_args()
        os.environ["PPL_GEN_FAIR_CHAINS"] = str(arguments.chains)
        CHAINS = arguments.chains
        main(arguments)
