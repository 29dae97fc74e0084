"""Run folders: ``config.json``, ``summary.json``, ``history.json``, ``checkpoint.pt``,
``posterior.nc`` (ArviZ netCDF) and PNG plots, each written atomically.

A run folder that already holds a run is never overwritten unless asked, and every file is
first written beside its target and then renamed, so an interrupted save leaves the
previous files intact.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .inference.base import FitResult

__all__ = ["save_run", "prepare_run_dir", "load_run", "load_checkpoint", "atomic_write",
           "write_json",
           "RunExistsError", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "ppl_gen-run-checkpoint"
CHECKPOINT_VERSION = 1
_RUN_MARKER = "config.json"


class RunExistsError(FileExistsError):
    """The output folder already holds a run."""


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` (atomic on POSIX)."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def write_json(path: str | os.PathLike[str], value: Any) -> None:
    """Atomically write ``value`` as indented JSON (NaN/inf become null)."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(_jsonable(value), f, indent=2)
            f.write("\n")

    atomic_write(path, write)


def prepare_run_dir(out: str | os.PathLike[str], *, overwrite: bool = False,
                    create: bool = True) -> Path:
    """Create ``out`` (unless ``create=False``: check only) or check that it holds no earlier
    run (unless ``overwrite``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder; choose a folder path")
    if (out / _RUN_MARKER).exists() and not overwrite:
        raise RunExistsError(f"{out} already holds a run ({_RUN_MARKER} exists); choose another "
                             "--out folder, or pass --overwrite to replace it")
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out


def _checkpoint(result: FitResult) -> dict[str, Any]:
    module = result.problem.module
    guide = result.guide
    state: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                             "engine": result.engine, "model": result.problem.name}
    if module is not None:
        state["model_state"] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    if isinstance(guide, torch.nn.Module):
        state["guide_state"] = {k: v.detach().cpu() for k, v in guide.state_dict().items()}
    if result.param_state and result.param_state.get("params"):
        state["param_store"] = {k: v.detach().cpu()
                                for k, v in result.param_state["params"].items()}
    if result.samples is not None:
        state["samples"] = {k: v.detach().cpu() for k, v in result.samples.items()}
    return state


def save_run(out: str | os.PathLike[str], result: FitResult, *, summary: dict | None = None,
             idata: Any = None, extra_config: dict | None = None,
             figures: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write a run folder.

    Arguments:
        out: Folder to create (or reuse when empty / ``overwrite``).
        result: What ``fit`` returned.
        summary: ``summarize(result)``; written as ``summary.json``.
        idata: ArviZ InferenceData; written as ``posterior.nc`` when it has a posterior.
        extra_config: Merged into ``config.json`` (model and dataset names, CLI options).
        figures: name -> matplotlib Figure, written as ``name.png``.
        overwrite: Replace an earlier run in ``out``.

    Returns:
        The folder path.
    """
    from .config import config_to_dict
    from .plots import save_figure

    out = prepare_run_dir(out, overwrite=overwrite)
    atomic_write(out / "checkpoint.pt", lambda tmp: torch.save(_checkpoint(result), tmp))
    write_json(out / "history.json", result.history)
    if summary is not None:
        write_json(out / "summary.json", summary)
    if idata is not None and "posterior" in idata.groups():
        atomic_write(out / "posterior.nc", lambda tmp: idata.to_netcdf(tmp, engine="h5netcdf"))
    for name, fig in (figures or {}).items():
        save_figure(fig, out / f"{name}.png")
    config = {"engine": result.engine, "model": result.problem.name, "seed": result.seed,
              "engine_config": config_to_dict(result.config),
              "device": str(result.problem.device), **(extra_config or {})}
    write_json(out / _RUN_MARKER, config)  # written last: its presence marks a complete run
    return out


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a ``checkpoint.pt``; a corrupt or foreign file fails clearly."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; is this a ppl_gen run folder?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"checkpoint {path} is corrupt or not a ppl_gen checkpoint; re-run "
                         f"the fit to recreate it ({type(error).__name__}: {first_line})"
                         ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a ppl_gen checkpoint (missing format marker); "
                         "re-run the fit to recreate it")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"{path} was written by a newer ppl_gen (checkpoint version "
                         f"{state['version']}); upgrade ppl_gen to read it")
    return state


def load_run(out: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a run folder: ``config``, ``summary``, ``history`` and ``checkpoint`` dicts, plus
    ``idata`` (ArviZ) when ``posterior.nc`` exists, and ``model`` rebuilt with its fitted
    state when the folder records a registered model and dataset."""
    out = Path(out)
    if not (out / _RUN_MARKER).exists():
        raise FileNotFoundError(f"{out} holds no complete ppl_gen run ({_RUN_MARKER} missing)")
    run: dict[str, Any] = {}
    for name in ("config", "summary", "history"):
        path = out / f"{name}.json"
        if path.exists():
            try:
                run[name] = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is corrupt ({error}); re-run the fit") from error
    run["checkpoint"] = load_checkpoint(out / "checkpoint.pt")
    if (out / "posterior.nc").exists():
        from .diagnostics.convert import read_netcdf

        run["idata"] = read_netcdf(out / "posterior.nc")
    config = run["config"]
    if config.get("model_name") and config.get("dataset") and \
            "model_state" in run["checkpoint"]:
        from .data import load_dataset
        from .models import build_model

        dataset = load_dataset(config["dataset"], **config.get("dataset_options", {}))
        model = build_model(config["model_name"], dataset, **config.get("model_options", {}))
        model.load_state_dict(run["checkpoint"]["model_state"])
        run["model"] = model
    return run
