"""The public surface: ``softmaxkit.__all__`` is the one list of top-level names, every public module's
``__all__`` names what it defines, and the README's table of public names is generated from them
(``python tests/test_public_api.py`` prints the table to paste between the README's markers)."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

import softmaxkit

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- public-names: start -->", "<!-- public-names: end -->"

# modules whose derivatives (jvp / vjp / jacobian) are public there and not at the top level
DERIVATIVE_MODULES = [
    "softmaxkit.softmax",
    "softmaxkit.family.entmax",
    "softmaxkit.family.entmax_bisect",
    "softmaxkit.family.normalize",
    "softmaxkit.family.sigmoid",
    "softmaxkit.family.softplus_normalize",
    "softmaxkit.family.sparsemax",
    "softmaxkit.family.spherical",
    "softmaxkit.family.taylor",
]
PUBLIC_MODULES = [
    *DERIVATIVE_MODULES,
    "softmaxkit",
    "softmaxkit.cross_entropy",
    "softmaxkit.family",
    "softmaxkit.family.hinge",
    "softmaxkit.layers",
    "softmaxkit.calibration",
]
DERIVATIVE = re.compile(r"_(jvp|vjp|jacobian)$")


def _group(name: str) -> str:
    if name.endswith("_value_and_grad"):
        return "loss and gradient"
    if name.endswith(("_loss", "cross_entropy")):
        return "losses"
    if name in {"OUTPUT_LAYERS", "OutputLayer", "get_output_layer", "register_output_layer"}:
        return "registry of output layers"
    if name in {"backend", "calibration", "SoftmaxClassifier", "__version__"}:
        return "engines, applications"
    return "mappings"


def table() -> str:
    """The README's table of public names, from ``softmaxkit.__all__`` and the modules' ``__all__``."""
    groups: dict[str, list[str]] = {}
    for name in softmaxkit.__all__:
        groups.setdefault(_group(name), []).append(name)
    rows = ["| where | names |", "|---|---|"]
    for group in ("mappings", "losses", "loss and gradient", "registry of output layers", "engines, applications"):
        rows.append(f"| `softmaxkit`: {group} | {', '.join(f'`{n}`' for n in groups.pop(group))} |")
    assert not groups, groups
    for module in DERIVATIVE_MODULES:
        names = [n for n in importlib.import_module(module).__all__ if DERIVATIVE.search(n)]
        rows.append(f"| `{module}`: derivatives | {', '.join(f'`{n}`' for n in names)} |")
    return "\n".join(rows)


def test_readme_table_of_public_names_is_generated_from_all() -> None:
    text = README.read_text(encoding="utf-8")
    assert START in text, f"README.md lacks the marker {START}"
    assert END in text, f"README.md lacks the marker {END}"
    block = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert block == table(), "README's table of public names is stale: run python tests/test_public_api.py"


def test_top_level_all_is_what_the_package_binds() -> None:
    bound = {
        name
        for name, value in vars(softmaxkit).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    lazy = {"SoftmaxClassifier"}  # imported on first use (needs scikit-learn)
    assert bound | lazy | {"__version__", "calibration"} == set(softmaxkit.__all__)
    assert len(softmaxkit.__all__) == len(set(softmaxkit.__all__))
    assert not [n for n in softmaxkit.__all__ if DERIVATIVE.search(n)], "derivatives live in their modules"


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_module_all_names_what_it_holds(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert len(names) == len(set(names))
    if module == "softmaxkit":
        names.remove("SoftmaxClassifier")
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing


@pytest.mark.parametrize("module", DERIVATIVE_MODULES)
def test_derivatives_import_from_their_module(module: str) -> None:
    mod = importlib.import_module(module)
    derivatives = [n for n in mod.__all__ if DERIVATIVE.search(n)]
    assert derivatives
    for name in derivatives:
        assert callable(getattr(mod, name))
        assert not hasattr(softmaxkit, name)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
