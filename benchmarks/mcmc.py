"""Many-chain MCMC: ppl_gen's ChEES-HMC engine against Pyro's NUTS, side by side.

One run, one machine, 1 torch thread. For each model — eight schools (non-centered),
Bayesian logistic regression on breast_cancer (30 features), a 100-D Gaussian with scales
over two orders of magnitude — and each sampler:

- ``pyro NUTS`` (through ppl_gen's ``nuts`` engine, which drives Pyro's kernel; jit off and
  on), 1 chain, 1000 warmup + 1000 draws;
- ``chees`` with C chains, 500 warmup + 500 draws per chain, eager (``compile=False``:
  Pyro's handlers every evaluation) and compiled (the default: the leapfrog step traced
  once and compiled by Inductor, see ``ppl_gen.inference.compiled``);

the metric is the minimum bulk ESS over parameters per wall-clock second of the whole
call, warmup and compile included; and the cost of one leapfrog step for all chains under
each backend. ``--numpyro`` adds NumPyro's NUTS at equal chains (``--numpyro-chains``),
``--chains`` how ESS/s grows with the number of chains.

    python benchmarks/mcmc.py [--quick] [--seeds 3] [--chains 4 16 64 256 1024]
                              [--numpyro [--numpyro-chains 16 64]]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import pyro
import pyro.distributions as dist
import torch

import ppl_gen
from ppl_gen.diagnostics import ess
from ppl_gen.inference import make_problem
from ppl_gen.inference.batched import BatchedPotential
from ppl_gen.inference.chees import _leapfrog
from ppl_gen.inference.compiled import compile_function

SCALES = torch.logspace(-1, 1, 100)


def gaussian_100d(y):
    w = pyro.sample("w", dist.Normal(torch.zeros(100), 10.0).to_event(1))
    pyro.sample("y", dist.Normal(w, SCALES).to_event(1), obs=y)


def targets():
    schools = ppl_gen.load_dataset("eight_schools")
    cancer = ppl_gen.load_dataset("breast_cancer")
    return {
        "eight schools": (ppl_gen.MODELS["eight_schools"].from_dataset(schools), schools),
        "logistic regression": (ppl_gen.MODELS["logistic_regression"].from_dataset(cancer),
                                cancer),
        "100-D Gaussian": (gaussian_100d, {"y": torch.linspace(-1, 1, 100)}),
    }


def min_ess(samples) -> float:
    values = []
    for draws in samples.values():
        flat = draws.reshape(*draws.shape[:2], -1)
        values += [ess(flat[..., j].numpy()) for j in range(flat.shape[-1])]
    return min(values)


def latent_only(result, model, data):
    names = [n for n in result.samples if n in _latents(model, data)]
    return {n: result.samples[n] for n in names}


def _latents(model, data):
    from ppl_gen.inference.base import latent_sites

    return set(latent_sites(make_problem(model, data, device="cpu").trace()))


def gradient_cost(model, data, num_chains: int, repeats: int = 50) -> float:
    """Seconds per potential-and-gradient evaluation of all chains through Pyro (eager)."""
    potential = BatchedPotential(make_problem(model, data, device="cpu"))
    q = potential.initial(num_chains, torch.Generator().manual_seed(0))
    with pyro.validation_enabled(False):
        potential.value_and_grad(q)
        start = time.perf_counter()
        for _ in range(repeats):
            potential.value_and_grad(q)
    return (time.perf_counter() - start) / repeats


def leapfrog_costs(model, data, num_chains: int, repeats: int = 200) -> dict[str, float]:
    """Seconds per leapfrog step of all chains (potential + gradient + updates), eager
    Pyro vs the traced ATen graph vs the Inductor-compiled graph; plus compile seconds."""
    potential = BatchedPotential(make_problem(model, data, device="cpu"))
    q = potential.initial(num_chains, torch.Generator().manual_seed(0))
    out = {}
    with pyro.validation_enabled(False), torch.no_grad():
        energy, grad = potential.value_and_grad(q)
        args = (q, torch.zeros_like(q), grad, energy, torch.full_like(energy, 0.01)[:, None],
                torch.ones_like(q), torch.ones(num_chains, 1, dtype=torch.bool))
        for backend in ("eager", "fx", "inductor"):
            fn = compile_function(_leapfrog(potential), args, backend=backend)
            out[f"{backend} compile"] = fn.compile_seconds
            fn(*args)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(repeats // 5):
                    fn(*args)
                times.append((time.perf_counter() - start) / (repeats // 5))
            out[backend] = statistics.median(times)
    return out


def warm_up_inductor() -> float:
    """Inductor's one-time start-up in a process (imports, compiler checks), timed apart
    from each model's own compile."""
    start = time.perf_counter()
    compile_function(lambda x: (x.sin() * 2).sum(), (torch.ones(3),), backend="inductor")
    return time.perf_counter() - start


