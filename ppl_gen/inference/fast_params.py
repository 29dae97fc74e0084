"""The SVI engine's fast path for zoo models: run a model whose parameters the engine
already holds without Pyro's per-access ``param`` messages.

A :class:`~ppl_gen.models.GenerativeModel` is a ``PyroModule``: every access to one of
its submodules or ``nn.Parameter`` attributes goes through PyroModule's attribute hook,
which emits one ``param`` message per tensor, and every ``model``/``guide`` call enters
the module's Pyro context (a param-store swap). The SVI engine gathers every parameter
on its first step and steps them with one torch optimiser (:class:`~.svi._SVI`), so
afterwards those messages are pure overhead: ~0.3 ms per model + guide call for a
two-network VAE, 30 % of a small step.

:func:`collected_params` removes them for the duration of a ``with`` block without the
model's class knowing about it: each ``GenerativeModel`` in the module tree is switched
(``instance.__class__``) to a subclass made here once per class, whose ``__getattr__``
returns plain submodules and parameters directly and, when the module has no
``PyroSample`` attributes (which need the context to become sample sites), which
declares ``_pyro_context_free``: the hook through which a ``GenerativeModel``'s
``model``/``guide`` (bound before the switch, or reached by ``super()``) run without the
Pyro context. One stand-in ``param`` message per call
remains, because Pyro's ELBOs call ``backward()`` only when a trace holds a param site.
On leaving the block every instance gets its own class back. Outside it the model is an
ordinary Pyro model that any Pyro handler sees whole (tested: the same steps as Pyro's
param-tracing path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pyro
import torch
from pyro.nn import PyroModule
from torch.distributions import constraints

__all__ = ["collected_params", "STAND_IN"]

#: The name of the one ``param`` site a call makes inside :func:`collected_params`.
STAND_IN = "_collected_params"

#: (class, skip the Pyro context) -> its fast subclass.
_FAST_CLASSES: dict[tuple[type, bool], type] = {}


def _stand_in(value: torch.Tensor) -> None:
    pyro.poutine.runtime.effectful(type="param")(lambda *_, **__: value)(
        STAND_IN, value, constraint=constraints.real, name=STAND_IN)


def _fast_getattr(self: PyroModule, name: str) -> Any:
    # Plain submodules and nn.Parameters directly, not through PyroModule's hook;
    # PyroParam attributes (constrained) and PyroModule children still go through it.
    state = self.__dict__
    if name not in state.get("_pyro_params", ()):
        module = state["_modules"].get(name)
        if module is not None and not isinstance(module, PyroModule):
            return module
        param = state["_parameters"].get(name)
        if param is not None:
            return param
    return super(type(self), self).__getattr__(name)


def _without_context(self: PyroModule, method: Any, args: tuple, kwargs: dict) -> Any:
    """How the fast class runs ``model``/``guide`` (the hook a ``GenerativeModel``'s
    wrapped methods call, bound or not, from a subclass's ``super()`` too): no Pyro
    context, one stand-in param message."""
    representative = self.__dict__.get("_representative_param")
    if representative is not None:
        _stand_in(representative)
    return method(self, *args, **kwargs)


def _fast_class(cls: type, skip_context: bool) -> type:
    key = (cls, skip_context)
    fast = _FAST_CLASSES.get(key)
    if fast is None:
        namespace: dict[str, Any] = {"__getattr__": _fast_getattr,
                                     "__module__": cls.__module__,
                                     "__qualname__": cls.__qualname__}
        if skip_context:
            namespace["_pyro_context_free"] = _without_context
        fast = type(cls)(cls.__name__, (cls,), namespace)
        _FAST_CLASSES[key] = fast
    return fast


def _set_class(instance: Any, cls: type) -> None:
    object.__setattr__(instance, "__class__", cls)


def _has_pyro_samples(module: torch.nn.Module) -> bool:
    return any(isinstance(m, PyroModule) and m.__dict__.get("_pyro_samples")
               for m in module.modules())


@contextlib.contextmanager
def collected_params(module: torch.nn.Module) -> Iterator[None]:
    """Within this block the ``GenerativeModel`` instances in ``module`` (itself
    included) emit no ``param`` sites for their plain parameters (PyroParam constraints
    still apply) and, unless they hold ``PyroSample`` attributes, skip the Pyro context:
    for an engine that gathered the parameters once and optimises them directly."""
    from ..models.base import GenerativeModel

    plan = module.__dict__.get("_collection_plan")
    if plan is None:  # walked once: the engine enters this block on every step
        plan = [(m, _fast_class(type(m), not _has_pyro_samples(m)),
                 next(m.parameters(), None))
                for m in module.modules() if isinstance(m, GenerativeModel)]
        module.__dict__["_collection_plan"] = plan
    previous = []
    for m, fast, representative in plan:
        previous.append(m.__class__)
        if m.__class__ is not fast.__bases__[0] and m.__class__ is not fast:
            raise RuntimeError(f"{type(m).__name__} changed class since the SVI engine "
                               "first ran it; fit it afresh")
        # object's own setter: through nn.Module's and PyroModule's __setattr__ the switch
        # cost ~15 us each way per module and step
        _set_class(m, fast)
        m.__dict__["_representative_param"] = representative
    try:
        yield
    finally:
        for (m, _, _), cls in zip(plan, previous):
            _set_class(m, cls)
