"""Many-chain MCMC: ppl_gen's ChEES-HMC engine against Pyro's NUTS, side by side.

One run, one machine, 1 torch thread. For each model — eight schools (non-centered),
Bayesian logistic regression on breast_cancer (30 features), a 100-D Gaussian with scales
over two orders of magnitude — and each sampler:

- ``pyro NUTS`` (through ppl_gen's ``nuts`` engine, which drives Pyro's kernel; jit off and
  on), 1 chain, 1000 warmup + 1000 draws;
- ``chees`` with C chains, 500 warmup + 500 draws per chain;

the metric is the minimum bulk ESS over parameters per wall-clock second of the whole
call, warmup included; and the cost of one potential-plus-gradient evaluation for all
chains. ``--chains`` also reports how ESS/s grows with the number of chains.

    python benchmarks/mcmc.py [--quick] [--chains 4 16 64 256 1024] [--numpyro]
"""

from __future__ import annotations

import argparse
import platform
import time

import pyro
import pyro.distributions as dist
import torch

import ppl_gen
from ppl_gen.diagnostics import ess
from ppl_gen.inference import make_problem
from ppl_gen.inference.batched import BatchedPotential

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
    """Seconds per potential-and-gradient evaluation of all chains."""
    potential = BatchedPotential(make_problem(model, data, device="cpu"))
    q = potential.initial(num_chains, torch.Generator().manual_seed(0))
    with pyro.validation_enabled(False):
        potential.value_and_grad(q)
        start = time.perf_counter()
        for _ in range(repeats):
            potential.value_and_grad(q)
    return (time.perf_counter() - start) / repeats


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


def run_numpyro(model, data, num_chains, chain_method, warmup, draws):
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    start = time.perf_counter()
    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=draws, num_chains=num_chains,
                chain_method=chain_method, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), **data)
    samples = mcmc.get_samples(group_by_chain=True)
    seconds = time.perf_counter() - start
    values = []
    for value in samples.values():
        flat = np.asarray(value).reshape(*np.shape(value)[:2], -1)
        values += [ess(flat[..., j]) for j in range(flat.shape[-1])]
    return min(values) / seconds, seconds


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    nuts_iters = (300, 300) if args.quick else (1000, 1000)
    chees_iters = (300, 300) if args.quick else (500, 500)
    print(f"# MCMC: ChEES-HMC (ppl_gen) vs Pyro NUTS — {platform.machine()}, torch "
          f"{torch.__version__}, pyro {pyro.__version__}, 1 thread\n")
    print(f"min bulk ESS per second of the whole call (warmup included); NUTS 1 chain "
          f"{nuts_iters[0]}+{nuts_iters[1]}; ChEES {args.main_chains} chains "
          f"{chees_iters[0]}+{chees_iters[1]} per chain\n")
    print("| model | Pyro NUTS ESS/s | Pyro NUTS (jit) ESS/s | ChEES ESS/s | ChEES / NUTS | "
          "ChEES / NUTS (jit) | grad eval, 1 chain (ms) | grad eval, "
          f"{args.main_chains} chains (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (model, data) in targets().items():
        nuts, _, _ = run_one(model, data, "nuts", num_chains=1, num_warmup=nuts_iters[0],
                             num_samples=nuts_iters[1], seed=0)
        jit, _, _ = run_one(model, data, "nuts", num_chains=1, num_warmup=nuts_iters[0],
                            num_samples=nuts_iters[1], seed=0, jit_compile=True)
        chees, _, _ = run_one(model, data, "chees", num_chains=args.main_chains,
                              num_warmup=chees_iters[0], num_samples=chees_iters[1], seed=0)
        one = gradient_cost(model, data, 1) * 1e3
        many = gradient_cost(model, data, args.main_chains) * 1e3
        print(f"| {name} | {nuts:.1f} | {jit:.1f} | {chees:.1f} | {chees / nuts:.1f} | "
              f"{chees / jit:.1f} | {one:.2f} | {many:.2f} |", flush=True)

    if args.numpyro:
        try:
            import numpyro  # noqa: F401
        except ImportError:
            print("\nNumPyro is not installed (pip install numpyro): its columns are skipped.")
        else:
            compare_numpyro(args, chees_iters)

    if args.chains:
        print("\n## ESS/s against the number of chains (eight schools, ChEES, "
              f"{chees_iters[0]}+{chees_iters[1]} per chain)\n")
        print("| chains | min bulk ESS | seconds | ESS/s | grad eval, all chains (ms) |")
        print("| --- | --- | --- | --- | --- |")
        model, data = targets()["eight schools"]
        for chains in args.chains:
            rate, seconds, result = run_one(model, data, "chees", num_chains=chains,
                                            num_warmup=chees_iters[0],
                                            num_samples=chees_iters[1], seed=0)
            cost = gradient_cost(model, data, chains) * 1e3
            print(f"| {chains} | {rate * seconds:,.0f} | {seconds:.1f} | {rate:,.0f} | "
                  f"{cost:.2f} |", flush=True)


def compare_numpyro(args: argparse.Namespace, iters: tuple[int, int]) -> None:
    import jax
    import numpyro

    jax.config.update("jax_platform_name", "cpu")
    numpyro.set_host_device_count(1)
    chains = args.main_chains
    ours = targets()
    theirs = numpyro_targets((ppl_gen.load_dataset("eight_schools"),
                              ppl_gen.load_dataset("breast_cancer"),
                              {"y": torch.linspace(-1, 1, 100)}))
    print(f"\n## Against NumPyro {numpyro.__version__} (jax {jax.__version__}, CPU), "
          f"{chains} chains, {iters[0]}+{iters[1]} per chain, compile time included\n")
    print("| model | ChEES (ppl_gen) ESS/s | NumPyro NUTS sequential ESS/s | NumPyro NUTS "
          "vectorized ESS/s | ChEES / best NumPyro |")
    print("| --- | --- | --- | --- | --- |")
    for name, (model, data) in ours.items():
        chees, _, _ = run_one(model, data, "chees", num_chains=chains, num_warmup=iters[0],
                              num_samples=iters[1], seed=0)
        np_model, np_data = theirs[name]
        sequential, _ = run_numpyro(np_model, np_data, chains, "sequential", *iters)
        vectorized, _ = run_numpyro(np_model, np_data, chains, "vectorized", *iters)
        best = max(sequential, vectorized)
        print(f"| {name} | {chees:.1f} | {sequential:.1f} | {vectorized:.1f} | "
              f"{chees / best:.2f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--main-chains", type=int, default=16)
    parser.add_argument("--chains", type=int, nargs="*", default=[])
    parser.add_argument("--numpyro", action="store_true",
                        help="also run NumPyro's NUTS (optional extra: pip install numpyro)")
    main(parser.parse_args())
