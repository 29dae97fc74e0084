"""Sphinx configuration: the docs site (README, tutorials, API from the docstrings,
architecture, benchmarks). Built with warnings as errors:

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _tutorials import render_tutorials  # noqa: E402

import ppl_gen  # noqa: E402

project = "ppl_gen"
author = "the ppl_gen developers"
release = version = ppl_gen.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "tutorials/*.py", "README.md"]
html_theme = "alabaster"
html_static_path: list[str] = []
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields: dataclass members are not listed twice
napoleon_custom_sections = [("Arguments", "params_style")]
myst_heading_anchors = 3
# The README and the benchmark pages link to files of the repository (examples/,
# benchmarks/, ppl_gen/...), which are not pages of this site: those links stay as they
# are, every other warning fails the build.
suppress_warnings = ["myst.xref_missing"]


def setup(app):  # noqa: D103
    app.connect("builder-inited", lambda app: render_tutorials(HERE))
