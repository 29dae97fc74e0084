"""Render the jupytext percent tutorials (docs/tutorials/*.py) as Markdown pages for the
docs site: markdown cells become text, code cells Python blocks."""

from __future__ import annotations

from pathlib import Path


def percent_to_markdown(text: str) -> str:
    """A percent-format notebook as Markdown (the jupytext header dropped)."""
    lines = text.splitlines()
    if lines and lines[0] == "# ---":  # the jupytext header ends at the next "# ---"
        end = lines.index("# ---", 1)
        lines = lines[end + 1:]
    cells: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, body in cells:
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        if not body:
            continue
        if kind == "markdown":
            out.append("\n".join(x[2:] if x.startswith("# ") else x.lstrip("#")
                                 for x in body))
        else:
            out.append("```python\n" + "\n".join(body) + "\n```")
    return "\n\n".join(out) + "\n"


def render_tutorials(docs: Path) -> None:
    target = docs / "_generated"
    target.mkdir(exist_ok=True)
    names = []
    for path in sorted((docs / "tutorials").glob("[0-9]*.py")):
        page = target / f"{path.stem}.md"
        text = percent_to_markdown(path.read_text())
        text += (f"\n---\n\nThe notebook itself: `docs/tutorials/{path.name}` (run it, or "
                 "open it in Jupyter with jupytext).\n")
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
        names.append(page.stem)
    index = "# Tutorials\n\n```{toctree}\n:maxdepth: 1\n\n" + "\n".join(names) + "\n```\n"
    path = target / "tutorials.md"
    if not path.exists() or path.read_text() != index:
        path.write_text(index)
