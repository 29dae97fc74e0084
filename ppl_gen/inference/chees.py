"""ChEES-HMC: many chains in lockstep on one batched potential (engine ``"chees"``).

NUTS builds a different tree for every chain, which serialises chains; ChEES-HMC
(Hoffman, Radul & Sountsov 2021) was designed for many chains on one device instead: all
chains share one trajectory length T, jittered every iteration (t = u·T, u ~ U(0, 1)), and T
is adapted during warmup by gradient ascent on the ChEES criterion — the change in squared
distance from the chains' mean between the start and the end of a trajectory, estimated
across chains. Each chain keeps its own step size (dual averaging, Hoffman & Gelman 2014);
the mass matrix follows Stan's windowed schedule but is estimated from all chains' window
draws and shared (diagonal by default, ``mass_matrix="dense"``; ``pool_mass_matrix=False``
gives each chain its own diagonal, as Stan does). Chains whose trajectory is shorter are
masked once they finish. After warmup every chain runs a fixed, reversible HMC kernel with
a Metropolis correction, so the draws are exact whatever the adaptation did.

The leapfrog step (the model's potential and gradient for all chains, the position and
momentum updates, the masks) is traced once and compiled (:mod:`.compiled`), falling back
to eager Pyro with the reason in ``info["compile_reason"]``. The whole state lives on the
model's device; the leapfrog loop has no host syncs except the one that reads the longest
trajectory's step count per iteration.

References:
    Hoffman, Radul & Sountsov (2021), "An adaptive-MCMC scheme for setting trajectory
    lengths in Hamiltonian Monte Carlo", AISTATS.
    Hoffman & Gelman (2014), "The No-U-Turn sampler", JMLR (dual averaging).
    Stan Reference Manual, "HMC algorithm parameters" (warmup windows).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import pyro
import torch
from torch import Tensor

from ..config import ChEESConfig
from .base import FitResult, Problem, StepInfo
from .batched import BatchedPotential
from .compiled import CompiledFunction, compile_function, normalize_backend
from .loop import Engine
from .mcmc import _deterministic

__all__ = ["ChEESState", "init", "step", "run", "ENGINE", "warmup_windows"]


class ChEESState(NamedTuple):
    """Every chain's state, batched on the leading dimension (C chains, D dimensions).

    Attributes:
        potential: The batched potential.
        q, energy, grad: Positions (C, D), potential energies (C,), gradients (C, D).
        step_size: (C,).
        inv_mass: Inverse mass matrix: diagonal per chain (C, D), or dense and shared (D, D).
        momentum_factor: B with B^T B = M = inv_mass^-1, so p = z B for z ~ N(0, I):
            (C, D) elementwise for a diagonal matrix, (D, D) for a dense one.
        log_trajectory: log T, shared by all chains (scalar tensor).
        dual: Dual-averaging state per chain: ``mu``, ``log_avg``, ``h_bar`` (C,), ``t``.
        adam: Adam moments for log T: ``m``, ``v``, ``t``.
        window: Running sums for the mass-matrix window: ``n``, ``sum``, ``sumsq``.
        iteration: Iterations done.
        generator: The torch generator all randomness comes from.
        leapfrog: One masked leapfrog step of every chain, traced and compiled once
            (see :mod:`ppl_gen.inference.compiled`), or the eager function.
        metric: The kind of the current mass-matrix estimate: ``"diagonal"`` or ``"dense"``
            (with ``mass_matrix="auto"`` chosen from each window's draws).
        config: The config the fit runs under.
        gradient_evaluations: Leapfrog steps so far (the batch runs as long as its longest
            chain), warmup included.
        compile_decision: What ``compile="auto"`` decided and why (``""``: not yet).
        timer: ``time.perf_counter()`` when the eager steps began being timed.
        init_info: How the chains were started.
        shard: Under ``distributed=True``, this rank's block of chains
            (:class:`~ppl_gen.inference.distributed.ChainShard`): every field above holds
            the whole batch, and only the leapfrog runs on the block; ``None`` in one
            process.
    """

    potential: BatchedPotential
    q: Tensor
    energy: Tensor
    grad: Tensor
    step_size: Tensor
    inv_mass: Tensor
    momentum_factor: Tensor
    log_trajectory: Tensor
    dual: dict[str, Any]
    adam: dict[str, Any]
    window: dict[str, Any]
    iteration: int
    generator: torch.Generator
    leapfrog: CompiledFunction
    metric: str = "diagonal"
    config: ChEESConfig | None = None
    gradient_evaluations: float = 0.0
    compile_decision: str = ""
    timer: float = 0.0
    init_info: dict | None = None
    shard: Any = None


def warmup_windows(num_warmup: int) -> tuple[int, list[int]]:
    """Stan's mass-matrix schedule: (first slow iteration, iterations that close a window).

    A fast start (75 iterations, or 15% of a short warmup) adapts only the step size;
    then slow windows of 25, 50, 100, ... iterations each end with a new mass matrix; the
    last 50 (10%) adapt the step size to the final matrix."""
    if num_warmup < 20:
        return num_warmup, []
    if num_warmup < 150:
        start, end = int(0.15 * num_warmup), int(0.9 * num_warmup)
        size = end - start
    else:
        start, end, size = 75, num_warmup - 50, 25
    ends, current = [], start
    while current < end:
        nxt = current + size
        if nxt + 2 * size > end:  # the last window absorbs what is left
            nxt = end
        ends.append(nxt)
        current, size = nxt, size * 2
    return start, ends


#: Iterations after the step-size adaptation (re)starts before its step sizes may set T's
#: floor: the restart's 10x steps fall back within ~3 iterations.
_SETTLED = 10


def _dual_start(step_size: Tensor) -> dict[str, Any]:
    return {"mu": torch.log(10 * step_size), "log_avg": torch.zeros_like(step_size),
            "h_bar": torch.zeros_like(step_size), "t": 0}


def init(problem: Problem, config: ChEESConfig | None = None, seed: int = 0, *,
         defer_compile: bool = False) -> ChEESState:
    """Random starts in (−2, 2) (unconstrained), checked to vectorise over chains.

    ``defer_compile`` (with ``compile="auto"``): start with the eager leapfrog and leave the
    decision to compile to :func:`maybe_compile`, as :func:`run` does."""
    config = config or ChEESConfig()
    pyro.set_rng_seed(seed)
    potential = BatchedPotential(problem)
    device = problem.device
    shard = None
    if config.distributed:
        from .distributed import chain_shard

        shard = chain_shard(config.num_chains, device, config.distributed_timeout)
    generator = torch.Generator(device=device).manual_seed(seed)
    q = potential.initial(config.num_chains, generator)
    potential.check_vectorized(q[: min(3, config.num_chains)])
    start_cov, init_info = None, {"init": "uniform"}
    dense = _dense_layout(config, q.shape[1])
    if config.init == "pathfinder":
        from .pathfinder import initial_points

        started = time.perf_counter()
        try:
            with pyro.validation_enabled(False):
                q, start_cov, found = initial_points(potential, config.num_chains, generator,
                                                     dense=dense)
            init_info = {"init": "pathfinder", "seconds": time.perf_counter() - started,
                         **found}
        except FloatingPointError as error:
            init_info = {"init": "uniform", "pathfinder_failed": str(error)}
    if shard is not None:  # every rank starts from rank 0's points and random state
        q = q.contiguous()
        shard.broadcast(q, *([start_cov] if start_cov is not None else []))
        shard.broadcast_generator(generator)
    energy, grad = potential.value_and_grad(q)
    if not torch.isfinite(energy).all():
        raise FloatingPointError(f"model {problem.name!r} has a non-finite log-density at "
                                 "the initial points; check the priors' supports")
    step_size = torch.full_like(energy, config.step_size)
    # (D, D) only for a dense metric: above 64 dimensions the default is diagonal, and an
    # identity of a 100,000-dimensional model would take 80 GB
    eye = torch.eye(q.shape[1], dtype=q.dtype, device=device) if dense else None
    inv_mass = eye if dense else torch.ones_like(q)
    factor = inv_mass.clone()
    if start_cov is not None and bool(torch.isfinite(start_cov).all()):
        variance = (torch.diagonal(start_cov) if dense else start_cov).clamp_min(1e-8)
        try:
            if dense:
                candidate = start_cov + 1e-8 * torch.diag(variance)
                chol = torch.linalg.cholesky(candidate)
                factor = torch.linalg.solve_triangular(chol, eye, upper=False)  # L^-1
                inv_mass = candidate
            else:
                inv_mass = variance.expand_as(q).contiguous()
                factor = inv_mass.rsqrt().contiguous()
        except RuntimeError:  # not positive definite: keep the identity
            init_info["metric"] = "identity (the draws' covariance was singular)"
    log_t = torch.log(torch.as_tensor(config.init_trajectory_length, dtype=q.dtype,
                                      device=device))
    adam = {"m": torch.zeros((), dtype=q.dtype, device=device),
            "v": torch.zeros((), dtype=q.dtype, device=device), "t": 0}
    window = _empty_window(q, dense)
    if defer_compile and normalize_backend(config.compile) == "auto":
        leapfrog = CompiledFunction(_leapfrog(potential, dense), "eager",
                                    "not compiled yet (run decides once it has timed the "
                                    "eager step)", 0.0)
    else:
        leapfrog = compile_function(
            _leapfrog(potential, dense), _example_args(q, grad, energy, step_size,
                                                       inv_mass, dense, shard),
            backend=config.compile, name=f"the potential of {problem.name!r}")
    metric = "dense" if config.mass_matrix == "dense" else "diagonal"
    return ChEESState(potential, q, energy, grad, step_size, inv_mass, factor,
                      log_t, _dual_start(step_size), adam, window, 0, generator, leapfrog,
                      metric, config, 0.0, "", time.perf_counter(), init_info, shard)


def _example_args(q: Tensor, grad: Tensor, energy: Tensor, step_size: Tensor,
                  inv_mass: Tensor, dense: bool, shard: Any) -> tuple[Tensor, ...]:
    """The leapfrog's arguments for tracing it: this rank's block of chains (a dense
    metric, D x D, is shared; a diagonal one is per chain, C x D)."""
    if shard is not None:
        q, grad, energy, step_size = (shard.local(v) for v in (q, grad, energy, step_size))
        inv_mass = inv_mass if dense else shard.local(inv_mass)
    active = torch.ones(q.shape[0], 1, dtype=torch.bool, device=q.device)
    return (q, torch.zeros_like(q), grad, energy, step_size.unsqueeze(-1), inv_mass, active)


def _empty_window(q: Tensor, dense: bool) -> dict[str, Any]:
    window = {"n": 0, "sum": torch.zeros_like(q), "sumsq": torch.zeros_like(q)}
    if dense:
        window["outer"] = q.new_zeros(q.shape[1], q.shape[1])
    return window


def _velocity(inv_mass: Tensor, momentum: Tensor, dense: bool) -> Tensor:
    """M^-1 p for every chain: p M^-1 (dense, symmetric) or elementwise (diagonal)."""
    return momentum @ inv_mass if dense else inv_mass * momentum


def _kinetic(inv_mass: Tensor, momentum: Tensor, dense: bool) -> Tensor:
    return 0.5 * (momentum * _velocity(inv_mass, momentum, dense)).sum(-1)


def _leapfrog(potential: BatchedPotential, dense: bool = False):
    """One leapfrog step for every chain; chains with ``active`` False keep their state."""

    def leapfrog(position: Tensor, momentum: Tensor, grad: Tensor, energy: Tensor,
                 eps: Tensor, inv_mass: Tensor, active: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        half = momentum - 0.5 * eps * grad
        new_position = position + eps * _velocity(inv_mass, half, dense)
        new_energy, new_grad = potential.value_and_grad(new_position)
        new_momentum = half - 0.5 * eps * new_grad
        return (torch.where(active, new_position, position),
                torch.where(active, new_momentum, momentum),
                torch.where(active, new_grad, grad),
                torch.where(active.squeeze(-1), new_energy, energy))

    return leapfrog


def _transition(state: ChEESState, config: ChEESConfig) -> tuple[dict[str, Tensor], Tensor]:
    """One jittered HMC trajectory per chain, masked per chain, then Metropolis."""
    q, gen = state.q, state.generator
    num_chains, dim = q.shape
    u = torch.rand((), generator=gen, device=gen.device).to(q)
    length = u * state.log_trajectory.exp()
    num_steps = torch.clamp(torch.ceil(length / state.step_size), 1, config.max_leapfrog_steps)
    longest = int(num_steps.max())  # the one host sync per iteration
    z = torch.randn(num_chains, dim, generator=gen, device=gen.device).to(q)
    factor = state.momentum_factor
    dense = _dense_layout(config, dim)
    p0 = z @ factor if dense else z * factor
    eps = state.step_size.unsqueeze(-1)
    position, momentum, energy, grad = q, p0, state.energy, state.grad
    shard, inv_mass, steps = state.shard, state.inv_mass, num_steps
    if shard is not None:  # this rank integrates its block; every rank gets every chain
        position, momentum, energy, grad, eps, steps = (
            shard.local(v) for v in (position, momentum, energy, grad, eps, steps))
        inv_mass = inv_mass if dense else shard.local(inv_mass)
        longest = int(steps.max())
    for i in range(longest):
        active = (i < steps).unsqueeze(-1)
        position, momentum, grad, energy = state.leapfrog(position, momentum, grad, energy,
                                                          eps, inv_mass, active)
    if shard is not None:
        position, momentum, grad, energy = shard.gather(position, momentum, grad, energy)
    kinetic0 = _kinetic(state.inv_mass, p0, dense)
    kinetic1 = _kinetic(state.inv_mass, momentum, dense)
    delta = (energy + kinetic1) - (state.energy + kinetic0)
    delta = torch.where(torch.isfinite(delta), delta, torch.full_like(delta, math.inf))
    accept_prob = torch.exp(torch.clamp(-delta, max=0.0))
    diverging = delta > config.max_energy_error
    accept = torch.rand(num_chains, generator=gen, device=gen.device).to(q) < accept_prob
    proposal = {"q": position, "p": momentum, "length": length}
    new = {
        "q": torch.where(accept.unsqueeze(-1), position, q),
        "energy": torch.where(accept, energy, state.energy),
        "grad": torch.where(accept.unsqueeze(-1), grad, state.grad),
        "accept_prob": accept_prob, "diverging": diverging, "num_steps": num_steps,
        # the Hamiltonian at the kept point (Stan's energy__, for E-BFMI)
        "hamiltonian": torch.where(accept, energy + kinetic1, state.energy + kinetic0),
        "proposal": proposal,
    }
    return new, accept


def _adapt(state: ChEESState, new: dict[str, Tensor], config: ChEESConfig,
           schedule: tuple[int, list[int]]) -> ChEESState:
    """Warmup: step size per chain, trajectory length for all, mass matrix per window."""
    iteration = state.iteration + 1
    # Dual averaging per chain (Hoffman & Gelman 2014, section 3.2.1).
    dual = dict(state.dual)
    dual["t"] += 1
    t, gamma, t0, kappa = dual["t"], 0.05, 10.0, 0.75
    error = config.target_accept_prob - new["accept_prob"]
    dual["h_bar"] = (1 - 1 / (t + t0)) * dual["h_bar"] + error / (t + t0)
    log_step = dual["mu"] - math.sqrt(t) / gamma * dual["h_bar"]
    weight = t ** (-kappa)
    dual["log_avg"] = weight * log_step + (1 - weight) * dual["log_avg"]
    step_size = log_step.exp()
    # ChEES gradient for log T (Hoffman et al. 2021, algorithm 1), acceptance-weighted.
    proposal = new["proposal"]
    start, end = state.q, proposal["q"]
    centre_start, centre_end = start.mean(0), end.mean(0)
    change = ((end - centre_end) ** 2).sum(-1) - ((start - centre_start) ** 2).sum(-1)
    velocity = _velocity(state.inv_mass, proposal["p"], _dense_layout(config, start.shape[1]))
    # d/d log T of the end point is t·velocity with t the time actually integrated
    # (steps x step size): with T below one step every chain integrates one whole step
    # whatever u·T says, and using u·T there made the gradient blind to T (it stayed at
    # its initial 0.1 on posteriors whose step size was 0.6).
    integrated = new["num_steps"] * state.step_size
    per_chain = integrated * change * ((end - centre_end) * velocity).sum(-1)
    weights = torch.where(torch.isfinite(per_chain), new["accept_prob"],
                          torch.zeros_like(per_chain))
    if config.trajectory_criterion == "chees_rate":
        # ChEES per unit of trajectory length (TFP's chees_rate_criterion): d log(C/T) /
        # d log T = (dC/d log T) / C - 1, which has the sign of dC/d log T - C with
        # C = E[change^2] / 4. (On a standard Gaussian E_u C(uT) = D/2 (1 - sin 2T / 2T):
        # the plain criterion peaks at T = 2.25, the rate at T = 1.59.)
        per_chain = per_chain - 0.25 * change ** 2
    per_chain = torch.nan_to_num(per_chain, nan=0.0, posinf=0.0, neginf=0.0)
    gradient = (weights * per_chain).sum() / weights.sum().clamp_min(1e-10)
    # Make the gradient scale-free before Adam: it grows as (spread of the chains)^4, so
    # while the chains travel in from distant starts it is ~1e8 times its value at
    # stationarity, and Adam's second moment (beta2 = 0.95) then froze T for hundreds of
    # iterations after the transient (seen on posteriordb's kidiq: T constant over 160
    # iterations). Divide by the squared mean squared distance from the chains' centre.
    spread = 0.5 * (((end - centre_end) ** 2).sum(-1) + ((start - centre_start) ** 2).sum(-1))
    spread = torch.nan_to_num(spread, nan=0.0, posinf=0.0).mean()
    gradient = gradient / (spread ** 2).clamp_min(torch.finfo(spread.dtype).tiny)
    adam = dict(state.adam)
    adam["t"] += 1
    beta1, beta2 = 0.0, 0.95  # the paper's Adam settings for log T
    adam["m"] = beta1 * adam["m"] + (1 - beta1) * gradient
    adam["v"] = beta2 * adam["v"] + (1 - beta2) * gradient ** 2
    v_hat = adam["v"] / (1 - beta2 ** adam["t"])
    if config.adapt_trajectory_length:
        log_t = state.log_trajectory
        # Below one step of the smallest step size T changes nothing (every chain runs one
        # step), so its gradient says nothing about T there and T could sink for ever; when
        # longer trajectories are better, start the ascent from one step instead.
        # Not in the first iterations after the dual averaging (re)starts, though: it
        # restarts at 10x the step size, and a floor taken from those steps threw T from
        # 1 to ~3.6 in one iteration after a mass-matrix window (then T could not come
        # back before warmup ended: 4.8 against an optimum of 2.25, ill-scaled Gaussian,
        # 64 chains, seed 0).
        if state.dual["t"] >= _SETTLED:
            floor = state.step_size.min().log()
            log_t = torch.where((gradient > 0) & (log_t < floor), floor, log_t)
        log_t = log_t + config.trajectory_learning_rate * adam["m"] / (v_hat.sqrt() + 1e-8)
        # Keep T within what the step sizes can reach. (No lower clamp at the step size:
        # after each mass-matrix window the dual averaging restarts at 10x the step size
        # for a few iterations, and a clamp there threw T far past its optimum.)
        max_length = (step_size.max() * config.max_leapfrog_steps).log()
        log_t = torch.minimum(log_t, max_length)
    else:  # plain (jittered) HMC: T stays where the user put it
        log_t = state.log_trajectory
    # Windowed mass matrix (Stan's schedule), from every chain's draws or each chain's own.
    window = dict(state.window)
    inv_mass, factor = state.inv_mass, state.momentum_factor
    start_slow, ends = schedule
    if config.adapt_mass_matrix and ends and start_slow < iteration <= ends[-1]:
        window["n"] += 1
        window["sum"] = window["sum"] + new["q"]
        window["sumsq"] = window["sumsq"] + new["q"] ** 2
        if "outer" in window:
            window["outer"] = window["outer"] + new["q"].T @ new["q"]
        if iteration in ends:
            inv_mass, factor, metric = _estimate_mass(window, config, inv_mass)
            window = _empty_window(new["q"], "outer" in window)
            dual = _dual_start(step_size)
            if config.adapt_trajectory_length:
                # The new metric whitens the posterior (in its coordinates each direction
                # has sd ~1 and, if Gaussian, period 2π), so the useful integration time is
                # O(1) whatever the parameters' units: restart T at 1 and let the criterion
                # refine it, instead of carrying a T tuned to the previous metric (on
                # posteriordb's earnings the dense metric came in the last window and T
                # had 20 iterations to climb from 0.03). At most 10 of the current steps,
                # though: while the metric is still poor the step size is tiny and T = 1
                # meant the 1,000-step cap on every iteration (150,000 gradients of warmup).
                log_t = torch.clamp(torch.log(10 * state.step_size.median()), max=0.0)
                adam = {"m": torch.zeros_like(adam["m"]), "v": torch.zeros_like(adam["v"]),
                        "t": 0}
            state = state._replace(metric=metric)
    return state._replace(step_size=step_size, inv_mass=inv_mass, momentum_factor=factor,
                          log_trajectory=log_t, dual=dual, adam=adam, window=window)


#: ``mass_matrix="auto"`` keeps the metric as a D x D matrix up to this many dimensions (a
#: dense product costs D^2 per chain and step: negligible next to a model's gradient there)
#: and chooses, at every window, between the window's diagonal and dense estimates.
AUTO_DENSE_MAX_DIM = 64
#: ... dense once the window's correlation matrix is this ill-conditioned (HMC's step count
#: grows as the square root of the condition number of the metric-scaled posterior, so this
#: is the point where dense saves ~5x the gradients) and well above what sampling noise alone
#: gives (see :func:`_choose_dense`).
AUTO_DENSE_CONDITION = 30.0


def _dense_layout(config: ChEESConfig, dim: int) -> bool:
    """Whether the metric is held as a D x D matrix (dense, or auto in few dimensions)."""
    if config.mass_matrix == "dense":
        return True
    return (config.mass_matrix == "auto" and config.pool_mass_matrix
            and dim <= AUTO_DENSE_MAX_DIM)


def _choose_dense(cov: Tensor, count: int) -> bool:
    """Dense when the correlation matrix's condition number is both large (>= 30) and
    three times what independent draws would give by chance: the Marchenko–Pastur edge
    ((1 + √γ) / (1 − √γ))², γ = D / n_eff, with n_eff = count / 4 (warmup draws are
    autocorrelated; 4 is a conservative factor). Too few draws (γ ≥ 0.5): diagonal."""
    dim = cov.shape[0]
    sd = cov.diagonal().clamp_min(torch.finfo(cov.dtype).tiny).sqrt()
    corr = cov / torch.outer(sd, sd)
    eig = torch.linalg.eigvalsh(0.5 * (corr + corr.T))
    condition = float(eig[-1] / eig[0].clamp_min(torch.finfo(cov.dtype).tiny))
    gamma = dim / max(count / 4.0, 1.0)
    if gamma >= 0.5:
        return False
    noise = ((1 + math.sqrt(gamma)) / (1 - math.sqrt(gamma))) ** 2
    return condition >= max(AUTO_DENSE_CONDITION, 3 * noise)


def _estimate_mass(window: dict[str, Any], config: ChEESConfig,
                   previous: Tensor | None = None) -> tuple[Tensor, Tensor, str]:
    """Inverse mass matrix from a window's draws: (inverse metric, momentum factor, kind).

    Pooled (the default), the estimate uses all C chains' draws and is shared: C times more
    draws than one chain has, so a chain that was stuck during the window cannot end up
    with a near-zero variance that keeps it stuck (seen with per-chain matrices on logistic
    regression after 300 warmup iterations: one chain's sd 0.18 where the others' was 0.8).

    Regularisation. Stan shrinks towards a fixed 1e-3·I: (n / (n + 5)) Σ + 1e-3 (5 / (n + 5)) I.
    That is scale-blind: a coefficient with posterior variance 1e-6 (a covariate measured in
    large units) gets a metric variance ~10x too large and a step size ~3x too small, and a
    near-singular direction of a dense Σ is inflated far more. Pooled estimates (C times the
    draws) keep each parameter's own variance; a dense Σ is shrunk by Stan's weight
    5 / (n + 5) towards the previous metric's correlations rescaled to the window's
    variances (the previous metric is the Pathfinder start or the last window; with none,
    or a diagonal one, that is Σ's own diagonal, Ledoit–Wolf style). Shrinking towards the
    diagonal alone ruined near-singular posteriors: a correlation of -0.99999 shrunk by
    1.2% inflates the thin direction's variance ~1,000-fold and cuts the step size ~30-fold
    (seen on an uncentred regression started from Pathfinder's exact covariance). Only a
    parameter that did not move at all gets Stan's 1e-3 floor. Per-chain estimates
    (``pool_mass_matrix=False``) keep Stan's rule exactly.
    """
    n, total, total_sq = window["n"], window["sum"], window["sumsq"]
    num_chains = total.shape[0]
    dim = total.shape[1]
    if not config.pool_mass_matrix:
        count = n
        mean = total / n
        var = (total_sq / n - mean ** 2).clamp_min(0) * n / max(n - 1, 1)
        inv_mass = (count / (count + 5.0)) * var + 1e-3 * (5.0 / (count + 5.0))
        return inv_mass.contiguous(), inv_mass.rsqrt().contiguous(), "diagonal"
    count = n * num_chains
    shrink = 5.0 / (count + 5.0)
    mean = total.sum(0) / count
    if _dense_layout(config, dim):
        # All draws about the common mean, the spread between chains included, for the
        # metric and for the dense-or-diagonal choice. (Within-chain deviations alone were
        # tried: early windows then only reflected how far each slow chain had moved, the
        # correlation of earnings-logearn_interaction went unseen until the last window
        # and the run failed. The price: on a label-switching mixture, chains in different
        # modes look correlated and "auto" picks dense; that run fails its R-hat check.)
        cov = (window["outer"] / count - torch.outer(mean, mean)) * count / max(count - 1, 1)
        cov = 0.5 * (cov + cov.T)
        var = _floor(cov.diagonal().clamp_min(0), shrink)
        dense = config.mass_matrix == "dense" or _choose_dense(cov, count)
        eye = torch.eye(dim, dtype=cov.dtype, device=cov.device)
        if dense:  # shrunk by 5 / (n + 5) towards the previous correlations; diagonal kept
            target = torch.diag(var)
            if previous is not None and previous.dim() == 2:
                scale = previous.diagonal().clamp_min(1e-300).rsqrt()
                correlation = previous * scale[:, None] * scale[None, :]
                sd = var.sqrt()
                target = correlation * sd[:, None] * sd[None, :]
            inv_mass = (1 - shrink) * cov + shrink * target
            inv_mass.diagonal().copy_(var)
        else:
            inv_mass = torch.diag(var)
        chol = torch.linalg.cholesky(inv_mass)
        factor = torch.linalg.solve_triangular(chol, eye, upper=False)  # L^-1
        return inv_mass, factor, "dense" if dense else "diagonal"
    var = (total_sq.sum(0) / count - mean ** 2).clamp_min(0) * count / max(count - 1, 1)
    inv_mass = _floor(var, shrink).expand(num_chains, -1)
    return inv_mass.contiguous(), inv_mass.rsqrt().contiguous(), "diagonal"


def _floor(var: Tensor, shrink: float) -> Tensor:
    """Each parameter's own variance; one that did not move at all gets Stan's
    1e-3 · 5 / (n + 5) instead of zero."""
    return torch.where(var > 0, var, torch.full_like(var, 1e-3 * shrink))


def step(state: ChEESState, config: ChEESConfig | None = None) -> tuple[ChEESState, StepInfo]:
    """One iteration of every chain (adapting while ``iteration < num_warmup``)."""
    config = config if config is not None else state.config
    if config is None:
        raise ValueError("chees.step needs the config: pass the state from chees.init")
    new, _ = _transition(state, config)
    moved = state
    if state.iteration < config.num_warmup:  # adapt from the pre-transition state
        moved = _adapt(state, new, config, warmup_windows(config.num_warmup))
        if state.iteration + 1 == config.num_warmup:  # freeze the averaged step sizes
            moved = moved._replace(step_size=moved.dual["log_avg"].exp())
    moved = moved._replace(q=new["q"], energy=new["energy"], grad=new["grad"],
                           iteration=state.iteration + 1)
    extras = {"diverging": new["diverging"], "accept_prob": new["accept_prob"],
              "step_size": state.step_size, "num_steps": new["num_steps"],
              "trajectory_length": new["proposal"]["length"].expand_as(state.step_size),
              "potential_energy": new["energy"], "energy": new["hamiltonian"]}
    return moved, StepInfo(float(new["energy"].mean()), extras)


#: What compiling a model's leapfrog costs, for the decision in :func:`maybe_compile`:
#: tracing + Inductor + the check (0.4-2.4 s measured per model, docs/benchmarks.md), plus
#: Inductor's start-up the first time in a process: ~6 s when its disk cache holds earlier
#: compiles, ~14 s more when it is empty (a new machine, environment or container: eight
#: schools' first compile took 15.8 s there against 6.2 s with a warm disk cache,
#: docs/benchmarks.md "The fair MCMC benchmark").
COMPILE_SECONDS = 2.0
COMPILE_STARTUP_SECONDS = 6.0
COLD_CACHE_STARTUP_SECONDS = 14.0
_compiled_in_process = False
#: Seconds this process has spent in eager ChEES runs that chose not to compile: counted
#: in the next decision (ski rental: keep renting until the rent paid would buy the
#: compile), so a process that runs many short fits (SBC, sweeps) compiles after a few.
_eager_seconds_in_process = 0.0


def _inductor_cache_is_empty() -> bool:
    """Whether Inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR`` or its default) holds
    nothing yet: the first compile then pays every kernel's C++ build."""
    # Inductor's own rule (torch/_inductor/runtime/cache_dir_utils.py), without importing
    # torch._inductor: that import, made mid-run, slowed the run's later eager steps.
    import getpass
    import os
    import re
    import tempfile

    directory = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if directory is None:
        try:
            user = getpass.getuser()
        except (KeyError, ModuleNotFoundError, OSError):
            user = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
        directory = os.path.join(tempfile.gettempdir(),
                                 "torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", user))
    path = Path(directory)
    try:
        return not path.is_dir() or not any(path.iterdir())
    except OSError:  # unreadable: assume the cheaper case
        return False


def compile_cost() -> float:
    """Expected seconds to compile a model's leapfrog now (see the constants above)."""
    if _compiled_in_process:
        return COMPILE_SECONDS
    return COMPILE_SECONDS + (COLD_CACHE_STARTUP_SECONDS if _inductor_cache_is_empty()
                              else COMPILE_STARTUP_SECONDS)


#: Tracing the leapfrog into an ATen graph (no Inductor) and checking it: 0.2-0.5 s. The
#: graph replays the same ATen ops as eager Pyro (bit-identical draws) without the
#: handlers' Python: ~1.5x faster per step (docs/benchmarks.md).
TRACE_SECONDS = 0.5


def maybe_compile(state: ChEESState, config: ChEESConfig, *, seconds_per_step: float,
                  remaining_steps: float, cost: float | None = None
                  ) -> tuple[ChEESState, str]:
    """Compile the leapfrog (``compile="auto"``) only when it is expected to save time: the
    eager cost of the remaining leapfrog steps (plus the eager seconds this process has
    already spent) against Inductor's compile cost. When Inductor does not pay but the run
    is long enough, the step is traced into an ATen graph instead (cheap, same draws).
    Returns the state and a sentence saying what was decided and why."""
    global _compiled_in_process
    reason = state.leapfrog.reason or ""
    if not reason.startswith(("not compiled", "eager: the remaining", "traced: ")):
        return state, ""  # compiled already, or compile= said what to do
    cost = compile_cost() if cost is None else cost
    eager = seconds_per_step * remaining_steps
    dense = _dense_layout(config, state.q.shape[1])
    args = _example_args(state.q, state.grad, state.energy, state.step_size,
                         state.inv_mass, dense, state.shard)
    name = f"the potential of {state.potential.problem.name!r}"
    if eager + _eager_seconds_in_process <= 2 * cost:
        spent = (f" (and this process ran {_eager_seconds_in_process:.0f} s without "
                 "Inductor before)" if _eager_seconds_in_process >= 0.5 else "")
        if state.leapfrog.backend == "fx":
            return state, ""  # traced already; Inductor still does not pay
        if eager > 4 * TRACE_SECONDS:
            traced = compile_function(_leapfrog(state.potential, dense), args,
                                      backend="fx", fallback=True, name=name)
            if traced.backend == "fx":
                reason = (f"traced: the remaining ~{remaining_steps:.0f} leapfrog steps "
                          f"cost ~{eager:.1f} s eagerly{spent}, Inductor ~{cost:.0f} s; "
                          "the traced ATen graph (same draws) costs "
                          f"{traced.compile_seconds:.1f} s")
                return state._replace(leapfrog=traced.__class__(
                    traced.fn, "fx", reason, traced.compile_seconds)), reason
        reason = (f"eager: the remaining ~{remaining_steps:.0f} leapfrog steps cost "
                  f"~{eager:.1f} s eagerly{spent}, compiling ~{cost:.0f} s")
        return state._replace(leapfrog=state.leapfrog.__class__(
            state.leapfrog.fn, "eager", reason, 0.0)), reason
    leapfrog = compile_function(_leapfrog(state.potential, dense), args, backend="auto",
                                name=name)
    if leapfrog.backend == "inductor":
        _compiled_in_process = True
    return state._replace(leapfrog=leapfrog), (
        f"compiled: the remaining ~{remaining_steps:.0f} leapfrog steps would cost "
        f"~{eager:.1f} s eagerly, compiling ~{cost:.0f} s")


def _expected_steps(state: ChEESState, config: ChEESConfig, so_far: float,
                    iterations: int) -> float:
    """Leapfrog steps still to come: the larger of the mean so far and what the current T
    and step sizes give (a jittered trajectory runs T / (2 eps) steps on average)."""
    length = float(state.log_trajectory.exp())
    per_now = min(config.max_leapfrog_steps,
                  max(1.0, length / (2 * float(state.step_size.median()))))
    per_iteration = max(so_far / max(iterations, 1), per_now)
    remaining = config.num_warmup + config.num_samples - state.iteration
    return remaining * per_iteration


def _run_step(state: ChEESState) -> tuple[ChEESState, StepInfo]:
    """:func:`step`, counting gradient evaluations, and with ``compile="auto"`` the
    decision to compile: time the eager step for a few iterations, then compile only if
    the rest of the run is expected to cost more than compiling (a cold process pays
    Inductor's start-up: a short run is faster eager); asked again after warmup, when T
    and the step sizes are known."""
    config = state.config
    state, info = step(state, config)
    done = state.gradient_evaluations + float(info.extras["num_steps"].max())
    state = state._replace(gradient_evaluations=done)
    total = config.num_warmup + config.num_samples
    if state.iteration in {min(10, total), config.num_warmup}:
        per_step = (time.perf_counter() - state.timer) / max(done, 1.0)
        cost = None
        if state.shard is not None and normalize_backend(config.compile) == "auto":
            # One decision on every rank: the slowest's figures. (Only where there is a
            # decision to make, which the config says alike on every rank: asking Inductor
            # for its cost mid-run, as this did for every run, made the rest of an eager
            # compile=False run ~25 % slower per step: 6.8 -> 9.0 ms per iteration.)
            per_step, cost = state.shard.largest(per_step, compile_cost())
        state, said = maybe_compile(
            state, config, seconds_per_step=per_step, cost=cost,
            remaining_steps=_expected_steps(state, config, done, state.iteration))
        if said:
            state = state._replace(compile_decision=said)
    return state, info


def _record(records: dict[str, Any], state: ChEESState, info: StepInfo, index: int) -> None:
    if state.iteration > state.config.num_warmup:
        records["kept"].append(state.q)
        records["stats"].append(info.extras)


def _finish(problem: Problem, config: ChEESConfig, seed: int, state: ChEESState,
            records: dict[str, Any], base_info: dict[str, Any]) -> FitResult:
    global _eager_seconds_in_process
    kept, stats = records["kept"], records["stats"]
    if state.leapfrog.backend in ("eager", "fx") and (state.leapfrog.reason or "").startswith(
            ("eager: the remaining", "traced: ")):
        _eager_seconds_in_process += time.perf_counter() - state.timer
    draws = torch.stack(kept, 1)  # (C, S, D)
    num_chains, num_draws = draws.shape[:2]
    constrained = state.potential.constrain(draws.reshape(num_chains * num_draws, -1))
    samples = {k: v.reshape(num_chains, num_draws, *v.shape[1:])
               for k, v in constrained.items()}
    samples.update(_deterministic(problem, samples, seed))
    sample_stats = {k: torch.stack([s[k] for s in stats], 1).cpu().numpy()
                    for k in stats[0]}
    sample_stats["diverging"] = sample_stats["diverging"].astype(bool)
    info = {**base_info,
            "num_divergences": int(sample_stats["diverging"].sum()),
            "divergences_per_chain": sample_stats["diverging"].sum(1).tolist(),
            "step_size_per_chain": state.step_size.cpu().tolist(),
            "trajectory_length": float(state.log_trajectory.exp()),
            "mass_matrix": state.metric,
            "init": state.init_info or {"init": "uniform"},
            "compiled": state.leapfrog.backend,
            "compile_reason": state.leapfrog.reason,
            "compile_seconds": state.leapfrog.compile_seconds,
            "compile_decision": state.compile_decision or None,
            "mean_accept_prob": float(sample_stats["accept_prob"].mean()),
            # leapfrog steps of the whole run (the batch runs as long as its longest chain),
            # warmup included: a hard warmup can cost far more than the draws
            "gradient_evaluations": int(state.gradient_evaluations),
            "sampling_gradient_evaluations": int(sample_stats["num_steps"].max(0).sum())}
    history = {"loss": sample_stats["potential_energy"].mean(0)}
    return FitResult("chees", problem, config, seed, history, samples=samples,
                     sample_stats=sample_stats, info=info)


_TENSOR_FIELDS = ("q", "energy", "grad", "step_size", "inv_mass", "momentum_factor",
                  "log_trajectory")


def state_dict(state: ChEESState) -> dict[str, Any]:
    """Every adapted quantity, the generator and how the leapfrog was compiled."""
    return {**{name: getattr(state, name).detach().clone() for name in _TENSOR_FIELDS},
            "dual": dict(state.dual), "adam": dict(state.adam), "window": dict(state.window),
            "iteration": state.iteration, "generator": state.generator.get_state(),
            "metric": state.metric, "gradient_evaluations": state.gradient_evaluations,
            "compile_decision": state.compile_decision,
            "compiled": state.leapfrog.backend, "compile_reason": state.leapfrog.reason}


def load_state_dict(state: ChEESState, saved: dict[str, Any]) -> ChEESState:
    """A fresh ``init`` state with a checkpoint's values. A leapfrog the interrupted run
    had compiled is compiled again at once (so the numbers match an uninterrupted run)."""
    device = state.q.device
    values = {name: saved[name].to(device) for name in _TENSOR_FIELDS}

    def to_device(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in d.items()}

    state.generator.set_state(saved["generator"])
    state = state._replace(**values, dual=to_device(saved["dual"]),
                           adam=to_device(saved["adam"]), window=to_device(saved["window"]),
                           iteration=saved["iteration"], metric=saved["metric"],
                           gradient_evaluations=saved["gradient_evaluations"],
                           compile_decision=saved["compile_decision"],
                           timer=time.perf_counter())
    # The layout, not the tensor's rank: a diagonal metric is per chain, (C, D), 2-D too
    # (testing ``dim() == 2`` resumed a diagonal run with the dense leapfrog).
    dense = _dense_layout(state.config or ChEESConfig(), state.q.shape[1])
    if saved["compiled"] != "eager":
        leapfrog = compile_function(
            _leapfrog(state.potential, dense),
            _example_args(state.q, state.grad, state.energy, state.step_size,
                          state.inv_mass, dense, state.shard),
            backend=saved["compiled"], name=f"the potential of {state.potential.problem.name!r}")
        state = state._replace(leapfrog=leapfrog)
    else:
        state = state._replace(leapfrog=CompiledFunction(
            _leapfrog(state.potential, dense), "eager", saved["compile_reason"], 0.0))
    return state


def _context(config: ChEESConfig) -> Any:
    stack = contextlib.ExitStack()
    stack.enter_context(pyro.validation_enabled(False))
    stack.enter_context(torch.no_grad())
    return stack


def run(problem: Problem, config: ChEESConfig | None = None, seed: int = 0,
        **loop: Any) -> FitResult:
    """Warm up, then draw ``num_samples`` per chain; draws shaped (chain, draw, ...)."""
    return ENGINE.run(problem, config or ChEESConfig(), seed, **loop)


ENGINE = Engine(
    name="chees", config_class=ChEESConfig, kind="sampler",
    description="ChEES-HMC: many chains in lockstep on one batched potential (vectorised "
                "over a chain plate)",
    init=functools.partial(init, defer_compile=True), step=_run_step,
    total_steps=lambda config: config.num_warmup + config.num_samples,
    new_records=lambda config: {"kept": [], "stats": []}, record=_record, finish=_finish,
    state_dict=state_dict, load_state_dict=load_state_dict, context=_context,
    label=lambda config: f"ChEES x{config.num_chains}",
    postfix=lambda info: {"energy": info.loss}, lockstep=True)

