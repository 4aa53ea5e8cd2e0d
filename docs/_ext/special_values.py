"""Render the "Special values" section of softmaxkit's docstrings.

The docstrings follow numpydoc plus one section of their own, ``Special values`` (a table of what each special
input gives: ``-inf``, ``nan``, masked rows, empty axes...). numpydoc knows only its standard sections and drops
any other with a warning, so this extension makes the section known to numpydoc's parser, takes it out before
numpydoc renders the docstring and puts it back, under a rubric of its own, before the Examples numpydoc wrote.
"""

from __future__ import annotations

import re
from typing import Any

from numpydoc.docscrape import NumpyDocString
from sphinx.application import Sphinx

_TITLE = "Special values"
_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
_taken: dict[tuple[str, str], list[str]] = {}


def _take(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    for i in range(len(lines) - 1):
        if lines[i].strip().lower() == _TITLE.lower() and _UNDERLINE.match(lines[i + 1]):
            end = i + 2
            while end < len(lines) and not (
                end + 1 < len(lines) and lines[end].strip() and _UNDERLINE.match(lines[end + 1])
            ):
                end += 1
            body = lines[i + 2 : end]
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            body = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in body]
            _taken[(what, name)] = body
            lines[i:end] = [""]  # numpydoc finds a section only after a blank line
            return


def _put_back(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    body = _taken.pop((what, name), None)
    if body is None:
        return
    block = ["", f".. rubric:: {_TITLE}", "", *body, ""]
    for i, line in enumerate(lines):
        if line.strip() == ".. rubric:: Examples":
            lines[i:i] = block
            return
    lines.extend(block)


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("numpydoc")
    # known to numpydoc's parser (which otherwise warns wherever it parses a docstring, signatures included);
    # its renderer still ignores the section, which is why the hooks below carry it over
    NumpyDocString.sections.setdefault("Special Values", [])
    app.connect("autodoc-process-docstring", _take, priority=100)  # before numpydoc (500)
    app.connect("autodoc-process-docstring", _put_back, priority=900)  # after it
    return {"parallel_read_safe": True, "parallel_write_safe": True}
