"""Run folders: ``config.json``, ``summary.json``, ``history.json``, ``checkpoint.pt``,
``posterior.nc`` (ArviZ netCDF) and PNG plots, each written atomically.

A run is written whole: into a staging folder beside the target, marked complete
(``.ppl_gen_run.json``) and moved into place in one rename (an atomic exchange when it
replaces an earlier run with ``overwrite``). An interrupted or killed save leaves the
previous folder exactly as it was; a non-empty folder that is not a ppl_gen run is never
written into.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._files import _umask, atomic_write
from .inference.base import FitResult

__all__ = ["save_run", "prepare_run_dir", "check_run_target", "staged_run_dir", "load_run",
           "load_checkpoint", "atomic_write", "write_json", "RunExistsError",
           "ForeignFolderError", "CHECKPOINT_FORMAT", "RUN_MARKER", "partial_run_dir",
           "make_partial_run", "read_partial_run", "run_status"]

CHECKPOINT_FORMAT = "ppl_gen-run-checkpoint"
CHECKPOINT_VERSION = 1
_RUN_MARKER = "config.json"
#: Written last into every run folder: its presence marks a complete ppl_gen run.
RUN_MARKER = ".ppl_gen_run.json"
RUN_FORMAT = "ppl_gen-run"


class RunExistsError(FileExistsError):
    """The output folder already holds a run."""


class ForeignFolderError(FileExistsError):
    """The output folder holds files that are not a ppl_gen run."""


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


def _is_run(folder: Path) -> bool:
    """A folder ppl_gen wrote: its marker, or (runs from before the marker) a config.json
    beside a checkpoint.pt or a comparison.json."""
    if (folder / RUN_MARKER).exists():
        return True
    return (folder / _RUN_MARKER).exists() and (
        (folder / "checkpoint.pt").exists() or (folder / "comparison.json").exists())


def run_status(folder: Path) -> str | None:
    """``"complete"``, ``"partial"`` (an interrupted fit that can be resumed) or ``None``
    (not a ppl_gen run)."""
    if not _is_run(folder):
        return None
    marker = folder / RUN_MARKER
    if marker.exists():
        try:
            return json.loads(marker.read_text()).get("status", "complete")
        except (OSError, json.JSONDecodeError):
            return "complete"
    return "complete"


def _listing(folder: Path, limit: int = 5) -> str:
    names = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _remove_stale_stages(target: Path) -> None:
    """Delete the staging folders of earlier saves to ``target`` whose process died
    (killed mid-save): they are never a complete run and would otherwise pile up."""
    if not target.parent.is_dir():
        return
    for stage in target.parent.glob(f".{target.name}.partial-*"):
        try:
            pid = int(stage.name[len(f".{target.name}.partial-"):].split("-", 1)[0])
        except ValueError:
            continue
        if stage.is_dir() and pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(stage, ignore_errors=True)


def _check_writable(target: Path) -> None:
    """Fail now, before any fitting, when the run could not be written: the folder that
    will hold the staging folder (the nearest existing ancestor) must accept a new entry.
    Tried for real (a probe folder created and removed), since permission bits do not tell
    the whole story (root, read-only mounts, ACLs)."""
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"--out {target}: {ancestor} is a file, not a folder; "
                                 "choose a path inside a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".ppl_gen-probe-", dir=ancestor)
    except OSError as error:
        raise PermissionError(f"--out {target} cannot be written ({ancestor}: "
                              f"{error.strerror or error}); choose a folder you can write "
                              "to") from None
    os.rmdir(probe)


def check_run_target(out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Check, before any work, that a run may be written to ``out``.

    A new or empty folder is fine; a folder holding an earlier ppl_gen run only with
    ``overwrite``; a non-empty folder that is *not* a ppl_gen run never (its files are
    the user's, and ``--overwrite`` does not license deleting them). The location must be
    writable. Leftover staging folders of killed saves are cleaned up here.

    Returns:
        The target as an absolute path.
    """
    if not str(out).strip():
        raise ValueError("--out is empty; name a folder for the run, e.g. --out runs/my_fit")
    target = Path(out).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder; choose a folder "
                                 "path")
    if target.is_dir() and any(target.iterdir()):
        if not _is_run(target):
            raise ForeignFolderError(
                f"--out {out} is not empty and is not a ppl_gen run (it holds "
                f"{_listing(target)}); ppl_gen never writes into such a folder, even with "
                "--overwrite; choose a new or empty folder")
        if not overwrite:
            if run_status(target) == "partial":
                raise RunExistsError(f"{out} holds an interrupted run; continue it with "
                                     f"ppl-gen fit --resume {out}, or pass --overwrite to "
                                     "start afresh")
            raise RunExistsError(f"{out} already holds a run; choose another --out folder, "
                                 "or pass --overwrite to replace it")
    _check_writable(target)
    _remove_stale_stages(target)
    return target


def prepare_run_dir(out: str | os.PathLike[str], *, overwrite: bool = False,
                    create: bool = True) -> Path:
    """:func:`check_run_target`, then create the folder unless ``create=False``."""
    target = check_run_target(out, overwrite=overwrite)
    if create:
        target.mkdir(parents=True, exist_ok=True)
    return target


PARTIAL_RECORD = "cli.json"


