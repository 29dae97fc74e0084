"""What does ppl_gen cost on top of the tools a user would otherwise call directly?

Side by side, in one process, alternating runs (the machines are shared and noisy, so we
report medians and ratios from the same run, never single absolute times):

- NUTS on eight schools (non-centered): ``ppl_gen.fit(engine="nuts")`` against
  ``pyro.infer.MCMC(NUTS(model))`` on the same plain Pyro function; both one chain, same
  warmup and draws, jit off and on; plus ppl_gen's registered EightSchools module.
  Metric: wall time and minimum bulk ESS per second.
- SVI on eight schools with AutoNormal: ``ppl_gen.fit(engine="svi")`` against a plain Pyro
  ``SVI`` loop. Metric: time per step.
- EM for a 3-component full-covariance mixture: ``ppl_gen.fit(engine="em")`` against
  scikit-learn's ``GaussianMixture`` from the same start and tolerance. Metric: wall time.

    python benchmarks/engine_overhead.py [--repeats 3] [--quick] [--svi-only]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import ppl_gen
from ppl_gen.diagnostics import ess


def eight_schools_pyro(y, sigma):
    """The same model as ppl_gen's EightSchools, written as a plain Pyro function."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("data", len(sigma)):
        theta_tilde = pyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(mu + tau * theta_tilde, sigma), obs=y)


def min_ess(samples: dict) -> float:
    values = []
    for name in ("mu", "tau"):
        draws = np.asarray(samples[name]).reshape(1, -1)
        values.append(ess(draws))
    return min(values)


def in_order(seed, first, second):
    """Run both, alternating which goes first (drift and caches favour neither side)."""
    if seed % 2:
        b = second()
        return first(), b
    a = first()
    return a, second()


def bench_nuts(data, warmup, draws, jit, seed, zoo=False):
    """The same plain Pyro function through ppl_gen's engine and through pyro's MCMC, with
    Pyro's default initialisation (uniform) on both sides; ``zoo=True`` runs ppl_gen's
    registered EightSchools module instead on ppl_gen's side."""
    def ours():
        model = ppl_gen.MODELS["eight_schools"].from_dataset(data) if zoo \
            else eight_schools_pyro
        start = time.perf_counter()
        result = ppl_gen.fit(model, data, engine="nuts", num_warmup=warmup,
                             num_samples=draws, num_chains=1, jit_compile=jit, seed=seed,
                             init_strategy="uniform", device="cpu")
        wall = time.perf_counter() - start
        return wall, min_ess({k: v.numpy() for k, v in result.samples.items()})

    def theirs():
        pyro.set_rng_seed(seed)
        kernel = NUTS(eight_schools_pyro, jit_compile=jit, ignore_jit_warnings=True)
        start = time.perf_counter()
        mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=1,
                    disable_progbar=True)
        mcmc.run(data["y"], data["sigma"])
        wall = time.perf_counter() - start
        return wall, min_ess({k: v.numpy() for k, v in mcmc.get_samples().items()})

    (t_ours, e_ours), (t_theirs, e_theirs) = in_order(seed, ours, theirs)
    return t_ours, t_theirs, e_ours / t_ours, e_theirs / t_theirs


