"""Sphinx configuration of the softmaxkit site: tutorials (MyST notebooks executed at build) + the API reference.

Build with ``python -m sphinx -W --keep-going -n docs docs/_build/html`` (warnings are errors, cross-references
are checked). Nothing is fetched from the network, at build time or when a page is viewed: there is no
intersphinx, and MathJax is served from the site itself (``_ext/offline_mathjax.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
# the library documented is the one next to this folder, not whatever is installed
sys.path.insert(0, str(HERE.parent / "src"))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"), os.environ.get("PYTHONPATH")]))
# the notebooks' kernels inherit this: figures are shown inline as PNGs, whatever MPLBACKEND the caller had set
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

import softmaxkit  # noqa: E402

project = "softmaxkit"
author = "the softmaxkit developers"
copyright = "the softmaxkit developers"
release = version = softmaxkit.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
    "sphinxarg.ext",
    "offline_mathjax",
    "special_values",
    "apigen",
]

root_doc = "index"
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "README.md"]
templates_path = ["_templates"]
nitpicky = True
suppress_warnings: list[str] = []

# ---- the API reference -----------------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types, in words
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
# Targets outside this project that no inventory resolves: the build has no network, so intersphinx cannot
# fetch numpy's, torch's or JAX's inventories. Only names of other libraries are ignored here.
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|torch|jax|jnp|scipy|sklearn|matplotlib|argparse|collections|typing|types)\..*"),
]

# ---- MyST and the notebooks ------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "force"  # every number and plot is computed by the library during the build
nb_execution_timeout = 240
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_kernel_rgx_aliases = {".*": "python3"}

# ---- HTML ------------------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "softmaxkit"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_static_path: list[str] = []
html_show_sourcelink = True
mathjax_path = "mathjax/tex-chtml.js"  # served from _static/mathjax: see _ext/offline_mathjax.py
nb_render_markdown_format = "myst"  # a cell may print a Markdown table (IPython.display.Markdown)
