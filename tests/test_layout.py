"""The package's layout rules, checked on its source: no module reaches into another module's private names.

What two modules share lives in a private module (``_engine``, ``_validate``, ``_array``, ...) under a name
without a leading underscore; importing a private *module* and using its public names is fine, importing or
reading another module's ``_name`` is not (STYLE.md, "one direction of flow, one place per idea").
"""

from __future__ import annotations

import ast
from pathlib import Path

import softmaxkit

PACKAGE = Path(softmaxkit.__file__).parent

# Crossings left on purpose while other work fixes them; each entry must still exist, so that the list only
# shrinks (see test_known_crossings_still_exist).
KNOWN: set[str] = set()


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    root = PACKAGE / rel
    return root.with_suffix(".py").is_file() or (root / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def crossings() -> list[str]:
    """Every ``from .x import _y`` (``_y`` not a module) and ``x._y`` (``x`` a module of the package)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        current = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules: set[str] = set()  # local names bound to modules of the package
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                source = _resolve(current, path.name == "__init__.py", node.level, node.module)
                for alias in node.names:
                    local = alias.asname or alias.name
                    if _is_module(f"{source}.{alias.name}"):
                        modules.add(local)
                    elif _private(alias.name):
                        found.append(f"{current}: from {source} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("softmaxkit"):
                        modules.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and _private(node.attr)
                and not _is_module(_resolve(current, path.name == "__init__.py", 1, f"{node.value.id}.{node.attr}"))
            ):
                found.append(f"{current}: {node.value.id}.{node.attr}")
    return sorted(set(found))


def test_no_module_imports_another_modules_private_names() -> None:
    unexpected = [c for c in crossings() if c not in KNOWN]
    assert not unexpected, "private names crossing module borders:\n" + "\n".join(unexpected)


def test_known_crossings_still_exist() -> None:
    gone = KNOWN - set(crossings())
    assert not gone, "fixed, remove from KNOWN:\n" + "\n".join(sorted(gone))
