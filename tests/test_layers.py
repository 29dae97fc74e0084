"""The package's layers read one way: traces <- models <- inference <- diagnostics (and
the CLI, io and plots on top). A lower layer importing a higher one — even lazily, inside
a function — is the hidden cycle issue 11 found (models importing inference)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ppl_gen

ROOT = Path(ppl_gen.__file__).parent
LAYERS = ["traces", "nn", "data", "models", "inference", "diagnostics"]
ALLOWED_UPWARD = {
    # fit attaches convergence checks to every sampler result; checks.py needs only numpy
    # and ArviZ, so this is a call into a leaf, not a cycle.
    ("inference/__init__.py", "diagnostics.checks"),
    # ... and the VI reliability report (PSIS k-hat, corrected summaries) to every SVI
    # result; imported when fit returns, after both layers have loaded: no cycle.
    ("inference/__init__.py", "diagnostics.vi"),
    # Pathfinder resamples its draws with ArviZ's PSIS (convert.py is the only ArviZ
    # import); imported when a fit finishes.
    ("inference/pathfinder.py", "diagnostics.convert"),
}


def _imports(path: Path) -> list[str]:
    """ppl_gen modules ``path`` imports (module level and inside functions)."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(ROOT).parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
                if not module.startswith("ppl_gen"):
                    continue
                module = module.removeprefix("ppl_gen").lstrip(".")
            found.append(module)
        elif isinstance(node, ast.Import):
            found += [a.name.removeprefix("ppl_gen.") for a in node.names
                      if a.name.startswith("ppl_gen.")]
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_a_higher_one(layer):
    higher = LAYERS[LAYERS.index(layer) + 1:] + ["cli", "io", "plots", "report"]
    offenders = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        for module in _imports(path):
            top = module.split(".")[0]
            if top in higher and (relative, module) not in ALLOWED_UPWARD:
                offenders.append(f"{relative} imports {module}")
    assert not offenders, "\n".join(offenders)
