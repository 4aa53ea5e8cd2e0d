"""Write the API reference pages from the packages' ``__all__`` lists, so that the reference follows the public
surface by itself: a name added to (or dropped from) an ``__all__`` appears on (or leaves) its page at the next
build, with no page to edit.

Each namespace in :data:`NAMESPACES` gets one page under ``api/generated/``: the module's docstring, then its
public names in ``autosummary`` tables (one stub page per name, from the docstring), grouped by the module that
defines them. An object is documented once, under the first namespace that exports it; a later namespace that
re-exports it lists it with a link to that entry. Public modules that hold names not exported at the top level
(the derivatives ``*_jvp``, ``*_vjp``, ``*_jacobian`` live in their own modules) are walked too.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config

#: (module, page name, title): the pages of the reference, in this order.
NAMESPACES = (
    ("softmaxkit", "numpy", "NumPy and array-API functions: ``softmaxkit``"),
    ("softmaxkit.layers", "layers", "The registry of output layers: ``softmaxkit.layers``"),
    ("softmaxkit.calibration", "calibration", "Calibration: ``softmaxkit.calibration``"),
    ("softmaxkit.classifier", "classifier", "The classifier: ``softmaxkit.classifier``"),
    ("softmaxkit.torch", "torch", "PyTorch: ``softmaxkit.torch``"),
    ("softmaxkit.jax", "jax", "JAX: ``softmaxkit.jax``"),
)

#: modules walked for public names that ``softmaxkit.__all__`` does not re-export (shown on the NumPy page)
SUBMODULE_ROOTS = ("softmaxkit.softmax", "softmaxkit.cross_entropy", "softmaxkit.family")

#: the order of the groups on a page (modules not listed come after, alphabetically)
GROUP_ORDER = (
    "softmaxkit.softmax",
    "softmaxkit.cross_entropy",
    "softmaxkit.family.sigmoid",
    "softmaxkit.family.normalize",
    "softmaxkit.family.softplus_normalize",
    "softmaxkit.family.taylor",
    "softmaxkit.family.spherical",
    "softmaxkit.family.sparsemax",
    "softmaxkit.family.entmax",
    "softmaxkit.family.entmax_bisect",
    "softmaxkit.family.hinge",
    "softmaxkit.layers",
    "softmaxkit.classifier",
)

GENERATED = "api/generated"


def public_names(module: types.ModuleType) -> list[str]:
    """The names a module exports: its ``__all__`` (every public module of softmaxkit has one)."""
    names = getattr(module, "__all__", None)
    if names is None:
        raise RuntimeError(f"{module.__name__} has no __all__: the reference is generated from it")
    return list(names)


def _defining_module(obj: Any, fallback: str) -> str:
    name = getattr(obj, "__module__", None)
    if isinstance(obj, types.ModuleType) or not isinstance(name, str) or not name.startswith("softmaxkit"):
        return fallback
    return name


def _group_key(module: str) -> tuple[int, str]:
    return (GROUP_ORDER.index(module) if module in GROUP_ORDER else len(GROUP_ORDER), module)


def _split_title(line: str) -> str:
    """The part of a docstring's first line before its first ``": "`` outside inline markup."""
    depth = 0
    for i, ch in enumerate(line):
        if ch == "`":
            depth ^= 1
        elif depth == 0 and line.startswith(": ", i):
            return line[:i]
    return line.rstrip(".")


def _first_line(module: str) -> str:
    doc = inspect.getdoc(importlib.import_module(module)) or module
    return doc.strip().splitlines()[0]


def _underline(text: str, char: str) -> str:
    return f"{text}\n{char * max(len(text), 4)}\n"


def _submodules() -> list[types.ModuleType]:
    found: list[types.ModuleType] = []
    for root in SUBMODULE_ROOTS:
        module = importlib.import_module(root)
        found.append(module)
        if hasattr(module, "__path__"):
            for info in pkgutil.iter_modules(module.__path__, root + "."):
                if not info.name.rsplit(".", 1)[1].startswith("_"):
                    found.append(importlib.import_module(info.name))
    return found


