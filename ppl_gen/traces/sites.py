"""Reading a Pyro trace: which sites are latent, enumerated, how deep the plates nest."""

from __future__ import annotations

import pyro.poutine as poutine

__all__ = ["latent_sites", "enumerated_sites", "max_plate_nesting", "element_label"]


def latent_sites(trace: poutine.Trace) -> list[str]:
    """Unobserved, non-enumerated sample sites (what MCMC and autoguides infer)."""
    return [n for n, s in trace.nodes.items()
            if s["type"] == "sample" and not s["is_observed"]
            and not s["infer"].get("enumerate") and not s["infer"].get("_deterministic")
            and not type(s["fn"]).__name__ == "_Subsample"]


def enumerated_sites(trace: poutine.Trace) -> list[str]:
    """Sites marked ``infer={"enumerate": ...}`` (summed out by TraceEnum_ELBO and NUTS)."""
    return [n for n, s in trace.nodes.items()
            if s["type"] == "sample" and s["infer"].get("enumerate")]


def max_plate_nesting(trace: poutine.Trace) -> int:
    """Deepest plate nesting among sample sites (needed for enumeration and vectorising)."""
    depth = 0
    for site in trace.nodes.values():
        if site["type"] == "sample":
            dims = [-f.dim for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None]
            depth = max([depth, *dims])
    return depth


def element_label(name: str, shape: tuple[int, ...], flat: int) -> str:
    """``theta[3]`` / ``L[1, 2]``: the label of element ``flat`` (row-major) of a site
    shaped ``shape`` (the bare name for a scalar), as summaries and warnings print it."""
    if not shape:
        return name
    import numpy as np

    return f"{name}[{', '.join(map(str, np.unravel_index(flat, shape)))}]"
