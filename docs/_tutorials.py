"""The tutorials (jupytext percent notebooks, docs/tutorials/*.py) as pages of the docs site,
with the outputs of their last full run.

``python docs/execute_tutorials.py`` runs each tutorial cell by cell in full mode and records
what each code cell printed and the figures it saved (``docs/tutorials/outputs/``: one JSON
record per tutorial, PNGs beside it). The docs build never executes a tutorial: it renders
markdown cells as text, code cells as Python blocks and, under each code cell, the output
recorded for exactly that cell's code (matched by its SHA-256). A cell whose code changed
since the recording is shown without output and says so — a page never shows an output that
its code did not produce.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

#: Where the recorded outputs live, relative to docs/.
OUTPUTS = Path("tutorials") / "outputs"


def cells(text: str) -> list[tuple[str, str]]:
    """A percent-format notebook's cells as (kind, source) pairs, kind "markdown" or
    "code"; the jupytext header and blank edge lines dropped, empty cells skipped."""
    lines = text.splitlines()
    if lines and lines[0] == "# ---":  # the jupytext header ends at the next "# ---"
        end = lines.index("# ---", 1)
        lines = lines[end + 1:]
    raw: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("# %%"):
            raw.append(("markdown" if "[markdown]" in line else "code", []))
        elif raw:
            raw[-1][1].append(line)
    out = []
    for kind, body in raw:
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        if body:
            out.append((kind, "\n".join(body)))
    return out


def code_digest(source: str) -> str:
    """The SHA-256 a recorded output is matched by."""
    return hashlib.sha256(source.encode()).hexdigest()


def load_record(docs: Path, stem: str) -> dict | None:
    path = docs / OUTPUTS / f"{stem}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fence(text: str, lang: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text}\n{ticks}"


def percent_to_markdown(text: str, record: dict | None = None,
                        image_prefix: str = "") -> str:
    """A percent-format notebook as Markdown; with ``record`` (an execute_tutorials
    record), each code cell is followed by the output recorded for its exact code."""
    recorded = {c["code_sha256"]: c for c in (record or {}).get("cells", [])}
    out = []
    stale = 0
    for kind, body in cells(text):
        if kind == "markdown":
            out.append("\n".join(x[2:] if x.startswith("# ") else x.lstrip("#")
                                 for x in body.splitlines()))
            continue
        out.append(_fence(body, "python"))
        if record is None:
            continue
        cell = recorded.get(code_digest(body))
        if cell is None:
            stale += 1
            out.append("*(This cell changed since the outputs were recorded: run "
                       "`python docs/execute_tutorials.py` to record them again.)*")
            continue
        if cell["stdout"].strip():
            out.append(_fence(cell["stdout"].rstrip("\n"), "text"))
        for image in cell["images"]:
            out.append(f"![{image}]({image_prefix}{image})")
    if record is not None:
        when = (f"Outputs recorded by a full run (`python docs/execute_tutorials.py`) on "
                f"{record['executed']} at commit `{record['commit']}`: torch "
                f"{record['torch']}, Python {record['python']}, "
                f"{record['seconds']:.0f} s on {record['threads']} CPU thread(s).")
        if stale:
            when += f" {stale} cell(s) changed since then and are shown without output."
        title, _, rest = out[0].partition("\n")
        out[0] = title + "\n\n" + "*" + when + "*" + ("\n" + rest if rest else "")
    return "\n\n".join(out) + "\n"


def render_tutorials(docs: Path) -> None:
    target = docs / "_generated"
    target.mkdir(exist_ok=True)
    names = []
    for path in sorted((docs / "tutorials").glob("[0-9]*.py")):
        page = target / f"{path.stem}.md"
        record = load_record(docs, path.stem)
        prefix = f"../{OUTPUTS.as_posix()}/{path.stem}/"
        text = percent_to_markdown(path.read_text(), record, prefix)
        text += (f"\n---\n\nThe notebook itself: `docs/tutorials/{path.name}` (run it, or "
                 "open it in Jupyter with jupytext).\n")
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
        names.append(page.stem)
    index = "# Tutorials\n\n```{toctree}\n:maxdepth: 1\n\n" + "\n".join(names) + "\n```\n"
    path = target / "tutorials.md"
    if not path.exists() or path.read_text() != index:
        path.write_text(index)
