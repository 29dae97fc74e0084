"""The one run loop every engine goes through, and the engine contract it drives.

An :class:`Engine` declares its name, config class and kind and supplies ``init(problem,
config, seed) -> State`` and ``step(state) -> (State, StepInfo)`` (the config travels in
the state), plus what the loop keeps from each step (``record``), how the kept records
become a :class:`~ppl_gen.inference.base.FitResult` (``finish``) and, for engines that can
resume, ``state_dict`` / ``load_state_dict``.

:func:`run_loop` is written once for all of them: torch threads, a tqdm bar, the NaN/inf
guard (stop, name the step and the causes, keep the last good checkpoint), periodic atomic
checkpoints of the engine state, the records and every random number generator, ``resume``
from such a checkpoint (bit-identical to an uninterrupted run on CPU with the same seed),
and Ctrl-C that saves a checkpoint and stops cleanly.

Compared with BlackJAX's ``run_inference_algorithm`` (a ``lax.scan`` over ``step``, no I/O)
and NumPyro's ``SVI.run(init_state=)`` (resume by handing back a state object), the loop
here also owns persistence, because a fit that dies after an hour must not lose the hour.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import atomic_write
from .._rng import preserved
from .base import FitResult, Problem, StepInfo, num_threads
from .distributed import is_writer
from .progress import progress_bar

__all__ = ["Engine", "run_loop", "Interrupted", "RESUME_FORMAT", "load_resume",
           "LoopOptions"]

RESUME_FORMAT = "ppl_gen-resume"
RESUME_VERSION = 1
KINDS = ("optimiser", "sampler", "point", "two-player", "approximation")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a fit: the run stopped after a whole step. ``checkpoint`` is the
    file that resumes it (``None`` when the fit was not checkpointing)."""

    def __init__(self, message: str, checkpoint: Path | None, step: int) -> None:
        super().__init__(message)
        self.checkpoint, self.step = checkpoint, step


def _never(state: Any) -> bool:
    return False


@dataclass(frozen=True)
class Engine:
    """An inference engine as the run loop sees it.

    Attributes:
        name: Registry name (``"svi"``, ``"chees"``, ...).
        config_class: Its frozen config dataclass.
        kind: ``"optimiser"``, ``"sampler"``, ``"point"`` or ``"two-player"``.
        description: One line for ``ppl-gen list``.
        init: ``(problem, config, seed) -> state``.
        step: ``state -> (state, StepInfo)``.
        total_steps: ``config -> int``: loop iterations (warmup included).
        new_records: ``config -> dict``: empty containers for what the loop keeps.
        record: ``(records, state, info, index) -> None``: keep what this step produced.
        finish: ``(problem, config, seed, state, records, info) -> FitResult``; ``info``
            already holds ``wall_time`` and ``resumed_from``.
        done: ``state -> bool``: stop early (EM's convergence).
        state_dict: ``state -> dict`` of tensors and plain values, or ``None`` when the
            engine cannot be checkpointed (``cannot_resume`` says why).
        load_state_dict: ``(fresh state from init, dict) -> state``.
        context: ``config -> context manager`` around the whole loop (``no_grad``, Pyro
            validation off).
        label: ``config -> str`` for the progress bar.
        postfix: ``info -> dict`` of numbers for the progress bar.
        cannot_resume: Why ``state_dict`` is ``None``.
        lockstep: A sampler whose chains run as one batch (ChEES): under
            ``distributed=True`` every rank holds the whole batch's state and computes its
            own block of chains' gradients (:class:`~.distributed.ChainShard`), so the
            adaptation pools every chain and rank 0's checkpoint resumes every rank.
            Otherwise (NUTS, HMC) each rank runs its block of chains on its own.
    """

    name: str
    config_class: type
    kind: str
    description: str
    init: Callable[..., Any]
    step: Callable[[Any], tuple[Any, StepInfo]]
    total_steps: Callable[[Any], int]
    new_records: Callable[[Any], dict[str, Any]]
    record: Callable[[dict[str, Any], Any, StepInfo, int], None]
    finish: Callable[..., FitResult]
    done: Callable[[Any], bool] = _never
    state_dict: Callable[[Any], dict[str, Any]] | None = None
    load_state_dict: Callable[[Any, dict[str, Any]], Any] | None = None
    context: Callable[[Any], contextlib.AbstractContextManager] = \
        lambda config: contextlib.nullcontext()
    label: Callable[[Any], str] | None = None
    postfix: Callable[[StepInfo], dict[str, float]] = \
        lambda info: {"loss": info.loss}
    cannot_resume: str = ""
    lockstep: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"engine kind must be one of {', '.join(KINDS)}, got "
                             f"{self.kind!r}")

    @property
    def resumable(self) -> bool:
        return self.state_dict is not None and self.load_state_dict is not None

    def run(self, problem: Problem, config: Any = None, seed: int = 0,
            **options: Any) -> FitResult:
        """:func:`run_loop` with this engine (``options``: see :class:`LoopOptions`)."""
        return run_loop(self, problem, config if config is not None else
                        self.config_class(), seed, LoopOptions(**options))


