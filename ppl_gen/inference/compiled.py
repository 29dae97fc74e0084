"""Trace once, then run compiled: a model's per-step tensor work without Python in the loop.

Pyro re-runs the model's Python and every effect handler on each evaluation: for small
models that costs ~1 ms whatever the tensors' sizes, which is nearly all of an HMC step.
:func:`compile_function` removes it in two stages:

1. **Trace** — ``torch.fx.experimental.proxy_tensor.make_fx`` runs the function once and
   records the ATen operations it performs (forward *and* the backward that
   ``torch.autograd.grad`` triggers) as one FX graph. Python control flow, Pyro's handlers
   and distribution bookkeeping are gone from the graph; shapes are fixed to the example's.
   A function that reads a traced tensor's value in Python (``.item()``, ``if x > 0``,
   ``bool(tensor)``) cannot be traced: it is reported and run eagerly instead.
2. **Compile** — TorchInductor turns that graph into fused C++ (CPU) or Triton (CUDA)
   kernels. Compiling costs a few seconds once (cached on disk by torch); a call then costs
   tens of microseconds.

Either result is checked against eager execution on the example inputs before it is used;
a mismatch, a tracing error or a compiler failure falls back (``"auto"``) or raises
(an explicit backend) with the reason. The chosen backend and the reason for any fallback
are kept on the returned :class:`CompiledFunction`.

Models that validate *data* values in Python (``if not torch.all(y >= 0): raise``) can keep
doing so: guard the check with :func:`tracing`, which is true while ppl_gen traces — the
data were already checked on the eager evaluation that precedes every trace.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from torch import Tensor

from ..traces.tracing import _tracing, tracing  # noqa: F401  (tracing: re-exported)

__all__ = ["BACKENDS", "CompiledFunction", "CompileError", "compile_function", "tracing"]

BACKENDS = ("auto", "inductor", "fx", "eager")



class CompileError(RuntimeError):
    """An explicitly requested backend could not compile the function (or disagreed with
    eager execution)."""


@dataclass
class CompiledFunction:
    """A traced (and possibly compiled) function with what happened to it.

    Attributes:
        fn: What to call; same arguments and outputs as the original.
        backend: ``"inductor"``, ``"fx"`` (the traced graph replayed op by op) or ``"eager"``.
        reason: Why a faster backend was not used (None when the requested one was).
        compile_seconds: Tracing plus compiling plus the check, in seconds.
    """

    fn: Callable[..., Any]
    backend: str
    reason: str | None
    compile_seconds: float

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


def normalize_backend(backend: str | bool) -> str:
    """``True`` -> ``"auto"``, ``False`` -> ``"eager"``; anything else must be a name."""
    if backend is True:
        return "auto"
    if backend is False or backend is None:
        return "eager"
    if backend not in BACKENDS:
        raise ValueError(f"unknown compile backend {backend!r}; choose one of "
                         f"{', '.join(BACKENDS)} (or True/False)")
    return backend


def compile_function(fn: Callable[..., Any], example_args: Sequence[Tensor], *,
                     backend: str | bool = "auto", name: str = "function",
                     check: bool = True, random: bool = False,
                     fallback: bool | None = None) -> CompiledFunction:
    """Trace ``fn`` on ``example_args`` and compile it; fall back to eager when that fails.

    Arguments:
        fn: A function of tensors returning a tensor or a tuple of tensors. It must not
            depend on state that changes between calls (parameters' *values* may change in
            place; shapes, dtypes and Python constants are frozen by the trace).
        example_args: Inputs with the shapes and dtypes every later call will use.
        backend: ``"auto"`` (Inductor, else the traced graph, else eager), ``"inductor"``,
            ``"fx"``, ``"eager"``; ``True``/``False`` mean ``"auto"``/``"eager"``.
        name: What the function is, for messages.
        check: Compare the compiled outputs with eager ones on ``example_args``.
        fallback: Fall back (to the traced graph, then eager) instead of raising when the
            backend fails; default: only for ``"auto"``.
        random: ``fn`` draws random numbers (torch's global generators). Then every call
            made here (eager reference, trace, checks) starts from the same generator
            state, so the outputs are comparable, and the global state is left as it was:
            compiling consumes no random numbers. The compiled function draws from the same
            generators in the same order as eager code (Inductor is told to use ATen's
            random ops, ``fallback_random``), so a seeded run is reproduced.

    Raises:
        CompileError: An explicit ``"inductor"``/``"fx"`` backend failed; the message says
            why and suggests ``compile="auto"`` or ``False``.
    """
    backend = normalize_backend(backend)
    if fallback is None:
        fallback = backend == "auto"
    start = time.perf_counter()
    if backend == "eager":
        return CompiledFunction(fn, "eager", None, 0.0)
    with _same_random_numbers(random, example_args) as call:
        try:
            reference = call(fn) if check else None
            graph = call(lambda *args: _trace(fn, args))
            if check:
                _compare(call(graph), reference, "the traced graph")
        except Exception as error:  # noqa: BLE001 - every failure is a reason to fall back
            reason = f"tracing {name} failed: {_describe(error)}"
            return _fallback(fn, fallback, reason, start)
        if backend == "fx":
            return CompiledFunction(graph, "fx", None, time.perf_counter() - start)
        try:
            compiled = _inductor(graph, example_args)
            output = call(compiled)
            if check:
                _compare(output, reference, "the Inductor-compiled function")
        except Exception as error:  # noqa: BLE001
            reason = f"compiling {name} with Inductor failed: {_describe(error)}"
            if not fallback:
                raise CompileError(reason + "; use compile='auto' (falls back) or "
                                            "compile=False") from error
            return CompiledFunction(graph, "fx", reason, time.perf_counter() - start)
    return CompiledFunction(compiled, "inductor", None, time.perf_counter() - start)


@contextlib.contextmanager
def _same_random_numbers(random: bool, example_args: Sequence[Tensor]
                         ) -> Iterator[Callable[[Callable[..., Any]], Any]]:
    """``call(f)`` runs ``f(*example_args)``; with ``random``, each call from the same
    generator state, restored afterwards."""
    if not random:
        yield lambda f: f(*example_args)
        return
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices=devices):
        cpu_state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state_all() if cuda else None

        def call(f: Callable[..., Any]) -> Any:
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state_all(cuda_state)
            return f(*example_args)

        yield call


def _fallback(fn: Callable[..., Any], fallback: bool, reason: str,
              start: float) -> CompiledFunction:
    if not fallback:
        raise CompileError(reason + "; guard Python checks on data with "
                                    "ppl_gen.inference.tracing(), or use compile=False")
    return CompiledFunction(fn, "eager", reason, time.perf_counter() - start)


def _trace(fn: Callable[..., Any], example_args: Sequence[Tensor]) -> Callable[..., Any]:
    from torch.fx.experimental.proxy_tensor import make_fx

    # argument validation reads tensor values; the eager reference run has validated them
    with _tracing(), warnings.catch_warnings(), pyro.validation_enabled(False):
        warnings.simplefilter("ignore")
        return make_fx(fn)(*example_args)


def _inductor(graph: Any, example_args: Sequence[Tensor]) -> Callable[..., Any]:
    """Inductor on the traced ATen graph directly. ``torch.compile`` would first re-trace
    the graph's Python with TorchDynamo (a second more per compile) and guard every call
    (~45 us of a 60 us call on eight schools); the graph is already what Inductor wants, so
    ``compile_fx`` takes it as it is. Falls back to ``torch.compile`` if that private entry
    point moves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from torch._inductor import config
            from torch._inductor.compile_fx import compile_fx
        except ImportError:  # pragma: no cover - depends on the torch version
            return torch.compile(graph, dynamic=False, fullgraph=True)
        # ATen's random ops, not Inductor's own generator: the same draws as eager code
        with config.patch(fallback_random=True):
            compiled = compile_fx(graph, list(example_args))

    def call(*args: Tensor) -> Any:
        out = compiled(*args)
        return tuple(out) if isinstance(out, list) else out

    return call


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    if "_local_scalar_dense" in str(error) or "data-dependent" in str(error):
        first = ("it reads a tensor's value in Python (.item(), bool(tensor), "
                 "if tensor ...)")
    return f"{type(error).__name__}: {first}"[:300]


def _flatten(output: Any) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _flatten(item)]
    raise TypeError(f"expected tensors, got {type(output).__name__}")


def _compare(output: Any, reference: Any, what: str) -> None:
    """Outputs must match eager ones to floating-point reassociation error."""
    got, want = _flatten(output), _flatten(reference)
    if len(got) != len(want):
        raise AssertionError(f"{what} returned {len(got)} tensors, eager {len(want)}")
    for a, b in zip(got, want):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise AssertionError(f"{what} returned {tuple(a.shape)} {a.dtype}, eager "
                                 f"{tuple(b.shape)} {b.dtype}")
        if not b.is_floating_point():
            if not torch.equal(a, b):
                raise AssertionError(f"{what} disagrees with eager execution")
            continue
        finite = torch.isfinite(b)
        if not torch.equal(finite, torch.isfinite(a)):
            raise AssertionError(f"{what} is non-finite where eager execution is not")
        tol = 1e-3 if b.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-8
        scale = b[finite].abs().max() if finite.any() else b.new_tensor(0.0)
        if finite.any() and not torch.allclose(a[finite], b[finite], rtol=tol,
                                               atol=tol * float(scale.clamp_min(1.0))):
            error = float((a[finite] - b[finite]).abs().max())
            raise AssertionError(f"{what} disagrees with eager execution (max abs "
                                 f"difference {error:.3g})")
