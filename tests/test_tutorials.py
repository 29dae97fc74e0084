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