@dataclass(frozen=True)
class LoopOptions:
    """How the loop persists a fit.

    Attributes:
        checkpoint: File the resume checkpoint is written to (atomically), or ``None``.
        checkpoint_every: Write it every this many steps (``None``: only on Ctrl-C).
        checkpoint_seconds: ... or when this many seconds passed since the last one.
        resume: A checkpoint file to continue from.
        callback: ``(index, state, info) -> None`` after every step (logging, tests).
        run_info: Extra entries for the checkpoint (the CLI's arguments).
        prepare: Called once, just before the first checkpoint is written (the CLI
            creates its partial run folder there, so a fit that fails early leaves none).
    """

    checkpoint: str | os.PathLike[str] | None = None
    checkpoint_every: int | None = None
    checkpoint_seconds: float | None = None
    resume: str | os.PathLike[str] | None = None
    callback: Callable[[int, Any, StepInfo], None] | None = None
    run_info: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.checkpoint_every is not None and (
                isinstance(self.checkpoint_every, bool)
                or not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be an integer >= 1 or None, got "
                             f"{self.checkpoint_every!r}")
        if self.checkpoint_seconds is not None and not self.checkpoint_seconds > 0:
            raise ValueError(f"checkpoint_seconds must be > 0 or None, got "
                             f"{self.checkpoint_seconds!r}")
        if (self.checkpoint_every or self.checkpoint_seconds) and self.checkpoint is None:
            raise ValueError("checkpoint_every / checkpoint_seconds need checkpoint=PATH, "
                             "the file to write")


# --- random number generators ----------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """Every global generator a fit draws from (Python, NumPy, torch CPU and CUDA), as
    plain values ``torch.load(weights_only=True)`` reads back."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(), "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32),
                         numpy["pos"], numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- checkpoints ---------------------------------------------------------------------------

def _config_dict(config: Any) -> dict[str, Any]:
    from ..config import config_to_dict

    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in config_to_dict(config).items()}


