"""Run the tutorials in full mode, cell by cell, and record their outputs for the docs site.

    python docs/execute_tutorials.py                 # every tutorial
    python docs/execute_tutorials.py 03 05           # the ones whose names start so
    python docs/execute_tutorials.py --smoke 01      # PPL_GEN_SMOKE=1: a quick dry run,
                                                     # printed, nothing recorded

Each tutorial runs in a fresh process (its own imports, RNG and compile caches, as a reader's
run would), with one torch thread. Per code cell the record keeps the cell's SHA-256, what it
printed and the figures it saved; the run's date, commit, torch and Python versions and wall
time head the page. A tutorial that raises records nothing and the previous record stays: a
failed run never replaces good outputs. Records live in docs/tutorials/outputs/ and are
committed; the docs build only renders them (docs/_tutorials.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
from _tutorials import OUTPUTS, cells, code_digest  # noqa: E402


class _Tee(io.TextIOBase):
    """Writes to the captured buffer and echoes to the terminal (progress for the user)."""

    def __init__(self, echo):
        self.buffer_ = io.StringIO()
        self.echo = echo

    def write(self, text):
        self.buffer_.write(text)
        self.echo.write(text)
        self.echo.flush()
        return len(text)

    def flush(self):
        self.echo.flush()


def _pngs(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}


def run_one(path: Path, smoke: bool) -> dict:
    """Execute one tutorial here (in this process) and return its record."""
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix=f"tutorial-{path.stem}-"))
    os.environ["PPL_GEN_TUTORIAL_OUT"] = str(work)
    os.environ["MPLBACKEND"] = "Agg"
    if smoke:
        os.environ["PPL_GEN_SMOKE"] = "1"
    else:
        os.environ.pop("PPL_GEN_SMOKE", None)
    os.chdir(work)
    namespace = {"__name__": "__main__", "__file__": str(path)}
    record_cells = []
    start = time.perf_counter()
    for index, (kind, source) in enumerate(cells(path.read_text())):
        if kind != "code":
            continue
        before = _pngs(work)
        tee = _Tee(sys.__stdout__)
        cell_start = time.perf_counter()
        with contextlib.redirect_stdout(tee):
            exec(compile(source, f"{path.name} (cell {index})", "exec"), namespace)
        after = _pngs(work)
        images = sorted(name for name, mtime in after.items() if before.get(name) != mtime)
        record_cells.append({"code_sha256": code_digest(source),
                             "stdout": tee.buffer_.getvalue(), "images": images,
                             "seconds": round(time.perf_counter() - cell_start, 2)})
    seconds = time.perf_counter() - start
    try:
        commit = subprocess.run(["git", "-C", str(DOCS), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(DOCS), "status", "--porcelain", "--",
                                "../ppl_gen", str(path)], capture_output=True, text=True,
                               check=True).stdout.strip()
        if dirty:
            commit += " plus uncommitted changes"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"tutorial": path.name, "source_sha256": code_digest(path.read_text()),
            "executed": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "commit": commit,
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "seconds": round(seconds, 1),
            "work": str(work), "cells": record_cells}


def save(record: dict, docs: Path = DOCS) -> Path:
    """Write one record and its figures, replacing the previous ones only when complete."""
    stem = Path(record["tutorial"]).stem
    outputs = docs / OUTPUTS
    outputs.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=outputs))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would not be what the user's umask gives
    work = Path(record.pop("work"))
    for cell in record["cells"]:
        for image in cell["images"]:
            shutil.copy2(work / image, staging / image)
    final = outputs / stem
    old = outputs / f".{stem}-old"
    if final.exists():
        final.rename(old)
    staging.rename(final)
    (outputs / f"{stem}.json.tmp").write_text(json.dumps(record, indent=1) + "\n")
    (outputs / f"{stem}.json.tmp").replace(outputs / f"{stem}.json")
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return outputs / f"{stem}.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="prefixes of the tutorials to run")
    parser.add_argument("--smoke", action="store_true",
                        help="PPL_GEN_SMOKE=1 budgets; prints, records nothing")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one tutorial in this fresh process; its record goes to a file
        record = run_one(Path(args.child[0]), args.smoke)
        Path(args.child[1]).write_text(json.dumps(record))
        return 0
    every = sorted((DOCS / "tutorials").glob("[0-9]*.py"))
    paths = every
    if args.names:
        paths = [p for p in every if any(p.name.startswith(n) for n in args.names)]
        if not paths:
            parser.error(f"no tutorial starts with {args.names}; the tutorials are "
                         + ", ".join(p.name for p in every))
    failed = []
    for path in paths:
        print(f"=== {path.name} ({'smoke' if args.smoke else 'full'} mode)", flush=True)
        handle, record_file = tempfile.mkstemp(suffix=".json")
        os.close(handle)
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(path),
                   record_file]
        if args.smoke:
            command.append("--smoke")
        proc = subprocess.run(command)
        tail = Path(record_file).read_text()
        Path(record_file).unlink()
        if proc.returncode != 0 or not tail:
            failed.append(path.name)
            print(f"=== {path.name} FAILED (exit {proc.returncode}); its previous outputs "
                  "are kept", flush=True)
            continue
        record = json.loads(tail)
        if args.smoke:
            shutil.rmtree(record["work"], ignore_errors=True)
            print(f"=== {path.name}: smoke run passed in {record['seconds']:.0f} s "
                  "(nothing recorded)", flush=True)
            continue
        where = save(record)
        print(f"=== {path.name}: {record['seconds']:.0f} s, recorded in "
              f"{where.relative_to(DOCS.parent)}", flush=True)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