def partial_run_dir(out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Where an interrupted fit keeps its resume checkpoint: ``out`` itself when it is new,
    empty or an earlier partial run; a hidden sibling ``.NAME.resume`` when ``out`` holds a
    complete run being replaced (``overwrite``), which stays untouched until the new run
    is complete. Checks only; :func:`make_partial_run` creates it."""
    target = check_run_target(out, overwrite=overwrite)
    if target.is_dir() and run_status(target) == "complete":
        return target.parent / f".{target.name}.resume"
    return target


def make_partial_run(folder: Path, record: dict[str, Any]) -> None:
    """Create ``folder`` as a partial run: the marker (status ``partial``) and
    ``cli.json``, what ``ppl-gen fit --resume`` needs to rebuild the fit."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o777 & ~_umask())
    write_json(folder / PARTIAL_RECORD, record)
    write_json(folder / RUN_MARKER, {"format": RUN_FORMAT, "version": CHECKPOINT_VERSION,
                                     "kind": "fit", "status": "partial"})


def read_partial_run(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``cli.json`` of a partial run folder, with a clear error for anything else."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--resume {folder}: no such folder")
    status = run_status(folder)
    if status == "complete":
        raise ValueError(f"--resume {folder}: this run is complete; there is nothing to "
                         "resume (load it with ppl_gen.io.load_run)")
    if status != "partial" or not (folder / PARTIAL_RECORD).exists():
        raise ValueError(f"--resume {folder} is not an interrupted ppl_gen run (no "
                         f"{PARTIAL_RECORD} or marker); pass the folder a fit was "
                         "interrupted in")
    if not (folder / "resume.pt").exists():
        raise ValueError(f"--resume {folder}: the run stopped before its first checkpoint; "
                         "start it again")
    try:
        return json.loads((folder / PARTIAL_RECORD).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{folder / PARTIAL_RECORD} is corrupt ({error})") from error


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def _commit(stage: Path, target: Path, overwrite: bool) -> None:
    """Put the complete ``stage`` folder at ``target``. A new or empty target is one
    rename. An earlier run is swapped out in one atomic exchange where the system offers
    it (else two renames, the old run kept until the new one is in place) and deleted only
    once the new run is in place: at no moment can a reader see a mix of the two."""
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        os.replace(stage, target)
        return
    if not (overwrite and _is_run(target)):  # changed since check_run_target
        raise RunExistsError(f"{target} was filled by someone else during the fit; the new "
                             f"run is kept in {stage}")
    if _exchange(stage, target):
        shutil.rmtree(stage, ignore_errors=True)  # stage now holds the old run
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-",
                                dir=target.parent))
    os.rmdir(old)
    os.replace(target, old)
    os.replace(stage, target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_run_dir(out: str | os.PathLike[str], *, overwrite: bool = False,
                   kind: str = "fit") -> Iterator[Path]:
    """Yield a fresh staging folder beside ``out``; on success mark it complete and move it
    to ``out`` whole (see :func:`_commit`). On any error, Ctrl-C included, the staging
    folder is removed and ``out`` is exactly as it was."""
    target = check_run_target(out, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-",
                                  dir=target.parent))
    os.chmod(stage, 0o777 & ~_umask())
    try:
        yield stage
        write_json(stage / RUN_MARKER, {"format": RUN_FORMAT, "version": CHECKPOINT_VERSION,
                                        "kind": kind, "status": "complete"})
        _commit(stage, target, overwrite)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


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


def _has_posterior(idata: Any) -> bool:
    from .diagnostics.convert import group_names  # ArviZ is loaded: idata exists

    return "posterior" in group_names(idata)


def save_run(out: str | os.PathLike[str], result: FitResult, *, summary: dict | None = None,
             idata: Any = None, extra_config: dict | None = None,
             figures: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write a run folder.

    Arguments:
        out: Folder to create (or an empty one, or an earlier run with ``overwrite``). The
            run is written to a staging folder beside it and moved into place only when
            complete, so ``out`` never holds a partial run or a mix of two runs.
        result: What ``fit`` returned.
        summary: ``summarize(result)``; written as ``summary.json``.
        idata: ArviZ InferenceData; written as ``posterior.nc`` when it has a posterior.
        extra_config: Merged into ``config.json`` (model and dataset names, CLI options).
        figures: name -> matplotlib Figure, written as ``name.png``.
        overwrite: Replace an earlier run in ``out`` — the whole folder, not file by file.

    Returns:
        The folder path (absolute).
    """
    from .config import config_to_dict
    from .plots import save_figure

    with staged_run_dir(out, overwrite=overwrite) as stage:
        atomic_write(stage / "checkpoint.pt", lambda tmp: torch.save(_checkpoint(result), tmp))
        write_json(stage / "history.json", result.history)
        if summary is not None:
            write_json(stage / "summary.json", summary)
        if idata is not None and _has_posterior(idata):
            atomic_write(stage / "posterior.nc",
                         lambda tmp: idata.to_netcdf(tmp, engine="h5netcdf"))
        for name, fig in (figures or {}).items():
            save_figure(fig, stage / f"{name}.png")
        config = {"engine": result.engine, "model": result.problem.name, "seed": result.seed,
                  "engine_config": config_to_dict(result.config),
                  "device": str(result.problem.device), **(extra_config or {})}
        write_json(stage / _RUN_MARKER, config)
    return Path(out).expanduser().absolute()


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
    if out.is_dir() and run_status(out) == "partial":
        raise ValueError(f"{out} holds an interrupted run, not a complete one; finish it "
                         f"with ppl-gen fit --resume {out}")
    if not out.is_dir() or not (out / _RUN_MARKER).exists() or not _is_run(out):
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

        try:
            run["idata"] = read_netcdf(out / "posterior.nc")
        except Exception as error:  # h5py/xarray raise many types for a damaged file
            raise ValueError(f"{out / 'posterior.nc'} is corrupt or truncated "
                             f"({type(error).__name__}); re-run the fit to recreate it"
                             ) from error
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