def bench_svi(data, steps, seed):
    """Whole-fit time per step, setup included on both sides."""
    def ours():
        model = ppl_gen.MODELS["eight_schools"].from_dataset(data)
        start = time.perf_counter()
        ppl_gen.fit(model, data, engine="svi", guide="normal", num_steps=steps, seed=seed,
                    device="cpu")
        return (time.perf_counter() - start) / steps

    def theirs():
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        start = time.perf_counter()
        guide = AutoNormal(eight_schools_pyro)
        svi = SVI(eight_schools_pyro, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
        for _ in range(steps):
            svi.step(data["y"], data["sigma"])
        return (time.perf_counter() - start) / steps

    return in_order(seed, ours, theirs)


def bench_em(seed):
    data = ppl_gen.load_dataset("gaussian_mixture", dtype=torch.float64, num_data=3000)
    x = data["x"]
    rng = np.random.default_rng(seed)
    weights = np.full(3, 1 / 3)
    locs = x.numpy()[rng.choice(len(x), 3, replace=False)]
    covs = np.stack([np.eye(2)] * 3)
    model = ppl_gen.MODELS["gmm"].from_dataset(data).double()
    model.set_parameters(torch.tensor(weights), torch.tensor(locs), torch.tensor(covs))
    from ppl_gen.config import EMConfig
    from ppl_gen.inference import em, make_problem

    start = time.perf_counter()
    result = em.run(make_problem(model, data, device="cpu"), EMConfig(tol=1e-6, max_iter=500),
                    initialize=False)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    sk = SkGaussianMixture(3, weights_init=weights, means_init=locs,
                           precisions_init=np.linalg.inv(covs), tol=1e-6, max_iter=500,
                           reg_covar=1e-6).fit(x.numpy())
    theirs = time.perf_counter() - start
    return ours, theirs, result.info["num_iterations"], sk.n_iter_


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    data = ppl_gen.load_dataset("eight_schools")
    warmup, draws = (100, 100) if args.quick else (500, 1000)
    steps = 200 if args.quick else 2000
    # Untimed warm-up of both sides: first calls pay one-off costs (lazy imports, JIT
    # tracing caches, allocator growth) that would otherwise land on whichever runs first.
    bench_nuts(data, 20, 20, False, 0)
    bench_svi(data, 20, 0)
    rows = {}
    for jit in ((False, True) if not args.svi_only else ()):
        runs = [bench_nuts(data, warmup, draws, jit, seed) for seed in range(args.repeats)]
        rows[f"NUTS jit={jit}"] = runs
    if not args.svi_only:
        runs = [bench_nuts(data, warmup, draws, False, seed, zoo=True)
                for seed in range(args.repeats)]
        rows["NUTS jit=False, ppl_gen's EightSchools module vs plain function"] = runs
    svi_runs = [bench_svi(data, steps, seed) for seed in range(args.repeats)]
    em_runs = [] if args.svi_only else [bench_em(seed) for seed in range(args.repeats)]

    med = statistics.median
    print(f"# engine overhead ({platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, pyro {pyro.__version__}, 1 thread, {args.repeats} repeats, "
          "medians)\n")
    print("| benchmark | ppl_gen | direct | ratio ppl_gen/direct |")
    print("| --- | --- | --- | --- |")
    for name, runs in rows.items():
        ours, theirs = med(r[0] for r in runs), med(r[1] for r in runs)
        print(f"| eight schools {name}, {warmup}+{draws} draws: wall s | {ours:.2f} | "
              f"{theirs:.2f} | {med(r[0] / r[1] for r in runs):.2f} |")
        print(f"| eight schools {name}: min bulk ESS/s | {med(r[2] for r in runs):.1f} | "
              f"{med(r[3] for r in runs):.1f} | {med(r[2] / r[3] for r in runs):.2f} |")
    print("| eight schools SVI AutoNormal (zoo module vs plain function): ms/step | "
          f"{1e3 * med(r[0] for r in svi_runs):.2f} "
          f"| {1e3 * med(r[1] for r in svi_runs):.2f} | "
          f"{med(r[0] / r[1] for r in svi_runs):.2f} |")
    if not em_runs:
        return
    print(f"| GMM EM, 3,000 x 2, K=3 (vs scikit-learn): wall s | "
          f"{med(r[0] for r in em_runs):.3f} | {med(r[1] for r in em_runs):.3f} | "
          f"{med(r[0] / r[1] for r in em_runs):.2f} |")
    print(f"\nEM iterations (ppl_gen, scikit-learn): {[(r[2], r[3]) for r in em_runs]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--svi-only", action="store_true")
    main(parser.parse_args())