def _save(path: Path, engine: Engine, problem: Problem, config: Any, seed: int,
          step: int, state: Any, records: dict[str, Any], wall_time: float,
          run_info: dict[str, Any]) -> None:
    assert engine.state_dict is not None
    payload = {"format": RESUME_FORMAT, "version": RESUME_VERSION, "engine": engine.name,
               "model": problem.name, "config": _config_dict(config), "seed": seed,
               "step": step, "total_steps": engine.total_steps(config),
               "engine_state": engine.state_dict(state), "records": records,
               "rng": rng_state(), "wall_time": wall_time, "run_info": run_info}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_resume(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a resume checkpoint; a missing, damaged or foreign file fails clearly."""
    path = Path(path)
    if path.is_dir():
        path = path / "resume.pt"
    if not path.exists():
        raise FileNotFoundError(f"no resume checkpoint at {path}; pass the folder of an "
                                "interrupted run (it holds resume.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise ValueError(f"resume checkpoint {path} is corrupt ({type(error).__name__}); "
                         "the run cannot continue from it: start it again") from error
    if not isinstance(payload, dict) or payload.get("format") != RESUME_FORMAT:
        raise ValueError(f"{path} is not a ppl_gen resume checkpoint")
    if payload.get("version", 0) > RESUME_VERSION:
        raise ValueError(f"{path} was written by a newer ppl_gen; upgrade to resume it")
    return payload


def _check_resume(payload: dict[str, Any], engine: Engine, problem: Problem, config: Any,
                  seed: int, path: Any) -> None:
    mine = {"engine": engine.name, "model": problem.name, "seed": seed,
            "config": _config_dict(config)}
    for key, value in mine.items():
        if payload.get(key) != value:
            if key == "config":
                diff = sorted(k for k in set(value) | set(payload["config"])
                              if value.get(k) != payload["config"].get(k))
                detail = f"config fields {', '.join(diff)} differ"
            else:
                detail = f"{key} {payload.get(key)!r}, this fit's is {value!r}"
            raise ValueError(f"cannot resume from {path}: it belongs to another fit "
                             f"({detail}); resume with the same model, engine, options and "
                             "seed, or start afresh")


# --- Ctrl-C --------------------------------------------------------------------------------

@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[dict[str, bool]]:
    """While a step runs, Ctrl-C only sets a flag; the loop stops after the step, saves,
    and raises :class:`Interrupted`. A second Ctrl-C interrupts at once."""
    flag = {"set": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag["set"]:
            raise KeyboardInterrupt
        flag["set"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# --- the loop ------------------------------------------------------------------------------

def run_loop(engine: Engine, problem: Problem, config: Any, seed: int = 0,
             options: LoopOptions | None = None) -> FitResult:
    """Run ``engine`` on ``problem`` for ``engine.total_steps(config)`` steps (fewer when
    ``engine.done``), keeping ``engine.record``'s records, and return ``engine.finish``'s
    result. See the module docstring for what the loop guarantees."""
    options = options or LoopOptions()
    if not isinstance(config, engine.config_class):
        raise TypeError(f"engine {engine.name!r} takes a {engine.config_class.__name__}, got "
                        f"{type(config).__name__}")
    wants_checkpoints = options.checkpoint is not None or options.resume is not None
    if wants_checkpoints and not engine.resumable:
        raise ValueError(f"engine {engine.name!r} cannot checkpoint or resume: "
                         f"{engine.cannot_resume}")
    checkpoint = Path(options.checkpoint) if options.checkpoint is not None else None
    total = engine.total_steps(config)
    started = time.perf_counter()
    threads = getattr(config, "num_threads", None)
    # The engines seed the global generators (Pyro samples from torch's); the caller's
    # generators are put back afterwards: a fit is not a reseed of the user's program.
    with num_threads(threads), preserved():
        state, records, first = _loop(engine, problem, config, seed, options, checkpoint,
                                      total, started)
        info = {"wall_time": records.pop("_wall_time"),
                "resumed_from": first if options.resume is not None else None}
        return engine.finish(problem, config, seed, state, records, info)


def _loop(engine: Engine, problem: Problem, config: Any, seed: int, options: LoopOptions,
          checkpoint: Path | None, total: int, started: float
          ) -> tuple[Any, dict[str, Any], int]:
    """Init (or resume) and step, inside the engine's context; returns the final state,
    the records (with ``_wall_time``) and the first step run."""
    with engine.context(config):
        state = engine.init(problem, config, seed)
        records = engine.new_records(config)
        first, before = 0, 0.0
        if options.resume is not None:
            payload = load_resume(options.resume)
            _check_resume(payload, engine, problem, config, seed, options.resume)
            assert engine.load_state_dict is not None
            state = engine.load_state_dict(state, payload["engine_state"])
            records, first, before = payload["records"], payload["step"], payload["wall_time"]
            set_rng_state(payload["rng"])  # last: loading may have drawn random numbers
        label = engine.label(config) if engine.label else engine.name
        # A distributed fit: rank 0 alone writes; independent fits in several processes
        # (no distributed=True) each keep their own checkpoints.
        writer = is_writer() if getattr(config, "distributed", False) else True
        bar = progress_bar(total, label, enabled=writer and getattr(config, "progress_bar",
                                                                     False), initial=first)
        last_saved, last_time = first, time.perf_counter()

        prepared = [options.prepare is None]

        def save(at: int) -> None:
            assert checkpoint is not None
            if not writer:  # distributed runs: rank 0 alone writes
                return
            if not prepared[0]:
                options.prepare()
                prepared[0] = True
            _save(checkpoint, engine, problem, config, seed, at, state, records,
                  before + time.perf_counter() - started, options.run_info)

        try:
            with _deferred_interrupt() as interrupt:
                for index in range(first, total):
                    if engine.done(state):
                        break
                    try:
                        state, info = engine.step(state)
                    except FloatingPointError as error:
                        kept = (f"; the last good checkpoint (step {last_saved}) is kept in "
                                f"{checkpoint}" if checkpoint is not None
                                and checkpoint.exists() else "")
                        raise FloatingPointError(f"{error} (stopped at step {index + 1} of "
                                                 f"{total}{kept})") from error
                    engine.record(records, state, info, index)
                    bar.update(**engine.postfix(info))
                    if options.callback is not None:
                        options.callback(index, state, info)
                    done_steps = index + 1
                    if checkpoint is not None and done_steps < total and (
                            (options.checkpoint_every
                             and done_steps % options.checkpoint_every == 0)
                            or (options.checkpoint_seconds and time.perf_counter() - last_time
                                >= options.checkpoint_seconds)):
                        save(done_steps)
                        last_saved, last_time = done_steps, time.perf_counter()
                    if interrupt["set"]:
                        if checkpoint is not None:
                            save(done_steps)
                        where = (f"; resume from {checkpoint}" if checkpoint is not None
                                 else "; nothing was saved (pass checkpoint=PATH to keep "
                                 "partial fits)")
                        raise Interrupted(f"interrupted after step {done_steps} of {total}"
                                          f"{where}", checkpoint, done_steps)
        finally:
            bar.close()
    records["_wall_time"] = before + time.perf_counter() - started
    return state, records, first
