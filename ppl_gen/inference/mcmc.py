"""The MCMC engine: Pyro's NUTS and HMC kernels, several chains, per-draw statistics.

Chains run in this process one after another within each iteration (no worker processes:
Pyro's multiprocessing chains are fragile, pyro#2315), each with its own kernel, step size
and mass-matrix adaptation. Discrete sites marked for enumeration are marginalised by the
kernel. A much faster vectorised many-chain engine is separate work; this one defines the
interface and is the correctness reference.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import pyro
import torch
from pyro.infer.autoguide import init_to_median, init_to_sample, init_to_uniform
from pyro.infer.mcmc import HMC, NUTS
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from torch import Tensor

from ..config import MCMCConfig
from .base import (
    FitResult,
    Problem,
    StepInfo,
    improper_start,
    latent_sites,
    max_plate_nesting,
)
from .loop import Engine
from .predictive import _reference, evaluate_draws

__all__ = ["MCMCState", "init", "step", "run", "ENGINE_NUTS", "ENGINE_HMC"]

_INIT_STRATEGIES = {"median": init_to_median, "uniform": init_to_uniform,
                    "prior": init_to_sample}


class MCMCState(NamedTuple):
    """State between MCMC iterations.

    Attributes:
        problem: The model bound to its data.
        config: The MCMC config.
        kernels: One adapted Pyro kernel per chain (mutable Pyro objects: this state is a
            handle, not a value).
        params: Current unconstrained position of each chain.
        iteration: Iterations done (warmup included).
        init_info: How the chains were started.
        rng: Each chain's own torch generator state (CPU, and CUDA on a CUDA problem),
            swapped in around its iterations: chain ``c`` draws from its own stream,
            seeded ``seed + 1000 c``, whatever other chains run beside it (or in other
            processes: ``distributed=True``).
    """

    problem: Problem
    config: MCMCConfig
    kernels: list[MCMCKernel]
    params: list[dict[str, Tensor]]
    iteration: int
    init_info: dict | None = None
    rng: list[tuple] | None = None
    readouts: list[KernelReadout] | None = None


def _get_rng(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng(state: tuple, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _kernel(problem: Problem, config: MCMCConfig) -> MCMCKernel:
    nesting = max_plate_nesting(problem.structure)
    strategy = _INIT_STRATEGIES.get(config.init_strategy, init_to_median)
    common: dict[str, Any] = dict(
        step_size=config.step_size, adapt_step_size=True,
        adapt_mass_matrix=config.adapt_mass_matrix, full_mass=config.full_mass,
        target_accept_prob=config.target_accept_prob, jit_compile=config.jit_compile,
        ignore_jit_warnings=True, init_strategy=improper_start(strategy()),
        max_plate_nesting=nesting)
    if config.kernel == "nuts":
        return NUTS(problem.model, max_tree_depth=config.max_tree_depth, **common)
    return HMC(problem.model, num_steps=config.num_steps, **common)


def init(problem: Problem, config: MCMCConfig | None = None, seed: int = 0) -> MCMCState:
    """Set up one kernel per chain, each from its own seeded initial point."""
    config = config or MCMCConfig()
    if not latent_sites(problem.structure):
        raise ValueError(f"model {problem.name!r} has no latent sample sites to sample: "
                         "MCMC needs priors on its parameters (e.g. bayesian_gmm, not gmm); "
                         "fit point parameters with 'svi' or 'em'")
    trace = problem.structure
    discrete = [n for n in latent_sites(trace) if trace.nodes[n]["fn"].support.is_discrete]
    if discrete:
        warnings.warn(f"discrete latent site(s) {', '.join(discrete)} of {problem.name!r} are "
                      f"summed out by {config.kernel.upper()} (enumerated), so they are not "
                      "in result.samples; draw them afterwards with "
                      "pyro.infer.infer_discrete, or mark them infer={'enumerate': "
                      "'parallel'} to make the summing explicit", UserWarning, stacklevel=3)
    starts, init_info = None, {"init": config.init_strategy}
    if config.init_strategy == "pathfinder":
        starts, init_info = _pathfinder_starts(problem, config.num_chains, seed)
    kernels, params, streams = [], [], []
    for chain in range(config.num_chains):
        pyro.set_rng_seed(seed + 1000 * chain)  # distinct, reproducible initial points
        kernel = _kernel(problem, config)
        if starts is not None:
            kernel.initial_params = starts[chain]
        kernel.setup(config.num_warmup, **problem.data)
        kernels.append(kernel)
        params.append(kernel.initial_params)
        streams.append(_get_rng(problem.device))  # the chain's own stream from here on
    pyro.set_rng_seed(seed)
    return MCMCState(problem, config, kernels, params, 0, init_info, streams,
                     [KernelReadout(k) for k in kernels])


def _pathfinder_starts(problem: Problem, num_chains: int, seed: int
                       ) -> tuple[list[dict[str, Tensor]] | None, dict[str, Any]]:
    """Unconstrained starting points per chain from Pathfinder (Pyro's kernels and
    ``BatchedPotential`` both map sites with ``biject_to`` of their support), or ``None``
    with the reason when the model does not broadcast over draws."""
    import time

    from .batched import BatchedPotential
    from .pathfinder import initial_points

    started = time.perf_counter()
    try:
        potential = BatchedPotential(problem)
        generator = torch.Generator(device=problem.device).manual_seed(seed)
        potential.check_vectorized(potential.initial(3, generator))
        with pyro.validation_enabled(False), torch.no_grad():
            points, _, found = initial_points(potential, num_chains, generator,
                                              dense=False)
    except (ValueError, RuntimeError, FloatingPointError) as error:
        return None, {"init": "median", "pathfinder_failed": str(error).split("\n")[0]}
    parts = potential.unpack(points)
    starts = [{name: value[c].detach() for name, value in parts.items()}
              for c in range(num_chains)]
    return starts, {"init": "pathfinder", "seconds": time.perf_counter() - started, **found}


#: The private fields of Pyro's HMC/NUTS that hold what one iteration did (Pyro keeps its
#: per-iteration statistics only as running aggregates, and its public ``logging()`` rounds
#: the acceptance rate to 3 decimals). :class:`KernelReadout` is the one place that reads
#: them; ``tests/inference/test_mcmc.py`` checks its numbers against Pyro's public
#: ``diagnostics()`` and ``logging()`` on the installed Pyro.
PRIVATE_FIELDS = ("_divergences", "_t", "_warmup_steps", "_mean_accept_prob",
                  "_potential_energy_last", "_kinetic_energy")


class KernelReadout:
    """What one iteration of a Pyro HMC/NUTS kernel did: diverged or not, its acceptance
    probability, step size, potential energy and Hamiltonian energy.

    The energy (for E-BFMI) is the Hamiltonian just after the iteration's momentum draw,
    U(q) + K(p): Pyro keeps no momentum of the state it selects, so Stan's ``energy__`` (H at
    the selected state) is not available; the two differ by the trajectory's integration
    error, which the step-size adaptation keeps small, and both give E-BFMI's consecutive
    differences the momentum resampling's change of energy. It is read by wrapping the
    kernel's ``_kinetic_energy`` and keeping its first value in each ``sample`` call (Pyro
    computes K at the fresh momentum first, then along the trajectory).

    Reads :data:`PRIVATE_FIELDS` when the installed Pyro has them (checked once, at
    construction). A Pyro without them still runs: divergences come from the public
    ``kernel.diagnostics()``, the potential energy from ``kernel.potential_fn`` (one extra
    evaluation per iteration), and the acceptance probability is NaN — ``fallback`` says
    why, and ``fit`` records it in ``info["kernel_readout"]``.
    """

    def __init__(self, kernel: MCMCKernel) -> None:
        self.kernel = kernel
        missing = [f for f in PRIVATE_FIELDS if not hasattr(kernel, f)]
        self.fallback = (None if not missing else
                         f"this Pyro's {type(kernel).__name__} lacks {', '.join(missing)}: "
                         "per-iteration acceptance probabilities are not available (NaN); "
                         "divergences and energies come from its public interface")
        self._divergences = 0
        self._energy = float("nan")
        if self.fallback is None:
            kinetic = kernel._kinetic_energy  # the bound method of the kernel's class

            def first_kinetic_energy(r_unscaled):
                value = kinetic(r_unscaled)
                if self._energy != self._energy:  # NaN: the first call of this iteration
                    self._energy = float(value) + float(kernel._potential_energy_last)
                return value

            kernel._kinetic_energy = first_kinetic_energy

    def step(self, params: dict[str, Tensor], warmup: bool
             ) -> tuple[dict[str, Tensor], dict[str, float]]:
        kernel = self.kernel
        step_size = float(kernel.step_size)
        if self.fallback is not None:
            params = kernel.sample(params)
            try:
                total = len(kernel.diagnostics()["divergences"])
            except ZeroDivisionError:  # its acceptance rate, at the end of warmup
                total = self._divergences
            diverged, self._divergences = total > self._divergences, total
            with torch.no_grad():
                potential = float(kernel.potential_fn(params))
            return params, {"diverging": float(diverged), "accept_prob": float("nan"),
                            "step_size": step_size, "potential_energy": potential,
                            "energy": float("nan")}
        divergences_before = len(kernel._divergences)
        t_before, mean_before = kernel._t, kernel._mean_accept_prob
        self._energy = float("nan")
        params = kernel.sample(params)
        # Pyro's running mean restarts when sampling begins: unroll it to this iteration
        n = kernel._t - kernel._warmup_steps if kernel._t > kernel._warmup_steps else kernel._t
        if n <= 1 or (not warmup and t_before == kernel._warmup_steps):
            accept = kernel._mean_accept_prob
        else:
            accept = kernel._mean_accept_prob * n - mean_before * (n - 1)
        return params, {
            "diverging": float(len(kernel._divergences) > divergences_before),
            "accept_prob": float(min(max(accept, 0.0), 1.0)),
            "step_size": step_size,
            "potential_energy": float(kernel._potential_energy_last),
            "energy": self._energy,
        }


def step(state: MCMCState) -> tuple[MCMCState, StepInfo]:
    """One iteration of every chain. ``StepInfo.extras`` holds per-chain statistics as
    arrays under ``diverging``, ``accept_prob``, ``step_size``, ``potential_energy`` and
    ``energy``."""
    warmup = state.iteration < state.config.num_warmup
    new_params, per_chain = [], []
    device = state.problem.device
    for chain, (readout, params) in enumerate(zip(state.readouts, state.params)):
        if state.rng is not None:
            _set_rng(state.rng[chain], device)
        params, stats = readout.step(params, warmup)
        if state.rng is not None:
            state.rng[chain] = _get_rng(device)
        new_params.append(params)
        per_chain.append(stats)
    extras = {k: np.array([s[k] for s in per_chain]) for k in per_chain[0]}
    loss = float(extras["potential_energy"].mean())
    return state._replace(params=new_params, iteration=state.iteration + 1), \
        StepInfo(loss, extras)


def _constrain(kernel: MCMCKernel, params: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for name, value in params.items():
        transform = kernel.transforms.get(name)
        out[name] = (transform.inv(value) if transform is not None else value).detach()
    return out


def _record(records: dict[str, Any], state: MCMCState, info: StepInfo, index: int) -> None:
    if state.iteration > state.config.num_warmup:
        for chain, (kernel, params) in enumerate(zip(state.kernels, state.params)):
            records["draws"][chain].append(_constrain(kernel, params))
        records["stats"].append(info.extras)


def _finish(problem: Problem, config: MCMCConfig, seed: int, state: MCMCState,
            records: dict[str, Any], base_info: dict[str, Any]) -> FitResult:
    for kernel in state.kernels:
        kernel.cleanup()
    draws, stats = records["draws"], records["stats"]
    with pyro.validation_enabled(False):
        samples = {name: torch.stack([torch.stack([d[name] for d in chain])
                                      for chain in draws])
                   for name in draws[0][0]}
        samples.update(_deterministic(problem, samples, seed))
    sample_stats = {k: np.stack([s[k] for s in stats], axis=1) for k in stats[0]}
    sample_stats["diverging"] = sample_stats["diverging"].astype(bool)
    info = {**base_info,
            "init": state.init_info or {"init": config.init_strategy},
            "num_divergences": int(sample_stats["diverging"].sum()),
            "divergences_per_chain": sample_stats["diverging"].sum(1).tolist(),
            "step_size_per_chain": [float(k.step_size) for k in state.kernels],
            "mean_accept_prob": float(sample_stats["accept_prob"].mean())}
    fallback = state.readouts[0].fallback if state.readouts else None
    if fallback is not None:
        info["kernel_readout"] = fallback
    history = {"loss": sample_stats["potential_energy"].mean(0)}
    return FitResult(config.kernel, problem, config, seed, history, samples=samples,
                     sample_stats=sample_stats, info=info)


def run(problem: Problem, config: MCMCConfig | None = None, seed: int = 0,
        **loop: Any) -> FitResult:
    """Warm up, then draw ``num_samples`` per chain; returns draws shaped (chain, draw, ...)
    with deterministic sites evaluated at every draw."""
    config = config or MCMCConfig()
    engine = ENGINE_NUTS if config.kernel == "nuts" else ENGINE_HMC
    return engine.run(problem, config, seed, **loop)


#: The draws of one batched pass for the deterministic sites hold at most about this many
#: numbers per observed site (the pass builds the likelihood at every draw: 4,800 draws of
#: a 100,000-row regression are 480 million).
DETERMINISTIC_CHUNK_NUMBERS = 2 ** 24


def _deterministic(problem: Problem, samples: dict[str, Tensor], seed: int
                   ) -> dict[str, Tensor]:
    """The model's deterministic sites at every draw, in chunks of draws whose batched
    pass stays within :data:`DETERMINISTIC_CHUNK_NUMBERS` per observed site."""
    num_chains, num_draws = next(iter(samples.values())).shape[:2]
    flat = {k: v.reshape(num_chains * num_draws, *v.shape[2:]) for k, v in samples.items()}
    total = num_chains * num_draws
    with torch.no_grad():
        reference = _reference(problem, flat)  # one model run at the first draw
    if not any(site["type"] == "sample" and site["infer"].get("_deterministic")
               and name not in flat for name, site in reference.nodes.items()):
        return {}
    per_draw = max((site["value"].numel() for site in reference.nodes.values()
                    if site["type"] == "sample" and torch.is_tensor(site["value"])),
                   default=1)
    chunk = max(1, min(total, DETERMINISTIC_CHUNK_NUMBERS // max(per_draw, 1)))
    parts: list[dict[str, Tensor]] = []
    for start in range(0, total, chunk):
        part = {k: v[start:start + chunk] for k, v in flat.items()}
        values = evaluate_draws(problem, part, seed=seed, log_likelihood=False,
                                posterior_predictive=False).deterministic
        parts.append(values)
    return {k: torch.cat([p[k] for p in parts]).reshape(num_chains, num_draws,
                                                        *parts[0][k].shape[1:])
            for k in parts[0]}


def _engine(kernel: str, description: str) -> Engine:
    return Engine(
        name=kernel, config_class=MCMCConfig, kind="sampler", description=description,
        init=init, step=step,
        total_steps=lambda config: config.num_warmup + config.num_samples,
        new_records=lambda config: {"draws": [[] for _ in range(config.num_chains)],
                                    "stats": []},
        record=_record, finish=_finish,
        # Like Pyro's MCMC runner (disable_validation=True): distribution argument checks
        # on every leapfrog step cost time and NaNs during adaptation are expected.
        context=lambda config: pyro.validation_enabled(False),
        label=lambda config: f"{config.kernel.upper()} x{config.num_chains}",
        postfix=lambda info: {"energy": info.loss},
        cannot_resume="Pyro's NUTS/HMC kernels keep their adaptation state in objects "
                      "that cannot be saved; use engine 'chees', which resumes exactly")


ENGINE_NUTS = _engine("nuts", "No-U-Turn sampler (Pyro NUTS), several chains")
ENGINE_HMC = _engine("hmc", "Hamiltonian Monte Carlo, fixed path length (Pyro HMC)")