def run_one(model, data, engine, **options):
    start = time.perf_counter()
    result = ppl_gen.fit(model, data, engine=engine, device="cpu", **options)
    seconds = time.perf_counter() - start
    return min_ess(latent_only(result, model, data)) / seconds, seconds, result


def numpyro_targets(data):
    """The same three models in NumPyro (imported lazily: an optional benchmark extra)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd

    schools, cancer, gaussian = data

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

    scales = jnp.asarray(SCALES.numpy())

    def gaussian_model(y):
        w = numpyro.sample("w", nd.Normal(jnp.zeros(100), 10.0).to_event(1))
        numpyro.sample("y", nd.Normal(w, scales).to_event(1), obs=y)

    def arrays(ds):
        return {k: jnp.asarray(v.numpy()) for k, v in ds.items()}

    return {"eight schools": (eight_schools, arrays({"y": schools["y"],
                                                     "sigma": schools["sigma"]})),
            "logistic regression": (logistic, arrays({"x": cancer["x"], "y": cancer["y"]})),
            "100-D Gaussian": (gaussian_model, arrays(gaussian))}


def run_numpyro(model, data, num_chains, chain_method, warmup, draws, seed=0):
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    start = time.perf_counter()
    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=draws, num_chains=num_chains,
                chain_method=chain_method, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed), **data)
    samples = mcmc.get_samples(group_by_chain=True)
    seconds = time.perf_counter() - start
    values = []
    for value in samples.values():
        flat = np.asarray(value).reshape(*np.shape(value)[:2], -1)
        values += [ess(flat[..., j]) for j in range(flat.shape[-1])]
    return min(values) / seconds, seconds


def chees_runs(model, data, chains, iters, seeds, **options):
    """Median ESS/s over seeds, with the median compile seconds and backend."""
    runs = [run_one(model, data, "chees", num_chains=chains, num_warmup=iters[0],
                    num_samples=iters[1], seed=seed, **options) for seed in range(seeds)]
    rates = [r[0] for r in runs]
    info = runs[0][2].info
    return (statistics.median(rates), statistics.median(r[1] for r in runs),
            statistics.median(r[2].info["compile_seconds"] for r in runs), info["compiled"])


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    nuts_iters = (300, 300) if args.quick else (1000, 1000)
    chees_iters = (300, 300) if args.quick else (500, 500)
    print(f"# MCMC: ChEES-HMC (ppl_gen) vs Pyro NUTS — {platform.machine()}, torch "
          f"{torch.__version__}, pyro {pyro.__version__}, 1 thread\n")
    startup = warm_up_inductor()
    print(f"Inductor's one-time start-up in this process: {startup:.1f} s (paid by the first "
          "compiled fit of a process; not in the figures below)\n")
    if not args.skip_main:
        main_tables(args, nuts_iters, chees_iters)
    if args.numpyro:
        try:
            import numpyro  # noqa: F401
        except ImportError:
            print("\nNumPyro is not installed (pip install numpyro): its columns are skipped.")
        else:
            compare_numpyro(args, chees_iters)
    if args.chains:
        chain_scaling(args, chees_iters)


def main_tables(args: argparse.Namespace, nuts_iters: tuple[int, int],
                chees_iters: tuple[int, int]) -> None:
    print(f"min bulk ESS per second of the whole call (warmup and each model's compile "
          f"included); NUTS 1 chain {nuts_iters[0]}+{nuts_iters[1]}, seed 0; ChEES "
          f"{args.main_chains} chains {chees_iters[0]}+{chees_iters[1]} per chain, median "
          f"of {args.seeds} seeds, eager (compile=False) and compiled (the default)\n")
    print("| model | Pyro NUTS | Pyro NUTS (jit) | ChEES eager | ChEES compiled | "
          "compile (s) | compiled / NUTS | compiled / NUTS (jit) | compiled / eager |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (model, data) in targets().items():
        nuts, _, _ = run_one(model, data, "nuts", num_chains=1, num_warmup=nuts_iters[0],
                             num_samples=nuts_iters[1], seed=0)
        jit, _, _ = run_one(model, data, "nuts", num_chains=1, num_warmup=nuts_iters[0],
                            num_samples=nuts_iters[1], seed=0, jit_compile=True)
        eager, *_ = chees_runs(model, data, args.main_chains, chees_iters, args.seeds,
                               compile=False)
        fast, _, compile_s, backend = chees_runs(model, data, args.main_chains, chees_iters,
                                                 args.seeds)
        print(f"| {name} | {nuts:.1f} | {jit:.1f} | {eager:.1f} | {fast:.1f} ({backend}) | "
              f"{compile_s:.1f} | {fast / nuts:.0f}x | {fast / jit:.0f}x | "
              f"{fast / eager:.1f}x |", flush=True)

    print("\n## One leapfrog step of all chains (potential, gradient, update), median of 5 "
          "blocks\n")
    print("| model | chains | eager Pyro (us) | traced graph (us) | Inductor (us) | "
          "eager / Inductor | Inductor compile (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (model, data) in targets().items():
        for chains in (1, args.main_chains):
            cost = leapfrog_costs(model, data, chains)
            print(f"| {name} | {chains} | {cost['eager'] * 1e6:.0f} | {cost['fx'] * 1e6:.0f} | "
                  f"{cost['inductor'] * 1e6:.0f} | {cost['eager'] / cost['inductor']:.0f}x | "
                  f"{cost['inductor compile']:.1f} |", flush=True)


def chain_scaling(args: argparse.Namespace, chees_iters: tuple[int, int]) -> None:
    if args.chains:
        print("\n## ESS/s against the number of chains (eight schools, ChEES compiled, "
              f"{chees_iters[0]}+{chees_iters[1]} per chain, seed 0)\n")
        print("| chains | min bulk ESS | seconds | of which compile | ESS/s | "
              "leapfrog step, all chains (us) |")
        print("| --- | --- | --- | --- | --- | --- |")
        model, data = targets()["eight schools"]
        for chains in args.chains:
            rate, seconds, result = run_one(model, data, "chees", num_chains=chains,
                                            num_warmup=chees_iters[0],
                                            num_samples=chees_iters[1], seed=0)
            cost = leapfrog_costs(model, data, chains, repeats=50)["inductor"] * 1e6
            print(f"| {chains} | {rate * seconds:,.0f} | {seconds:.1f} | "
                  f"{result.info['compile_seconds']:.1f} | {rate:,.0f} | {cost:.0f} |",
                  flush=True)


def compare_numpyro(args: argparse.Namespace, iters: tuple[int, int]) -> None:
    import jax
    import numpyro

    jax.config.update("jax_platform_name", "cpu")
    numpyro.set_host_device_count(1)
    ours = targets()
    theirs = numpyro_targets((ppl_gen.load_dataset("eight_schools"),
                              ppl_gen.load_dataset("breast_cancer"),
                              {"y": torch.linspace(-1, 1, 100)}))
    start = time.perf_counter()  # JAX's own one-time start-up, like Inductor's above
    run_numpyro(*theirs["eight schools"], 2, "vectorized", 5, 5)
    print(f"\n## Against NumPyro {numpyro.__version__} (jax {jax.__version__}, CPU), "
          f"{iters[0]}+{iters[1]} per chain, each model's compile included, median of "
          f"{args.seeds} seeds\n")
    print(f"JAX start-up and a first tiny compile, not in the figures: "
          f"{time.perf_counter() - start:.1f} s\n")
    print("| model | chains | ChEES compiled (ppl_gen) | NumPyro NUTS sequential | NumPyro "
          "NUTS vectorized | ChEES / best NumPyro |")
    print("| --- | --- | --- | --- | --- | --- |")
    for chains in args.numpyro_chains:
        for name, (model, data) in ours.items():
            chees, *_ = chees_runs(model, data, chains, iters, args.seeds)
            np_model, np_data = theirs[name]
            rates = {}
            for method in ("sequential", "vectorized"):
                if method == "sequential" and chains > 16:
                    continue  # C one-chain runs back to back: minutes, and never the best
                rates[method] = statistics.median(
                    run_numpyro(np_model, np_data, chains, method, *iters, seed=seed)[0]
                    for seed in range(args.seeds))
            best = max(rates.values())
            sequential = f"{rates['sequential']:.1f}" if "sequential" in rates else "—"
            print(f"| {name} | {chains} | {chees:.1f} | {sequential} | "
                  f"{rates['vectorized']:.1f} | {chees / best:.2f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--main-chains", type=int, default=16)
    parser.add_argument("--chains", type=int, nargs="*", default=[])
    parser.add_argument("--seeds", type=int, default=3,
                        help="ChEES and NumPyro runs per cell (median)")
    parser.add_argument("--numpyro-chains", type=int, nargs="*", default=[16, 64])
    parser.add_argument("--skip-main", action="store_true",
                        help="only the --numpyro / --chains sections")
    parser.add_argument("--numpyro", action="store_true",
                        help="also run NumPyro's NUTS (optional extra: pip install numpyro)")
    main(parser.parse_args())
