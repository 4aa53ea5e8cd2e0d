"""Serve MathJax from the built site itself, so that a page renders its math with no network.

The MathJax 3 files come from the ``sphinx-mathjax-offline`` package (a dependency of the ``docs`` extra); this
extension copies it into ``_static/mathjax`` after a build, and,
unlike that package's own extension, declares itself safe for parallel builds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util.fileutil import copy_asset


def _mathjax_dir() -> Path:
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("MathJax for offline use is missing: pip install sphinx-mathjax-offline")
    return Path(spec.origin).parent / "static" / "mathjax"


def _copy(app: Sphinx, exc: Exception | None) -> None:
    if exc is None and app.builder.format == "html":
        copy_asset(str(_mathjax_dir()), str(Path(app.outdir) / "_static" / "mathjax"))


def setup(app: Sphinx) -> dict[str, Any]:
    _mathjax_dir()  # fail at once, not after a long build, if the files are missing
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