def documented_entries() -> dict[str, list[tuple[str, str, Any, bool]]]:
    """page -> [(documented full name, exported name, object, is_alias)]: each object is documented once over all
    pages; a module that re-exports an object documented earlier lists it as an alias (with its full exported
    name), a target that links to the entry."""
    seen: dict[tuple[int, str], str] = {}
    pages: dict[str, list[tuple[str, str, Any, bool]]] = {}
    sources: list[tuple[str, types.ModuleType]] = []
    # an object is documented in the most specific namespace that exports it (``softmaxkit.layers.OUTPUT_LAYERS``,
    # which the docstrings cite), and the top level, which re-exports it, links there
    for modname, page, _ in sorted(NAMESPACES, key=lambda item: item[0] == "softmaxkit"):
        sources.append((page, importlib.import_module(modname)))
        if modname == "softmaxkit":
            sources.extend(("numpy", sub) for sub in _submodules())
    for page, module in sources:
        entries = pages.setdefault(page, [])
        for name in public_names(module):
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType):
                continue  # a subpackage in __all__: it has its own page
            full = f"{module.__name__}.{name}"
            # a constant (a number, a tuple of names) is the same entry only under the same name: equal small
            # values may be one object in CPython
            key = (id(obj), name if isinstance(obj, (str, int, float, tuple)) else "")
            if key in seen:
                if seen[key] != full:
                    entries.append((seen[key], f"{module.__name__}.{name}", obj, True))
                continue
            seen[key] = full
            entries.append((full, name, obj, False))
    return pages


def _kind(obj: Any) -> str:
    """The directive that documents ``obj``."""
    return "class" if inspect.isclass(obj) else "function" if callable(obj) else "data"


def _page(modname: str, title: str, entries: list[tuple[str, str, Any, bool]]) -> str:
    out = [f".. This page is written by docs/_ext/apigen.py from {modname}.__all__ at each build: do not edit.\n"]
    out.append(_underline(title, "="))
    out.append(f".. automodule:: {modname}\n   :no-members:\n")
    groups: dict[str, list[str]] = {}
    for full, _name, obj, alias in entries:
        if not alias:
            groups.setdefault(_defining_module(obj, full.rsplit(".", 1)[0]), []).append(full)
    for group in sorted(groups, key=_group_key):
        line = _first_line(group)
        title = _split_title(line)
        out.append(_underline(title, "-"))
        out.append(f"{line} (``{group}``)\n" if title != line.rstrip(".") else f"From ``{group}``.\n")
        out.append(".. autosummary::\n   :toctree: .\n   :nosignatures:\n")
        # relative to the module that automodule made current (autosummary warns about the full name)
        out.extend(f"   {full.removeprefix(modname + '.')}" for full in groups[group])
        out.append("")
    return "\n".join(out)


def _aliases_page(pages: dict[str, list[tuple[str, str, Any, bool]]]) -> str:
    """Every other import path of a documented object, as a target that links to its entry."""
    out = [".. This page is written by docs/_ext/apigen.py from the __all__ lists at each build: do not edit.\n"]
    out.append(_underline("Other import paths", "="))
    out.append(
        "Public modules re-export some names: the top level re-exports the registry, the modules of "
        "``softmaxkit.family`` are re-exported by the package, and so on. Each such path is the same object as "
        "the entry it links to.\n"
    )
    aliases = sorted(
        {
            (*exported.rsplit(".", 1), full, _kind(obj))
            for entries in pages.values()
            for full, exported, obj, a in entries
            if a
        }
    )
    module = None
    for owner, name, full, kind in aliases:
        if owner != module:
            module = owner
            out.append(_underline(f"``{owner}``", "-"))
        out.append(f".. py:{kind}:: {name}\n   :module: {owner}\n   :no-index-entry:\n   :no-contents-entry:\n")
        role = {"class": "class", "function": "func", "data": "data"}[kind]
        out.append(f"   Same object as :py:{role}:`{full}`.\n")
    return "\n".join(out)


def _write(path: Path, text: str) -> None:
    # leave an unchanged page untouched, so that Sphinx does not rebuild it
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def generate(app: Sphinx, config: Config) -> None:
    outdir = Path(app.srcdir) / GENERATED
    outdir.mkdir(parents=True, exist_ok=True)
    pages = documented_entries()
    for modname, page, title in NAMESPACES:
        _write(outdir / f"{page}.rst", _page(modname, title, pages[page]))
    _write(outdir / "aliases.rst", _aliases_page(pages))


def _skip_foreign(app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """Skip methods that another library put into our classes (scikit-learn's generated ``set_*_request``)."""
    module = getattr(obj, "__module__", None)
    if what == "class" and callable(obj) and isinstance(module, str) and not module.startswith("softmaxkit"):
        return True
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", generate)
    app.connect("autodoc-skip-member", _skip_foreign)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


__all__ = ["documented_entries", "public_names", "setup"]
