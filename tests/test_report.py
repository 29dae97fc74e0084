"""``ppl-gen report DIR``: one self-contained HTML file per run folder (issue 15).

Checked on the HTML itself (every plot inlined byte for byte, every warning shown, the
flagged cells are the ones over the thresholds, no address outside the file) and, where
Debian's chromium is installed (CI installs it), rendered headless: the screenshot is not
blank and the page logs nothing to its console.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from ppl_gen.cli import main
from ppl_gen.report import render_report, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.flagged: list[str] = []
        self.items: list[str] = []
        self.scripts = 0
        self._stack: list[tuple[str, dict]] = []
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("href", "src"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])
        if tag == "script":
            self.scripts += 1
        self._stack.append((tag, attrs))
        self._text = []

    def handle_data(self, data):
        self._text.append(data)

    def handle_endtag(self, tag):
        if not self._stack:
            return
        open_tag, attrs = self._stack.pop()
        if open_tag == "td" and attrs.get("class") == "flag":
            self.flagged.append("".join(self._text))
        if open_tag == "li":
            self.items.append("".join(self._text))


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def nuts_run(tmp_path_factory) -> Path:
    """A short NUTS run: too short to pass its checks, so the report has warnings."""
    out = tmp_path_factory.mktemp("report") / "nuts"
    with pytest.warns(Warning):
        assert main(["fit", "eight_schools", "--engine", "nuts", "--out", str(out),
                     "--device", "cpu", "--num-warmup", "30", "--num-samples", "30",
                     "--num-chains", "2", "--option", "jit_compile=true"]) == 0
    return out


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "cmp"
    assert main(["compare", "eight_schools", "--out", str(out), "--device", "cpu",
                 "--vi-steps", "60", "--num-warmup", "30", "--num-samples", "30",
                 "--num-chains", "2", "--mcmc-engine", "nuts", "--vi-draws", "100"]) == 0
    return out


def test_a_fit_report_shows_every_warning_plot_and_flag(nuts_run, capsys):
    assert main(["report", str(nuts_run)]) == 0
    assert f"wrote {nuts_run / 'report.html'}" in capsys.readouterr().out
    text = (nuts_run / "report.html").read_text()
    page = _parse(text)
    summary = json.loads((nuts_run / "summary.json").read_text())
    assert summary["warnings"], "the fixture's short run should fail a check"
    assert "This result may be unreliable" in text
    for warning in summary["warnings"]:
        assert any(warning in item for item in page.items), warning
    pngs = sorted(nuts_run.glob("*.png"))
    assert {"trace.png", "pair.png"} <= {p.name for p in pngs}
    assert len(page.images) == len(pngs)
    inlined = {base64.b64decode(src.split(",", 1)[1]) for src in page.images}
    assert inlined == {p.read_bytes() for p in pngs}  # byte for byte
    # every flagged cell is a value over its threshold, and every such value is flagged
    over = [row["r_hat"] for row in summary["parameters"].values() if row["r_hat"] > 1.01]
    over += [row[k] for row in summary["parameters"].values() for k in ("ess_bulk",
                                                                        "ess_tail")
             if row[k] < 100]
    assert len(page.flagged) == len(over)
    for name in summary["parameters"]:
        assert f">{name}<" in text
    assert page.scripts == 0 and page.links == []
    assert not re.search(r"https?://", text)  # nothing outside the file


def test_a_comparison_report_names_each_approximation(compare_run):
    target = write_report(compare_run)
    text = target.read_text()
    comparison = json.loads((compare_run / "comparison.json").read_text())
    for name, values in comparison["approximations"].items():
        assert f">{name}<" in text
        assert f"{values['khat']:.4g}" in text
    for warning in comparison["mcmc"]["warnings"]:
        assert html.escape(warning) in text
    assert len(_parse(text).images) == 1  # comparison.png


def test_a_clean_run_says_so(tmp_path):
    out = tmp_path / "em"
    assert main(["fit", "gmm", "--engine", "em", "--out", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "summary.json").read_text())["warnings"] == []
    text = render_report(out)
    assert "Every check passed" in text and "may be unreliable" not in text


def _render(html_path: Path, tmp_path: Path) -> tuple[np.ndarray, list[str]]:
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,2000",
         f"--screenshot={shot}", html_path.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import matplotlib.image

    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return matplotlib.image.imread(str(shot))[..., :3], console


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install "
                    "chromium); CI installs it")
def test_the_report_renders_in_headless_chromium(nuts_run, tmp_path):
    target = write_report(nuts_run)
    pixels, console = _render(target, tmp_path)
    assert console == []
    ink = (pixels.min(axis=-1) < 0.9).mean()
    assert ink > 0.02, f"only {ink:.1%} of the screenshot is not white"
    # the red warning box (#fdecea) is drawn near the top
    top = pixels[:400].reshape(-1, 3)
    assert (np.abs(top - np.array([0xfd, 0xec, 0xea]) / 255).max(axis=1) < 0.02).mean() > 0.01
    # the console check has power: a page that fetches from the network is caught
    bad = tmp_path / "bad.html"
    bad.write_text(target.read_text().replace("</body>",
                                              '<img src="http://example.invalid/x.png">'
                                              "</body>"))
    _, console = _render(bad, tmp_path)
    assert any("example.invalid" in line for line in console)


def test_bad_folders_are_refused_and_left_as_they_were(nuts_run, tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / ".ppl_gen_run.json").write_text(json.dumps(
        {"format": "ppl_gen-run", "status": "partial", "kind": "fit"}))
    damaged = tmp_path / "damaged"
    shutil.copytree(nuts_run, damaged)
    (damaged / "report.html").unlink(missing_ok=True)
    (damaged / "summary.json").write_text("{not json")
    cases = [(tmp_path / "missing", "is not a folder"),
             (plain, "is not a ppl_gen run folder"),
             (partial, "ppl-gen fit --resume"),
             (damaged, "summary.json cannot be read as JSON")]
    for folder, message in cases:
        before = _digest(folder) if folder.exists() else None
        assert main(["report", str(folder)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert (_digest(folder) if folder.exists() else None) == before


def test_a_users_own_file_is_never_overwritten(nuts_run, tmp_path, capsys):
    mine = tmp_path / "report.html"
    mine.write_text("<p>my notes</p>")
    assert main(["report", str(nuts_run), "--out", str(mine)]) == 2
    assert "is not a ppl_gen report" in capsys.readouterr().err
    assert mine.read_text() == "<p>my notes</p>"
    assert main(["report", str(nuts_run), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["report", str(nuts_run), "--out", str(tmp_path / "no" / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(nuts_run), "--out", str(mine), "--overwrite"]) == 0
    assert "ppl_gen report" in mine.read_text()
    assert main(["report", str(nuts_run), "--out", str(mine)]) == 0  # ours: replaced
