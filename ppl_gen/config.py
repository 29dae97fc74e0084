"""Frozen, validated configuration objects, one per engine.

Each config checks its own fields in ``__post_init__`` so that an impossible setting fails
before any work starts, with a message that names the field and the fix.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["SVIConfig", "EMConfig", "MCMCConfig", "AdversarialConfig", "ChEESConfig",
           "PathfinderConfig",
           "CONFIGS",
           "config_from_dict", "config_to_dict"]

SVI_LOSSES = ("auto", "trace", "meanfield", "enum", "renyi", "iwae", "ddpm_simple", "ddpm_rb")
GUIDES = ("auto", "normal", "mvn", "lowrank", "delta", "model")
OPTIMIZERS = ("adam", "clipped_adam")
MCMC_KERNELS = ("nuts", "hmc")


_KIND_WORDS = (("bool", "true/false"), ("int", "an integer"), ("float", "a number"),
               ("str", "a string"), ("tuple", "a pair of numbers"))


def _check_types(config: Any) -> None:
    """Every field has a type its annotation allows (a bool where a bool is meant, never
    NaN or a string there): the field-specific checks then only check ranges."""
    for f in dataclasses.fields(config):
        value, annotation = getattr(config, f.name), str(f.type)
        if value is None and "None" in annotation:
            continue
        is_bool = isinstance(value, bool)
        ok = (("bool" in annotation and is_bool)
              or ("int" in annotation and isinstance(value, int) and not is_bool)
              or ("float" in annotation and isinstance(value, (int, float)) and not is_bool)
              or ("str" in annotation and isinstance(value, str))
              or ("tuple" in annotation and isinstance(value, (tuple, list))))
        if not ok:
            kinds = [word for key, word in _KIND_WORDS if key in annotation]
            if "None" in annotation:
                kinds.append("None")
            raise ValueError(f"{f.name} must be {' or '.join(kinds)}, got {value!r}")


def _positive_int(name: str, value: Any, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _positive_float(name: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid values are: {', '.join(choices)}")


@dataclass(frozen=True)
class SVIConfig:
    """Stochastic variational inference (``pyro.infer.SVI``).

    Attributes:
        num_steps: Optimiser steps.
        learning_rate: Adam step size.
        final_learning_rate: The step size the run ends at (default ``learning_rate /
            10``). Decay removes the optimiser's jitter around the optimum, which matters
            when the fitted guide is judged by importance weights (PSIS k-hat) and for
            the convergence check.
        decay_start: Fraction of the run after which the step size decays geometrically
            to ``final_learning_rate``. Default: 0.5 (constant for the first half, then
            down to a tenth), or 0 — the whole run, ClippedAdam's ``lrd`` — when
            ``final_learning_rate`` is given; 1 keeps the step size constant.
        optimizer: ``"adam"`` or ``"clipped_adam"`` (gradient norm clipped at ``clip_norm``).
        loss: ``"auto"`` (the model's ``default_loss`` if it has one — DDPM's
            ``"ddpm_simple"`` —, else ``"enum"`` when the model marks discrete sites for
            enumeration, else ``"trace"``); ``"ddpm_simple"``/``"ddpm_rb"`` (diffusion's
            per-timestep objectives, see :mod:`ppl_gen.models.ddpm`); ``"trace"``
            (Trace_ELBO, Monte-Carlo KL); ``"meanfield"`` (TraceMeanField_ELBO,
            closed-form KL where available); ``"enum"``
            (TraceEnum_ELBO, discrete latents summed out); ``"renyi"`` (RenyiELBO with
            ``renyi_alpha``); ``"iwae"`` (RenyiELBO with alpha = 0, the importance-weighted
            bound of Burda et al. 2016).
        num_particles: Samples per ELBO estimate (k for IWAE).
        vectorize_particles: Draw the particles in one batched pass (an extra plate on the
            left) instead of a Python loop; needs a model that broadcasts (all zoo models do).
        renyi_alpha: alpha of the Rényi bound (``loss="renyi"`` only).
        guide: ``"auto"`` (the model's own guide when it has latent sites, else AutoNormal),
            ``"normal"`` (AutoNormal, mean field), ``"mvn"`` (AutoMultivariateNormal, full
            rank), ``"lowrank"`` (AutoLowRankMultivariateNormal), ``"delta"`` (AutoDelta, MAP)
            or ``"model"`` (the model's ``guide`` method).
        guide_rank: Rank of the low-rank guide.
        init_scale: Initial scale of autoguides. 0.1 is Pyro's AutoNormal default: small
            enough that the first steps do not sample absurd values.
        init: Where autoguides (normal, mvn, lowrank) of global latents start:
            ``"pathfinder"`` (default: the Gaussian of the best path of a short 4-path
            Pathfinder run — a fit that starts near the posterior; ~0.1-3 s) or
            ``"median"`` (Pyro's prior-median start with ``init_scale``). Falls back to
            ``"median"``, with the reason in ``info["init"]``, for models that do not
            vectorise over draws, have discrete or local latents, more than 1,000
            unconstrained dimensions, or a minibatched fit (``batch_size`` set).
        batch_size: Minibatch size, passed to the model's ``pyro.plate("data", ...)`` as
            ``subsample_size``; ``None`` uses the full data each step; ``"auto"`` (default)
            uses the model's ``default_batch_size`` (100 for the image models, whose
            activations grow with the batch; the full data for the statistical models).
        clip_norm: Gradient-norm clip for ``clipped_adam``.
        compile: ``"auto"`` (default): for zoo models trained with ``loss`` ``"trace"`` or
            ``"meanfield"``, the loss-and-gradient step is traced once (step 2) into ATen
            ops and replayed without Pyro's handlers — bit-identical losses to eager steps
            (the same random draws), checked when traced, ~15% less time per step on a
            VAE; anything untraceable runs eagerly, with the reason in
            ``info["compile_reason"]``. ``"fx"`` insists on the trace (raises if it
            fails); ``"inductor"`` also compiles the graph (another ~12%, float-rounding
            differences, seconds of compile); ``False`` runs Pyro every step. The trace
            freezes Python values read by the model (shapes, batch size, ``beta``): change
            them only between fits. See :mod:`ppl_gen.inference.compiled`.
        num_threads: torch intra-op threads during the fit (``None`` keeps torch's setting).
        progress_bar: Show a tqdm bar.
        log_every: Record the loss every this many steps (1 records all).
        psis_draws: Draws from the fitted guide for the reliability report ``fit``
            attaches (PSIS k-hat with Yao et al.'s verdict, PSIS-corrected means, sds and
            quantiles: ``result.info["psis"]``); 0 switches it off. Costs one vectorised
            pass of model and guide per 500 draws (milliseconds to a second on the
            statistical models; timed in ``info["psis"]["seconds"]``). Amortised guides
            (VAEs) and point guides (AutoDelta) are skipped with the reason.
        average_iterates: For guides of global latents (autoguides, user guides; not
            amortised or point guides): the fitted parameters are the average of the
            iterates over the last quarter of the run, and the convergence check compares
            that average with the previous quarter's (Dhaka et al. 2020).
            ``result.info["convergence"]`` holds the check; a guide that still moved by
            more than 0.1 posterior sd warns. ``False`` keeps the last iterate and checks
            only the ELBO's trend.
        stop_early: Stop before ``num_steps`` once the fit has converged: every
            ``max(20, num_steps // 40)`` steps after the first fifth of the budget, the
            ELBO's gain over the last quarter of the steps so far is compared with its
            standard error (batch means) and, for guides of global latents, the guide's
            drift between the last two quarter averages with 0.1 posterior sd and the
            trend of its iterates; when all are flat the run stops and returns the last
            quarter's iterate average. ``info["convergence"]`` records where it stopped
            (``stopped_at``) or that it never did. Off by default: it stops during the
            constant-step phase, before the default decay, and on the posteriordb-style
            models of ``benchmarks/svi_stop_early.py`` it saved 2-5x the time at a cost
            in tail fit (k-hat up to 0.7 where the whole budget gave 0.35).
        num_runs: Independent optimisations from seeds ``seed, seed + 1, ...`` (Dhaka et
            al. 2020's parallel runs). With 2 or more, ``fit`` returns the run with the best
            final ELBO and checks that the runs agree: R-hat across the runs' guides (each
            run's ``psis_draws`` draws, at least 500, as one chain) above 1.01 for any
            parameter warns that the ELBO has several optima or that the runs had not
            converged. ``info["parallel_runs"]`` holds every run's seed and ELBO and the
            R-hats. Costs ``num_runs`` fits; for models whose only parameters are the
            guide's (the statistical models, your own Pyro functions).
        distributed: Data-parallel SVI over the processes ``torchrun`` started (gloo on
            CPU, NCCL on CUDA): each rank reads its shard of every global minibatch of
            ``batch_size`` rows (the full data when ``None``), gradients are averaged, rank
            0 alone writes files. See :mod:`ppl_gen.inference.distributed`.
        distributed_timeout: Seconds a rank waits in a collective before it gives up on
            the others (a rank that died); the fit then stops with a message.
    """

    num_steps: int = 2000
    learning_rate: float = 0.01
    final_learning_rate: float | None = None
    decay_start: float | None = None
    optimizer: str = "adam"
    loss: str = "auto"
    num_particles: int = 1
    vectorize_particles: bool = False
    renyi_alpha: float = 0.5
    guide: str = "auto"
    guide_rank: int = 2
    init_scale: float = 0.1
    init: str = "pathfinder"
    batch_size: int | str | None = "auto"
    clip_norm: float = 10.0
    compile: bool | str = "auto"
    num_threads: int | None = None
    progress_bar: bool = False
    log_every: int = 1
    psis_draws: int = 1000
    average_iterates: bool = True
    stop_early: bool = False
    num_runs: int = 1
    distributed: bool = False
    distributed_timeout: float = 300.0

    def __post_init__(self) -> None:
        _check_types(self)
        _positive_int("num_steps", self.num_steps)
        _positive_int("num_runs", self.num_runs)
        if self.num_runs > 1 and self.distributed:
            raise ValueError("num_runs > 1 runs the optimisations one after another in this "
                             "process; it does not combine with distributed=True (launch "
                             "separate runs with different seeds instead)")
        _positive_float("distributed_timeout", self.distributed_timeout)
        _positive_float("learning_rate", self.learning_rate)
        if self.psis_draws != 0:
            _positive_int("psis_draws", self.psis_draws, minimum=20)
        if self.final_learning_rate is not None:
            _positive_float("final_learning_rate", self.final_learning_rate)
            if self.final_learning_rate > self.learning_rate:
                raise ValueError(
                    f"final_learning_rate ({self.final_learning_rate}) is larger than "
                    f"learning_rate ({self.learning_rate}); the step size only decays: set "
                    "final_learning_rate below learning_rate, or leave it unset")
        if self.decay_start is not None and not (
                math.isfinite(self.decay_start) and 0 <= self.decay_start <= 1):
            raise ValueError(f"decay_start must be a fraction of the run in [0, 1] (0: decay "
                             f"from the first step, 1: constant step size), got "
                             f"{self.decay_start!r}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("loss", self.loss, SVI_LOSSES)
        _positive_int("num_particles", self.num_particles)
        _choice("guide", self.guide, GUIDES)
        _choice("init", self.init, ("pathfinder", "median"))
        _positive_int("guide_rank", self.guide_rank)
        _positive_float("init_scale", self.init_scale)
        _positive_float("clip_norm", self.clip_norm)
        _positive_int("log_every", self.log_every)
        _check_compile(self.compile)
        if self.batch_size is not None and self.batch_size != "auto" and (
                isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                or self.batch_size < 1):
            raise ValueError(f"batch_size must be 'auto', None or an integer >= 1, got "
                             f"{self.batch_size!r}")
        if self.num_threads is not None:
            _positive_int("num_threads", self.num_threads)
        if not math.isfinite(self.renyi_alpha):
            raise ValueError(f"renyi_alpha must be a finite number, got {self.renyi_alpha!r}")
        if self.loss == "renyi" and self.renyi_alpha == 1:
            raise ValueError("renyi_alpha must be finite and != 1 (alpha = 1 is the ELBO: "
                             "use loss='trace')")
        if self.loss == "iwae" and self.num_particles < 2:
            raise ValueError("loss='iwae' needs num_particles >= 2 (with 1 it is the ELBO)")


@dataclass(frozen=True)
class EMConfig:
    """Expectation maximisation for models with ``e_step``/``m_step``/``log_likelihood``.

    Attributes:
        max_iter: Maximum EM iterations.
        tol: Stop when the per-datum log-likelihood improves by less than ``tol`` (absolute,
            as scikit-learn's ``GaussianMixture`` does).
        init: Initialisation passed to the model's ``initialize`` (``"kmeans"``, ``"random"``,
            ``"pca"``; which ones apply depends on the model).
        check_monotone: Raise if the log-likelihood decreases by more than
            ``monotone_tol`` (relative), which would mean a bug: EM never decreases it.
        monotone_tol: Allowed relative decrease from floating-point round-off.
        num_threads: torch intra-op threads during the fit.
        progress_bar: Show a tqdm bar.
    """

    max_iter: int = 500
    tol: float = 1e-6
    init: str = "kmeans"
    check_monotone: bool = True
    monotone_tol: float = 1e-7
    num_threads: int | None = 1
    progress_bar: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        _positive_int("max_iter", self.max_iter)
        _positive_float("tol", self.tol, allow_zero=True)
        _positive_float("monotone_tol", self.monotone_tol, allow_zero=True)
        if self.num_threads is not None:
            _positive_int("num_threads", self.num_threads)


@dataclass(frozen=True)
class MCMCConfig:
    """Hamiltonian Monte Carlo (Pyro's ``NUTS``/``HMC`` kernels), several chains.

    Attributes:
        kernel: ``"nuts"`` or ``"hmc"``.
        num_warmup: Adaptation iterations per chain (discarded).
        num_samples: Kept draws per chain.
        num_chains: Independent chains, each with its own seed and initial point.
        target_accept_prob: Dual-averaging target; raise it (0.9–0.99) to fight divergences.
        max_tree_depth: NUTS doubling limit.
        step_size: Initial step size (adapted during warmup; 1.0 as in Pyro).
        num_steps: Leapfrog steps for fixed-length HMC (``kernel="hmc"``).
        adapt_mass_matrix: Adapt a mass matrix in Stan-style windows.
        full_mass: Dense (True) or diagonal (False) mass matrix.
        jit_compile: Use Pyro's ``jit_compile`` for the potential (faster on larger models).
        init_strategy: ``"median"``, ``"uniform"`` or ``"prior"`` initial points (Pyro's
            strategies), or ``"pathfinder"``: each chain starts at a draw of a 4-path
            Pathfinder run (positions only; Pyro's kernel adapts its own mass matrix). It
            needs a model that broadcasts over a batch of draws, and falls back to
            ``"median"`` (saying so in ``info["init"]``) when it does not.
        num_threads: torch intra-op threads; 1 by default because on small models a second
            thread only adds scheduler stalls (measured here: a 1.4 ms gradient became 34 ms
            with 2 threads and a busy neighbour core).
        progress_bar: Show a tqdm bar.
        distributed: Spread the chains over the processes ``torchrun`` started (contiguous
            blocks, rank 0 first) and gather their draws in chain order into one result on
            every rank. Each chain draws from its own stream (seed + 1000 x chain), so the
            result is the same for any number of processes (bit for bit on CPU).
        distributed_timeout: Seconds a rank waits for the others' draws.
    """

    kernel: str = "nuts"
    num_warmup: int = 500
    num_samples: int = 500
    num_chains: int = 4
    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    step_size: float = 1.0
    num_steps: int = 16
    adapt_mass_matrix: bool = True
    full_mass: bool = False
    jit_compile: bool = False
    init_strategy: str = "median"
    num_threads: int | None = 1
    progress_bar: bool = False
    distributed: bool = False
    distributed_timeout: float = 3600.0

    def __post_init__(self) -> None:
        _check_types(self)
        _positive_float("distributed_timeout", self.distributed_timeout)
        _choice("kernel", self.kernel, MCMC_KERNELS)
        _positive_int("num_warmup", self.num_warmup, minimum=0)
        _positive_int("num_samples", self.num_samples)
        _positive_int("num_chains", self.num_chains)
        if not 0 < self.target_accept_prob < 1:
            raise ValueError(
                f"target_accept_prob must lie strictly between 0 and 1, "
                f"got {self.target_accept_prob!r}"
            )
        _positive_int("max_tree_depth", self.max_tree_depth)
        _positive_float("step_size", self.step_size)
        _positive_int("num_steps", self.num_steps)
        _choice("init_strategy", self.init_strategy,
                ("median", "uniform", "prior", "pathfinder"))
        if self.num_threads is not None:
            _positive_int("num_threads", self.num_threads)


@dataclass(frozen=True)
class AdversarialConfig:
    """Two-player training (adversarial autoencoders; GANs): each step runs the model's
    phases in order — e.g. reconstruction, discriminator, generator — each with its own
    Adam optimiser over its own parameters.

    Attributes:
        num_steps: Outer steps (one minibatch each).
        learning_rate: Adam step size for every phase.
        betas: Adam's (beta1, beta2); (0.5, 0.9) is the usual choice for adversarial games
            (Radford et al. 2016), where momentum from stale gradients destabilises play.
        discriminator_steps: Discriminator updates per outer step (n_critic in WGAN).
        discriminator_learning_rate: Adam step size of the ``discriminator`` phase, when
            it should differ from ``learning_rate`` (the two-time-scale update rule of
            Heusel et al. 2017); ``None`` uses ``learning_rate``.
        batch_size: Minibatch rows.
        num_threads: torch intra-op threads during the fit.
        progress_bar: Show a tqdm bar.
        log_every: Record the phase losses every this many steps.
    """

    num_steps: int = 2000
    learning_rate: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.9)
    discriminator_steps: int = 1
    discriminator_learning_rate: float | None = None
    batch_size: int = 100
    num_threads: int | None = None
    progress_bar: bool = False
    log_every: int = 1

    def __post_init__(self) -> None:
        _check_types(self)
        _positive_int("num_steps", self.num_steps)
        _positive_float("learning_rate", self.learning_rate)
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1
                                      for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", betas)
        _positive_int("discriminator_steps", self.discriminator_steps)
        if self.discriminator_learning_rate is not None:
            _positive_float("discriminator_learning_rate", self.discriminator_learning_rate)
        _positive_int("batch_size", self.batch_size)
        _positive_int("log_every", self.log_every)
        if self.num_threads is not None:
            _positive_int("num_threads", self.num_threads)


@dataclass(frozen=True)
class ChEESConfig:
    """ChEES-HMC, the vectorised many-chain engine (``engine="chees"``).

    Attributes:
        num_warmup: Adaptation iterations (step sizes, trajectory length, mass matrices).
        num_samples: Kept draws per chain.
        num_chains: Chains run in lockstep as one batch; more chains make the trajectory
            length's gradient estimate better and cost little extra per iteration.
        target_accept_prob: Dual-averaging target per chain. 0.8 as in Stan and Pyro: the
            ChEES paper's 0.651 (optimal for HMC on Gaussian targets) gave eight schools 18
            divergences, r-hat 1.016 and ESS(tau) 975 where 0.8 gave 0-1, 1.003 and 2,500+
            (16 chains x 400 draws, seeds 1-3).
        step_size: Initial step size of every chain.
        init: Where chains start: ``"pathfinder"`` (the default: draws of a 4-path
            Pathfinder run, with the draws' variances — or covariance, for a dense metric
            — as the initial inverse metric; Zhang et al. 2022 show it cuts warmup) or
            ``"uniform"`` (Stan's default: uniform on (-2, 2) in unconstrained space).
            On the eight posteriordb dev posteriors (3 seeds, 16 chains, 500 + 500) the
            Pathfinder start passed 24 of 24 runs against 22 of 24 and needed a median
            6,700 gradients per run (start included) against 43,500
            (``benchmarks/posteriordb_dev.py``). If every path fails the chains start
            uniformly, and ``info["init"]`` says so and what the start cost.
        init_trajectory_length: Initial T (adapted during warmup).
        adapt_trajectory_length: Adapt T by the ChEES criterion (True), or keep
            ``init_trajectory_length`` throughout: batched HMC with a fixed, jittered
            trajectory length and adapted step sizes and mass matrix.
        trajectory_learning_rate: Adam's step for log T.
        trajectory_criterion: What T maximises: ``"chees"`` (the default: the criterion of
            Hoffman et al. 2021; on a standard Gaussian its optimum is T = 2.25) or
            ``"chees_rate"`` (the criterion per unit trajectory length, TFP's
            ``chees_rate_criterion``: shorter trajectories, T = 1.59 there; on a 0.99-
            correlated target with per-chain diagonal metrics it chose T too short to mix).
        max_leapfrog_steps: Cap on leapfrog steps per iteration (bounds T / step size).
        max_energy_error: An energy error above this counts as a divergence.
        adapt_mass_matrix: Adapt the mass matrix in Stan's windows (False: identity).
        mass_matrix: ``"auto"`` (the default: up to 64 dimensions, each warmup window
            chooses between the diagonal and the dense estimate from the correlation of its
            draws, dense where the posterior is strongly correlated; diagonal above 64),
            ``"diagonal"`` or ``"dense"`` (one D x D matrix shared by all chains, estimated
            from all chains' draws). ``result.info["mass_matrix"]`` says which was used.
        pool_mass_matrix: Estimate the diagonal from all chains' window draws and share it
            (the default: C times the draws, robust to a chain stuck during a window); False
            gives each chain its own, as C separate Stan runs would.
        compile: How the leapfrog step (model potential and gradient included) runs:
            ``"auto"`` traces it once into ATen ops and compiles them with TorchInductor,
            falling back to the traced graph, then to eager Pyro, with the reason in
            ``result.info["compile_reason"]``; ``"inductor"``/``"fx"`` insist (and raise
            when they fail); ``False``/``"eager"`` re-runs the model through Pyro's
            handlers every step. See :mod:`ppl_gen.inference.compiled`.
        num_threads: torch intra-op threads (1: small models only stall on a second).
        progress_bar: Show a tqdm bar.
        distributed: Spread the batch's gradients over the processes ``torchrun``
            started (contiguous blocks of chains, at least one each): every rank holds the
            whole batch's state and one adaptation pools every chain, so the draws are
            those of one process (bit for bit where a block's arithmetic equals the whole
            batch's), rank 0 writes the checkpoints and any number of ranks resumes them
            (:class:`~ppl_gen.inference.distributed.ChainShard`).
        distributed_timeout: Seconds a rank waits for the others in a collective.
    """

    num_warmup: int = 500
    num_samples: int = 500
    num_chains: int = 16
    target_accept_prob: float = 0.8
    step_size: float = 0.1
    init: str = "pathfinder"
    init_trajectory_length: float = 0.1
    adapt_trajectory_length: bool = True
    trajectory_learning_rate: float = 0.025
    trajectory_criterion: str = "chees"
    max_leapfrog_steps: int = 1000
    max_energy_error: float = 1000.0
    adapt_mass_matrix: bool = True
    mass_matrix: str = "auto"
    pool_mass_matrix: bool = True
    compile: bool | str = "auto"
    num_threads: int | None = 1
    progress_bar: bool = False
    distributed: bool = False
    distributed_timeout: float = 3600.0

    def __post_init__(self) -> None:
        _check_types(self)
        _positive_float("distributed_timeout", self.distributed_timeout)
        _positive_int("num_warmup", self.num_warmup, minimum=0)
        _positive_int("num_samples", self.num_samples)
        _positive_int("num_chains", self.num_chains, minimum=2)
        if self.mass_matrix not in ("auto", "diagonal", "dense"):
            raise ValueError(f"mass_matrix must be 'auto', 'diagonal' or 'dense', got "
                             f"{self.mass_matrix!r}")
        _check_compile(self.compile)
        if not 0 < self.target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must lie strictly between 0 and 1, got "
                             f"{self.target_accept_prob!r}")
        _positive_float("step_size", self.step_size)
        _positive_float("init_trajectory_length", self.init_trajectory_length)
        _positive_float("trajectory_learning_rate", self.trajectory_learning_rate)
        _choice("init", self.init, ("uniform", "pathfinder"))
        if self.trajectory_criterion not in ("chees_rate", "chees"):
            raise ValueError(f"trajectory_criterion must be 'chees_rate' or 'chees', got "
                             f"{self.trajectory_criterion!r}")
        _positive_int("max_leapfrog_steps", self.max_leapfrog_steps)
        _positive_float("max_energy_error", self.max_energy_error)
        if self.num_threads is not None:
            _positive_int("num_threads", self.num_threads)


def _check_compile(value: Any) -> None:
    if value not in (True, False, "auto", "inductor", "fx", "eager"):
        raise ValueError(f"compile must be 'auto', 'inductor', 'fx', 'eager', True or False, "
                         f"got {value!r}")


@dataclass(frozen=True)
class PathfinderConfig:
    """Multi-path Pathfinder (``engine="pathfinder"``, Zhang, Carpenter, Gelman & Vehtari
    2022), as Stan runs it.

    Each path runs L-BFGS on the log density in unconstrained space from a random start,
    builds a Gaussian approximation at every iterate from the L-BFGS curvature pairs,
    keeps the one with the highest ELBO and draws from it; the paths' draws are then
    importance-resampled by Pareto-smoothed weights (PSIS k-hat in ``info["psis"]``).

    Attributes:
        num_paths: Independent paths (Stan's default 4).
        num_draws: Draws returned (after PSIS resampling over all paths' draws).
        draws_per_path: Draws from each path's chosen approximation (Stan: 1,000; 2,500
            here: the draws cost one batched pass, and 10,000 pooled draws give the
            resampled means about half the Monte Carlo error at k-hat near 0.7).
        num_elbo_draws: Draws per ELBO estimate along a path (Stan: 25).
        history_size: L-BFGS curvature pairs kept (Stan: 5; the paper: 6).
        max_iterations: L-BFGS iterations per path at most.
        tolerance: Stop a path when the relative change of the log density falls below
            this (or the gradient's norm below it).
        init_radius: Starts are uniform on (-init_radius, init_radius) in unconstrained
            space (Stan's 2).
        psis_resample: Resample the draws by PSIS weights (``False``: the concatenated
            draws of every path as they are).
        num_threads: torch threads during the fit (``None`` keeps torch's setting).
        progress_bar: Show a tqdm bar (one step per path).
    """

    num_paths: int = 4
    num_draws: int = 1000
    draws_per_path: int = 2500
    num_elbo_draws: int = 25
    history_size: int = 6
    max_iterations: int = 1000
    tolerance: float = 1e-8
    init_radius: float = 2.0
    psis_resample: bool = True
    num_threads: int | None = 1
    progress_bar: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("num_paths", "num_draws", "draws_per_path", "num_elbo_draws",
                     "history_size", "max_iterations"):
            _positive_int(name, getattr(self, name))
        _positive_float("tolerance", self.tolerance)
        _positive_float("init_radius", self.init_radius)
        if self.num_threads is not None:
            _positive_int("num_threads", self.num_threads)


CONFIGS: dict[str, type] = {"svi": SVIConfig, "em": EMConfig, "nuts": MCMCConfig,
                            "hmc": MCMCConfig, "adversarial": AdversarialConfig,
                            "chees": ChEESConfig, "pathfinder": PathfinderConfig}


def config_from_dict(engine: str, values: dict[str, Any] | None = None) -> Any:
    """Build the config for ``engine`` from a dict, rejecting unknown fields by name."""
    cls = CONFIGS[engine]
    values = dict(values or {})
    if engine in ("nuts", "hmc"):
        if values.get("kernel", engine) != engine:
            raise ValueError(f"option kernel={values['kernel']!r} contradicts engine "
                             f"{engine!r}; use engine={values['kernel']!r}")
        values.setdefault("kernel", engine)
        if engine == "hmc" and "max_tree_depth" in values:
            raise ValueError("max_tree_depth bounds NUTS's trajectory doubling and does "
                             "not apply to engine 'hmc', whose trajectories are num_steps "
                             "leapfrog steps")
        if engine == "nuts" and "num_steps" in values:
            raise ValueError("num_steps (a fixed number of leapfrog steps) applies to engine "
                             "'hmc' only; NUTS chooses its trajectory lengths itself "
                             "(bound them with max_tree_depth)")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"unknown {engine} option(s) {', '.join(unknown)}; valid options are: "
            f"{', '.join(sorted(names))}"
        )
    return cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (with its class name)."""
    out = dataclasses.asdict(config)
    out["__class__"] = type(config).__name__
    return out

