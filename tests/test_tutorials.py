"""Every tutorial in docs/tutorials runs top to bottom in smoke mode (issue 15; in the
slow leg that CI runs: together they take ~70 s).

The tutorials are jupytext "percent" notebooks: plain Python files that Jupyter opens as
notebooks (with jupytext) and that run as scripts. ``PPL_GEN_SMOKE=1`` shrinks every
budget; the full run is what the tutorial's text describes.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

TUTORIALS_DIR = Path(__file__).resolve().parents[1] / "docs" / "tutorials"
TUTORIALS = ["01_coin_flips_to_nade.py", "02_em_against_the_closed_form.py",
             "03_vae_bounds_and_the_amortization_gap.py", "04_when_to_trust_vi.py",
             "05_gans_and_diffusion.py"]


def test_every_tutorial_is_listed_and_is_a_percent_notebook():
    assert {p.name for p in TUTORIALS_DIR.glob("[0-9]*.py")} == set(TUTORIALS)
    for name in TUTORIALS:
        text = (TUTORIALS_DIR / name).read_text()
        assert text.startswith("# ---\n# jupyter:") and "formats: py:percent" in text
        assert text.count("# %% [markdown]") >= 3 and text.count("\n# %%\n") >= 3


def test_the_docs_site_renders_each_tutorial_as_markdown():
    import sys

    sys.path.insert(0, str(TUTORIALS_DIR.parent))
    try:
        from _tutorials import percent_to_markdown
    finally:
        sys.path.pop(0)
    for name in TUTORIALS:
        text = (TUTORIALS_DIR / name).read_text()
        page = percent_to_markdown(text)
        assert not any(line.startswith("# %%") for line in page.splitlines())
        assert "formats: py:percent" not in page  # the jupytext header is dropped
        assert page.startswith("# ") and page.count("```python") == text.count("\n# %%\n")


@pytest.mark.slow  # ~70 s together: CI runs them (pytest -m slow), the default suite not
@pytest.mark.examples
@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_runs_in_smoke_mode(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PPL_GEN_SMOKE", "1")
    monkeypatch.setenv("PPL_GEN_TUTORIAL_OUT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(TUTORIALS_DIR / name), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), "a tutorial prints what it computes"
    assert list(tmp_path.glob("*.png")), "and draws its plots"


def _docs_module(name):
    import importlib
    import sys

    sys.path.insert(0, str(TUTORIALS_DIR.parent))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def test_every_tutorial_has_recorded_outputs_of_its_current_code():
    """The docs site shows each code cell's output from the last full run
    (docs/execute_tutorials.py). A tutorial edited without re-running it would show
    outputs its code did not produce: this fails first, naming the command."""
    tutorials = _docs_module("_tutorials")
    docs = TUTORIALS_DIR.parent
    for name in TUTORIALS:
        stem = name[:-3]
        record = tutorials.load_record(docs, stem)
        fix = f"run `python docs/execute_tutorials.py {stem[:2]}` and commit its outputs"
        assert record is not None, f"{name} has no recorded outputs: {fix}"
        code = [body for kind, body in tutorials.cells((TUTORIALS_DIR / name).read_text())
                if kind == "code"]
        recorded = [cell["code_sha256"] for cell in record["cells"]]
        assert recorded == [tutorials.code_digest(c) for c in code], \
            f"{name} changed since its outputs were recorded: {fix}"
        assert any(cell["stdout"].strip() for cell in record["cells"])
        for cell in record["cells"]:
            for image in cell["images"]:
                assert (docs / tutorials.OUTPUTS / stem / image).stat().st_size > 1000
        page = tutorials.percent_to_markdown((TUTORIALS_DIR / name).read_text(), record,
                                             "x/")
        assert "changed since the outputs were recorded" not in page
        assert page.count("```text") == sum(bool(c["stdout"].strip())
                                            for c in record["cells"])


def test_a_changed_cell_is_rendered_without_its_old_output():
    tutorials = _docs_module("_tutorials")
    text = ("# %% [markdown]\n# # Title\n\n# %%\nprint(1)\n\n# %%\nprint(2)\n")
    record = {"executed": "2026-12-02", "commit": "abc", "torch": "2", "python": "3",
              "seconds": 1.0, "threads": 1, "cells": [
                  {"code_sha256": tutorials.code_digest("print(1)"), "stdout": "1\n",
                   "images": ["a.png"]},
                  {"code_sha256": tutorials.code_digest("print(3)"), "stdout": "3\n",
                   "images": []}]}
    page = tutorials.percent_to_markdown(text, record, "img/")
    assert "```text\n1\n```" in page and "![a.png](img/a.png)" in page
    assert "3\n" not in page.replace("Python 3", "")  # the stale output is not shown
    assert page.count("changed since the outputs were recorded") == 1
    assert page.startswith("# Title\n\n*Outputs recorded") and "1 cell(s) changed" in page


def test_a_failing_tutorial_keeps_its_previous_outputs(tmp_path):
    """execute_tutorials.py on a tutorial that raises: exit 1, the error shown, and the
    outputs folder byte for byte as before."""
    import shutil
    import subprocess
    import sys

    docs = tmp_path / "docs"
    (docs / "tutorials" / "outputs" / "01_bad").mkdir(parents=True)
    for name in ("execute_tutorials.py", "_tutorials.py"):
        shutil.copy(TUTORIALS_DIR.parent / name, docs / name)
    (docs / "tutorials" / "01_bad.py").write_text(
        "# %%\nprint('before')\n\n# %%\nraise RuntimeError('broken cell')\n")
    (docs / "tutorials" / "outputs" / "01_bad.json").write_text('{"old": true}\n')
    (docs / "tutorials" / "outputs" / "01_bad" / "old.png").write_bytes(b"\x89PNG old")

    def snapshot():
        return {str(p.relative_to(docs)): p.read_bytes()
                for p in sorted((docs / "tutorials" / "outputs").rglob("*")) if p.is_file()}

    before = snapshot()
    proc = subprocess.run([sys.executable, str(docs / "execute_tutorials.py"), "01"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "broken cell" in proc.stderr and "previous outputs are kept" in proc.stdout
    assert snapshot() == before
    assert sorted(p.name for p in (docs / "tutorials" / "outputs").iterdir()) == \
        ["01_bad", "01_bad.json"]  # no staging folder left behind


def test_a_tutorial_run_records_each_cells_output_and_figures(tmp_path):
    import json
    import shutil
    import subprocess
    import sys

    docs = tmp_path / "docs"
    (docs / "tutorials").mkdir(parents=True)
    for name in ("execute_tutorials.py", "_tutorials.py"):
        shutil.copy(TUTORIALS_DIR.parent / name, docs / name)
    (docs / "tutorials" / "01_ok.py").write_text(
        "# %% [markdown]\n# # A title\n\n# %%\nimport os\nprint('smoke' if os.environ.get("
        "'PPL_GEN_SMOKE') else 'full')\n\n# %%\nimport matplotlib.pyplot as plt\n"
        "plt.plot([0, 1]); plt.savefig(os.path.join(os.environ['PPL_GEN_TUTORIAL_OUT'], "
        "'line.png'))\n")
    proc = subprocess.run([sys.executable, str(docs / "execute_tutorials.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((docs / "tutorials" / "outputs" / "01_ok.json").read_text())
    assert [c["stdout"] for c in record["cells"]] == ["full\n", ""]
    assert [c["images"] for c in record["cells"]] == [[], ["line.png"]]
    assert record["threads"] == 1 and record["seconds"] > 0
    png = docs / "tutorials" / "outputs" / "01_ok" / "line.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert (png.parent.stat().st_mode & 0o777) == 0o777 & ~_umask()


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_unknown_tutorial_name_is_refused_listing_the_tutorials(tmp_path):
    import subprocess
    import sys

    before = {p: p.stat().st_mtime_ns for p in (TUTORIALS_DIR / "outputs").rglob("*")}
    proc = subprocess.run([sys.executable, str(TUTORIALS_DIR.parent / "execute_tutorials.py"),
                           "99"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no tutorial starts with ['99']" in proc.stderr and TUTORIALS[0] in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in (TUTORIALS_DIR / "outputs").rglob("*")} == before
