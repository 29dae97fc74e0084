"""Multi-path Pathfinder (Zhang, Carpenter, Gelman & Vehtari 2022): a fast variational
answer from the L-BFGS path to the mode, importance-resampled.

Per path, from a random start in unconstrained space:

1. L-BFGS on U(q) = -log p(x, T(q)) - log|det J_T(q)| (the same potential HMC uses,
   :class:`~ppl_gen.inference.batched.BatchedPotential`), keeping every iterate q_l and
   gradient g_l;
2. at every iterate, a Gaussian N(mu_l, Sigma_l): Sigma_l the BFGS inverse-Hessian estimate
   from the last ``history_size`` curvature pairs (s, y) (those with s.y > eps |y|^2,
   started from the usual L-BFGS scaling (s.y / y.y) I), mu_l = q_l - Sigma_l g_l;
3. the ELBO of each by Monte Carlo (``num_elbo_draws``, one batched pass for all
   iterates, the same standard normals for every iterate so that the comparison is not
   Monte Carlo noise: on a correlated Gaussian this raised the pooled PSIS ESS from 53%
   to 80% of the draws), and ``draws_per_path`` draws from the best one with their
   log-weights log p - log q.

All paths' draws are pooled and resampled by Pareto-smoothed importance weights (Stan's
multi-path default), whose k-hat says how far the result can be trusted. Each pooled draw
is weighed against the equal mixture of the paths' Gaussians (the balance heuristic), not
only against its own path's as Stan does: a path whose Gaussian is too narrow then no longer
dominates the weights. The k-hat reported is these weights' (Stan's own-path k-hat is kept
in ``info["psis"]["khat_own_path"]``: it over-warned where the pooled estimates were
fine); below 0.7 but with fewer than 2,000 effective draws, every path draws more first
(``_extend``), so the k-hat and the resampled draws rest on enough draws. Sigma_l is
stored in the paper's diagonal-plus-low-rank form (Algorithm 4; :class:`LowRankGaussian`):
draws and densities cost O(D m) per point, so a path at a thousand dimensions costs what
the model's gradients cost, not D^3 per iterate.

Differences from Stan's implementation: the initial inverse Hessian is the scalar L-BFGS
scaling rather than the paper's diagonal update, and the line search is a weak-Wolfe
backtracking/expansion search. Both change where a path goes, not what the importance
weights correct.

References:
    Zhang, Carpenter, Gelman & Vehtari (2022), "Pathfinder: parallel quasi-Newton
    variational inference", JMLR 23(306).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pyro
import torch
from torch import Tensor

from ..config import PathfinderConfig
from .base import FitResult, Problem, StepInfo
from .batched import BatchedPotential
from .loop import Engine

__all__ = ["PathfinderState", "init", "step", "run", "lbfgs_path", "ENGINE"]

#: Draws evaluated per batched potential call.
CHUNK = 2048
#: Iterates of one path whose Gaussians are candidates (evenly spaced on longer paths).
MAX_APPROXIMATIONS = 200
#: Pooled draws the PSIS step may grow to (see ``_extend``), the effective draws it aims
#: at, its time budget and Yao et al.'s k-hat limit: the values ``diagnostics.vi`` uses for
#: an SVI guide's report (the engines do not import diagnostics; a test keeps them equal).
MAX_POOLED_DRAWS = 160_000
AIM_PSIS_ESS = 2000
EXTEND_SECONDS = 3.0
KHAT_LIMIT = 0.7
#: Unconstrained dimensions beyond which Pathfinder is refused: the draws (4 x 2,500 by
#: default) and the ELBO draws of up to 200 iterates per path are held as (n, D) tensors,
#: ~2.5 GB at this size; Sigma_l itself costs O(D m) (low-rank form).
MAX_DIM = 100_000


class PathResult(NamedTuple):
    """One path's outcome: its draws (unconstrained) with log p and log q, the best
    iterate's ELBO, the number of L-BFGS iterations and gradient evaluations, and why it
    stopped."""

    draws: Tensor
    log_p: Tensor
    log_q: Tensor
    elbo: float
    best_iteration: int
    iterations: int
    evaluations: int
    stopped: str
    gaussian: LowRankGaussian | None = None


class PathfinderState(NamedTuple):
    problem: Problem
    potential: BatchedPotential
    generator: torch.Generator
    paths: tuple[PathResult, ...]
    config: PathfinderConfig


def _value_and_grad(potential: BatchedPotential, q: Tensor) -> tuple[float, Tensor]:
    """U and its gradient at one point; a point where the model fails (a NaN parameter
    some distribution refuses) counts as U = inf, which the line search backs off from."""
    try:
        u, g = potential.value_and_grad(q[None])
    except (ValueError, RuntimeError):
        return math.inf, torch.full_like(q, math.nan)
    return float(u[0]), g[0]


def lbfgs_path(potential: BatchedPotential, q0: Tensor, *, history_size: int,
               max_iterations: int, tolerance: float
               ) -> tuple[list[Tensor], list[Tensor], list[tuple[Tensor, Tensor]], int, str]:
    """L-BFGS on the potential from ``q0``: iterates, gradients, the accepted curvature
    pairs after each iterate (index l: the pairs available at iterate l), the number of
    gradient evaluations, and why it stopped."""
    q = q0.clone()
    u, g = _value_and_grad(potential, q)
    evaluations = 1
    if not math.isfinite(u) or not bool(torch.isfinite(g).all()):
        return [q], [g], [], evaluations, "non-finite log density at the start"
    xs, gs, pairs = [q], [g], []
    pairs_at: list[list[tuple[Tensor, Tensor]]] = [[]]
    stopped = f"max_iterations ({max_iterations})"
    eps = torch.finfo(q.dtype).eps
    for _ in range(max_iterations):
        # two-loop recursion: d = -H g
        r = g.clone()
        alphas = []
        for s, y in reversed(pairs):
            rho = 1.0 / float(y @ s)
            a = rho * float(s @ r)
            r = r - a * y
            alphas.append((a, rho, s, y))
        if pairs:
            s, y = pairs[-1]
            r = r * (float(s @ y) / float(y @ y))
        else:
            r = r / max(float(g.norm()), 1.0)
        for a, rho, s, y in reversed(alphas):
            b = rho * float(y @ r)
            r = r + (a - b) * s
        d = -r
        slope = float(d @ g)
        if not slope < 0:
            d, slope = -g, -float(g @ g)
        # weak-Wolfe line search: backtrack on Armijo, expand on the curvature condition
        t, accepted, expanded = 1.0, None, 0
        for _ in range(40):
            q_new = q + t * d
            u_new, g_new = _value_and_grad(potential, q_new)
            evaluations += 1
            if not math.isfinite(u_new) or u_new > u + 1e-4 * t * slope:
                t *= 0.5
                continue
            accepted = (q_new, u_new, g_new)
            if float(g_new @ d) < 0.9 * slope and expanded < 10:
                expanded += 1
                t *= 2.0
                continue
            break
        if accepted is None:
            stopped = "the line search found no decrease"
            break
        q_new, u_new, g_new = accepted
        s, y = q_new - q, g_new - g
        change = abs(u - u_new) / max(abs(u_new), 1.0)
        q, u, g = q_new, u_new, g_new
        if float(s @ y) > eps * float(y @ y):
            pairs.append((s, y))
            pairs = pairs[-history_size:]
        xs.append(q)
        gs.append(g)
        pairs_at.append(list(pairs))
        if change < tolerance:
            stopped = "relative change below tolerance"
            break
        if float(g.norm()) < tolerance:
            stopped = "gradient norm below tolerance"
            break
    return xs, gs, pairs_at, evaluations, stopped


class LowRankGaussian(NamedTuple):
    """N(mean, Sigma) with Sigma = diag(scale)^2 + a rank-r term, stored as the paper's
    factors (Zhang et al. 2022, Algorithm 4): Sigma = diag(scale) (I + Q (L L^T - I) Q^T)
    diag(scale), Q (D, r) orthonormal, L (r, r) lower triangular. Draws, log densities and
    Sigma g cost O(D r) per point instead of O(D^2); :meth:`covariance` builds the dense
    (D, D) matrix only where a caller needs it."""

    mean: Tensor
    scale: Tensor
    basis: Tensor
    factor: Tensor

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def sample(self, z: Tensor) -> Tensor:
        """mean + A z for standard normals z (n, D), A A^T = Sigma."""
        zq = z @ self.basis
        return self.mean + self.scale * (z + (zq @ self.factor.T - zq) @ self.basis.T)

    def log_prob(self, x: Tensor) -> Tensor:
        v = (x - self.mean) / self.scale
        vq = v @ self.basis
        w = torch.linalg.solve_triangular(self.factor, vq.T, upper=False).T
        quad = (v * v).sum(-1) - (vq * vq).sum(-1) + (w * w).sum(-1)
        half_log_det = (torch.log(self.scale).sum()
                        + torch.log(torch.diagonal(self.factor)).sum())
        return -0.5 * quad - half_log_det - 0.5 * self.dim * math.log(2 * math.pi)

    def covariance(self) -> Tensor:
        inner = self.factor @ self.factor.T - torch.eye(
            self.factor.shape[0], dtype=self.mean.dtype, device=self.mean.device)
        dense = self.basis @ inner @ self.basis.T
        dense = dense + torch.eye(self.dim, dtype=self.mean.dtype, device=self.mean.device)
        return self.scale[:, None] * dense * self.scale[None, :]


def _gaussian(q: Tensor, g: Tensor, pairs: list[tuple[Tensor, Tensor]]
              ) -> LowRankGaussian | None:
    """The Gaussian at an iterate: Sigma the L-BFGS inverse-Hessian estimate from the
    curvature pairs (oldest first), started from theta I with theta = s.y / y.y of the
    newest pair as the L-BFGS step uses, mean q - Sigma g; ``None`` when Sigma is not
    positive definite or the mean not finite. Sigma in Byrd, Nocedal & Schnabel's (1994)
    compact form, theta I + B M B^T with B = [S, theta Y] (D, 2m), and
    M = [[R^-T (E + theta Y^T Y) R^-1, -R^-T], [-R^-1, 0]], R the upper triangle of S^T Y
    and E its diagonal: the same matrix as m BFGS updates of theta I, in O(D m^2)."""
    dim, like = q.shape[0], q
    if not pairs:
        theta = torch.ones((), dtype=like.dtype, device=like.device)
        basis = like.new_zeros(dim, 0)
        return LowRankGaussian(q - g, theta.expand(dim).clone(), basis, like.new_zeros(0, 0))
    s_mat = torch.stack([s for s, _ in pairs], 1)  # (D, m)
    y_mat = torch.stack([y for _, y in pairs], 1)
    s_new, y_new = pairs[-1]
    theta = float(s_new @ y_new) / float(y_new @ y_new)
    sy = s_mat.T @ y_mat
    r = torch.triu(sy)
    e = torch.diag(torch.diagonal(sy))
    m = r.shape[0]
    eye = torch.eye(m, dtype=like.dtype, device=like.device)
    r_inv = torch.linalg.solve_triangular(r, eye, upper=True)
    top_left = r_inv.T @ (e + theta * (y_mat.T @ y_mat)) @ r_inv
    middle = torch.cat([torch.cat([top_left, -r_inv.T], 1),
                        torch.cat([-r_inv, torch.zeros_like(r_inv)], 1)], 0)
    b = torch.cat([s_mat, theta * y_mat], 1)  # (D, 2m)
    sigma_g = theta * g + b @ (middle @ (b.T @ g))
    mean = q - sigma_g
    scale = torch.full_like(q, math.sqrt(theta))
    basis, tri = torch.linalg.qr(b / scale[:, None])
    # Sigma = theta (I + Q T M T^T Q^T) with B / sqrt(theta) = Q T, so L L^T = I + T M T^T
    inner = tri @ middle @ tri.T
    inner = torch.eye(inner.shape[0], dtype=like.dtype, device=like.device) + inner
    try:
        factor = torch.linalg.cholesky(0.5 * (inner + inner.T))
    except RuntimeError:
        return None
    if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(factor).all())):
        return None
    return LowRankGaussian(mean, scale, basis, factor)


@torch.no_grad()
def _log_p(potential: BatchedPotential, draws: Tensor) -> Tensor:
    out = []
    for start in range(0, draws.shape[0], CHUNK):
        out.append(-potential(draws[start:start + CHUNK]))
    values = torch.cat(out)
    return torch.where(torch.isfinite(values), values, torch.full_like(values, -math.inf))


def _run_path(potential: BatchedPotential, generator: torch.Generator,
              config: PathfinderConfig) -> PathResult:
    q0 = potential.initial(1, generator, radius=config.init_radius)[0]
    xs, gs, pairs_at, evaluations, stopped = lbfgs_path(
        potential, q0, history_size=config.history_size,
        max_iterations=config.max_iterations, tolerance=config.tolerance)
    dim = q0.shape[0]
    k = config.num_elbo_draws
    approximations, noise = [], []
    # iterate 0 has no curvature information; on long paths at most MAX_APPROXIMATIONS
    # iterates, evenly spaced and the last included, are candidates
    candidates = range(1, len(xs))
    if len(candidates) > MAX_APPROXIMATIONS:
        picks = np.linspace(1, len(xs) - 1, MAX_APPROXIMATIONS).round().astype(int)
        candidates = sorted(set(picks.tolist()))
    for index in candidates:
        gaussian = _gaussian(xs[index], gs[index], pairs_at[index])
        if gaussian is not None:
            approximations.append((index, gaussian))
    if not approximations:  # a path that never moved: the start itself, unit scale
        approximations = [(0, _gaussian(xs[-1], gs[-1], []))]
    # One batched pass of the potential for every iterate's ELBO draws, all from the same
    # standard normals (common random numbers): the ELBOs are then compared on equal
    # terms and the choice is the approximations' difference, not Monte Carlo noise.
    z = torch.randn(k, dim, generator=generator, dtype=q0.dtype, device=q0.device)
    for _, gaussian in approximations:
        noise.append(gaussian.sample(z))
    stacked = torch.cat(noise)
    log_p = _log_p(potential, stacked).reshape(len(approximations), k)
    elbos = []
    for j, (_, gaussian) in enumerate(approximations):
        weights = log_p[j] - gaussian.log_prob(noise[j])
        elbos.append(float(weights.mean()) if bool(torch.isfinite(weights).all())
                     else -math.inf)
    best = int(np.argmax(elbos))
    index, gaussian = approximations[best]
    m = config.draws_per_path
    z = torch.randn(m, dim, generator=generator, dtype=q0.dtype, device=q0.device)
    draws = gaussian.sample(z)
    return PathResult(draws, _log_p(potential, draws), gaussian.log_prob(draws),
                      elbos[best], index, len(xs) - 1, evaluations + len(stacked) + m,
                      stopped, gaussian)


def mixture_log_q(paths: list[PathResult], draws: Tensor) -> Tensor:
    """log of the equal-weight mixture of the paths' Gaussians at ``draws`` (Veach's
    balance heuristic for pooled importance sampling: a draw is weighed against every
    path's proposal, not only its own, so one path's too-narrow Gaussian no longer gives
    its draws huge weights)."""
    parts = torch.stack([p.gaussian.log_prob(draws) for p in paths])
    return torch.logsumexp(parts, 0) - math.log(len(paths))


def _mixture_weights(paths: list[PathResult], draws: Tensor, log_p: Tensor
                     ) -> tuple[np.ndarray, float, float]:
    """Pareto-smoothed log-weights of the pooled draws against the paths' mixture, their
    k-hat and the PSIS effective sample size."""
    from ..diagnostics.convert import psis_smooth  # ArviZ's PSIS, at call time

    log_w = (log_p - mixture_log_q(paths, draws)).cpu().double().numpy()
    smoothed, khat = psis_smooth(log_w)
    weights = np.exp(smoothed - smoothed.max())
    weights /= weights.sum()
    return smoothed, float(khat), float(1.0 / np.sum(weights ** 2))


def _extend(potential: BatchedPotential, generator: torch.Generator,
            paths: list[PathResult]
            ) -> tuple[list[PathResult], np.ndarray, float, float]:
    """The paths with more draws from their chosen Gaussians (the same number each, so the
    pool stays an equal mixture) while k-hat is at most 0.7 but there are fewer than
    ``AIM_PSIS_ESS`` effective draws: up to ``MAX_POOLED_DRAWS`` in all, within
    ``EXTEND_SECONDS``. The draws resampled and the k-hat reported then rest on at least
    ~2,000 effective draws where that is affordable. Measured on posteriordb-dev
    (mesquite, seed 2): 10,000 pooled draws gave k-hat 0.49 with 1,444 effective draws and
    means 0.145 sd off; 40,000 gave 0.60, 4,070 and 0.086; on a funnel every path missed,
    10,000 draws read 0.66 and 40,000 read 0.78. Returns the paths and the final pool's
    smoothed log-weights, k-hat and PSIS ESS (``_mixture_weights``), computed once."""
    started, first = time.perf_counter(), None
    while True:
        draws = torch.cat([p.draws for p in paths])
        weighed = _mixture_weights(paths, draws, torch.cat([p.log_p for p in paths]))
        _, khat, ess = weighed
        total = draws.shape[0]
        if not (np.isfinite(khat) and khat <= KHAT_LIMIT and ess < AIM_PSIS_ESS):
            return (paths, *weighed)
        want = min(MAX_POOLED_DRAWS, max(2 * total, int(math.ceil(total * AIM_PSIS_ESS
                                                                   / max(ess, 1.0)))))
        if first is None:  # the first extension at most doubles what the paths cost
            first = total
        else:  # after it, the measured cost per draw bounds the next within the budget
            spent = time.perf_counter() - started
            if spent >= EXTEND_SECONDS:
                return (paths, *weighed)
            rate = spent / max(total - first, 1)
            want = min(want, total + int((EXTEND_SECONDS - spent) / max(rate, 1e-9)))
        per_path = int(math.ceil((want - total) / len(paths)))
        if per_path < 1:
            return (paths, *weighed)
        grown = []
        for p in paths:
            mean = p.gaussian.mean
            z = torch.randn(per_path, mean.shape[0], generator=generator, dtype=mean.dtype,
                            device=mean.device)
            new = p.gaussian.sample(z)
            grown.append(p._replace(
                draws=torch.cat([p.draws, new]),
                log_p=torch.cat([p.log_p, _log_p(potential, new)]),
                log_q=torch.cat([p.log_q, p.gaussian.log_prob(new)]),
                evaluations=p.evaluations + per_path))
        paths = grown


def _start_config(num: int) -> PathfinderConfig:
    # 100 L-BFGS iterations at most and 10 ELBO draws per iterate: a start needs to be in
    # the typical set, not converged (posteriordb's paths took 24-103 iterations), and a
    # funnel's unbounded density would otherwise take all 1,000 per path.
    return PathfinderConfig(num_paths=4, draws_per_path=max(100, num), max_iterations=100,
                            num_elbo_draws=10)


def _start_paths(potential: BatchedPotential, generator: torch.Generator,
                 config: PathfinderConfig) -> tuple[list[Any], Tensor, dict[str, Any]]:
    paths = [p for p in (_run_path(potential, generator, config)
                         for _ in range(config.num_paths)) if math.isfinite(p.elbo)]
    if not paths:
        raise FloatingPointError("every Pathfinder path failed")
    pooled = torch.cat([p.draws for p in paths])
    finite = torch.isfinite(torch.cat([p.log_p for p in paths]))
    info = {"paths": len(paths), "failed_paths": config.num_paths - len(paths),
            "gradient_evaluations": int(sum(p.evaluations for p in paths)),
            "elbo": [p.elbo for p in paths]}
    return paths, pooled[finite], info


def _covariance(pooled: Tensor, dense: bool) -> Tensor:
    centred = pooled - pooled.mean(0)
    if not dense:
        return (centred * centred).sum(0) / max(pooled.shape[0] - 1, 1)
    return centred.T @ centred / max(pooled.shape[0] - 1, 1)


def initial_points(potential: BatchedPotential, num: int, generator: torch.Generator,
                   config: PathfinderConfig | None = None, dense: bool = True
                   ) -> tuple[Tensor, Tensor, dict]:
    """Starting points and an inverse metric for MCMC from Pathfinder (Zhang et al.
    2022, Section 5: Pathfinder's draws as initial values cut warmup): ``num`` points
    spread over the paths' draws (unconstrained, (num, D)), the pooled draws' covariance
    ((D, D); with ``dense=False`` only its diagonal, (D,), never forming the matrix), and a
    summary of the paths. Paths that failed are skipped; if all fail the
    caller should fall back to its own starts."""
    config = config or _start_config(num)
    paths, pooled, info = _start_paths(potential, generator, config)
    # chain c starts from path c mod P, at a different draw of it
    per_path = [p.draws[torch.isfinite(p.log_p)] for p in paths]
    points = torch.stack([per_path[c % len(paths)][(c // len(paths))
                                                   % per_path[c % len(paths)].shape[0]]
                          for c in range(num)])
    return points, _covariance(pooled, dense), info


def gaussian_start(potential: BatchedPotential, generator: torch.Generator
                   ) -> tuple[Tensor, Tensor, dict]:
    """The Gaussian (mean (D,), covariance (D, D), unconstrained space) of the best of a
    short multi-path Pathfinder run — the path with the highest ELBO, as single-path
    Pathfinder returns — and a summary of the paths: where an ADVI guide starts
    (``SVIConfig.init="pathfinder"``). One path's Gaussian, not the pooled draws: on a
    multimodal posterior the pool's mean sits between the modes, and parallel
    optimisations from different seeds (``num_runs``) would all start there."""
    paths, _, info = _start_paths(potential, generator, _start_config(100))
    best = max(paths, key=lambda p: p.elbo)
    if best.gaussian is None:
        raise FloatingPointError("Pathfinder's best path has no Gaussian")
    info["best_path_elbo"] = best.elbo
    return best.gaussian.mean, best.gaussian.covariance(), info


def init(problem: Problem, config: PathfinderConfig | None = None, seed: int = 0
         ) -> PathfinderState:
    """The potential (checked to vectorise over draws) and the paths' generator."""
    config = config or PathfinderConfig()
    potential = BatchedPotential(problem)
    if potential.dim > MAX_DIM:
        raise ValueError(f"model {problem.name!r} has {potential.dim} unconstrained "
                         f"dimensions; Pathfinder holds its draws as (draws, dimensions) "
                         f"tensors and refuses more than {MAX_DIM}: use engine='svi' or "
                         "'chees'")
    generator = torch.Generator(device=problem.device).manual_seed(seed)
    potential.check_vectorized(potential.initial(3, generator, radius=config.init_radius))
    generator.manual_seed(seed)
    return PathfinderState(problem, potential, generator, (), config)


def step(state: PathfinderState) -> tuple[PathfinderState, StepInfo]:
    """One whole path (L-BFGS, approximations, ELBOs, draws)."""
    path = _run_path(state.potential, state.generator, state.config)
    return state._replace(paths=state.paths + (path,)), StepInfo(
        -path.elbo, {"elbo": path.elbo, "iterations": float(path.iterations)})


def _record(records: dict[str, Any], state: PathfinderState, info: StepInfo,
            index: int) -> None:
    records["elbo"].append(info.extras["elbo"])


def _finish(problem: Problem, config: PathfinderConfig, seed: int, state: PathfinderState,
            records: dict[str, Any], base_info: dict[str, Any]) -> FitResult:
    from ..diagnostics.convert import psis_smooth  # ArviZ's PSIS, at call time

    start = time.perf_counter()
    paths = [p for p in state.paths if math.isfinite(p.elbo)]
    if not paths:
        reasons = "; ".join(p.stopped for p in state.paths)
        raise FloatingPointError(f"every Pathfinder path of model {problem.name!r} failed "
                                 f"({reasons}); check the model's log density, or use "
                                 "engine='chees'")
    paths, smoothed, khat, ess = _extend(state.potential, state.generator, paths)
    draws = torch.cat([p.draws for p in paths])
    # Stan's own-path weights (each draw against its own path's Gaussian), kept for
    # reference only: on posteriordb-dev they read above 0.7 where the mixture-weighted
    # estimates were within 0.02 sd (kidiq_with_mom_work, bball), so they over-warned.
    own = torch.cat([p.log_p - p.log_q for p in paths]).cpu().double().numpy()
    khat_own = psis_smooth(own)[1]
    weights = np.exp(smoothed - smoothed.max())
    weights /= weights.sum()
    if config.psis_resample:
        rng = np.random.default_rng(seed)
        index = rng.choice(len(weights), size=config.num_draws, p=weights)
    else:
        index = np.arange(len(weights))
    chosen = draws[torch.as_tensor(index, device=draws.device)]
    samples = {k: v[None] for k, v in state.potential.constrain(chosen).items()}
    elbo = np.asarray(records["elbo"], dtype=float)
    info = {**base_info, "kind": "approximation", "num_paths": config.num_paths,
            "paths": [{"elbo": p.elbo, "iterations": p.iterations,
                       "best_iteration": p.best_iteration,
                       "gradient_evaluations": p.evaluations, "stopped": p.stopped}
                      for p in state.paths],
            "failed_paths": len(state.paths) - len(paths),
            "gradient_evaluations": int(sum(p.evaluations for p in state.paths)),
            "psis": {"khat": khat, "khat_own_path": khat_own,
                     "num_draws": int(len(smoothed)),
                     "draws_added": int(len(smoothed) - len(paths) * config.draws_per_path),
                     "ess": ess,
                     "resampled": bool(config.psis_resample),
                     "seconds": time.perf_counter() - start}}
    return FitResult("pathfinder", problem, config, seed, {"elbo": elbo, "loss": -elbo},
                     samples=samples, sample_stats={}, info=info)


@contextlib.contextmanager
def _context() -> Iterator[None]:
    """No autograd graph outside the gradient calls, and Pyro's argument validation off:
    a line-search trial point may give NaN parameters, which then count as -inf log
    density instead of raising."""
    with torch.no_grad(), pyro.validation_enabled(False):
        yield


def run(problem: Problem, config: PathfinderConfig | None = None, seed: int = 0,
        **loop: Any) -> FitResult:
    return ENGINE.run(problem, config or PathfinderConfig(), seed, **loop)


ENGINE = Engine(
    name="pathfinder", config_class=PathfinderConfig, kind="approximation",
    description="multi-path Pathfinder (L-BFGS path, best Gaussian, PSIS resampling)",
    init=init, step=step, total_steps=lambda config: config.num_paths,
    new_records=lambda config: {"elbo": []}, record=_record, finish=_finish,
    context=lambda config: _context(),
    label=lambda config: "Pathfinder", postfix=lambda info: {"elbo": -info.loss},
    cannot_resume="a path takes seconds: rerun it instead")
