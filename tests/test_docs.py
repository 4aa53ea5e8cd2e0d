"""The documentation site builds with warnings as errors and nitpicky cross-references, documents every public
name, and serves its math from itself.

Sphinx runs as a subprocess (so that its warnings are judged by ``-W``, not by pytest's ``filterwarnings``) into a
temporary folder, once for the module; it executes the tutorials, so this is the slowest test of the suite.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import types
import zlib
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")

import softmaxkit

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# the namespaces whose __all__ the reference must cover, besides every public module's (walked below)
NAMESPACES = (
    "softmaxkit",
    "softmaxkit.torch",
    "softmaxkit.jax",
    "softmaxkit.calibration",
    "softmaxkit.classifier",
    "softmaxkit.layers",
)
# public-looking modules that are not API: the kernels (reached through the public functions' ``backend``), and
# the commands (documented as the CLI)
NOT_API = ("softmaxkit.kernels", "softmaxkit.bench", "softmaxkit.compare", "softmaxkit.cli", "softmaxkit.__main__")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    html, warnings = out / "html", out / "warnings.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-E", "-q"]
    cmd += ["-d", str(out / "doctrees"), "-w", str(warnings), str(DOCS), str(html)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
    logged = warnings.read_text(encoding="utf-8") if warnings.exists() else ""
    assert proc.returncode == 0, f"sphinx-build failed ({proc.returncode}):\n{logged}\n{proc.stderr[-6000:]}"
    assert logged.strip() == "", f"the build warned:\n{logged}"
    return html


def _inventory(html: Path) -> dict[str, tuple[str, str]]:
    """objects.inv as ``name -> (domain:role, page)``."""
    raw = (html / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = raw.index(b"\n", header_end) + 1
    entries: dict[str, tuple[str, str]] = {}
    for line in zlib.decompress(raw[header_end:]).decode("utf-8").splitlines():
        match = re.match(r"(.+?)\s+(\S+:\S+)\s+(-?\d+)\s+(\S*)\s+(.*)$", line)
        if match:
            name, role, _prio, uri, _disp = match.groups()
            entries.setdefault(name, (role, uri.replace("$", name).split("#")[0]))
    return entries


def _public_modules() -> list[types.ModuleType]:
    modules = [importlib.import_module(name) for name in NAMESPACES]
    for info in pkgutil.walk_packages(softmaxkit.__path__, "softmaxkit.", onerror=lambda name: None):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or info.name.startswith(NOT_API):
            continue
        module = importlib.import_module(info.name)
        if hasattr(module, "__all__"):
            modules.append(module)
    return modules


def _targets(full: str) -> list[object]:
    """What a dotted name can mean: a module prefix, then attributes (``softmaxkit.softmax`` is both a function
    of the package and a module, so every split is tried)."""
    parts = full.split(".")
    found = []
    for cut in range(1, len(parts) + 1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except (ImportError, AttributeError):
            continue
        found.append(obj)
    return found


def test_every_public_name_has_a_documented_entry(site: Path) -> None:
    inventory = _inventory(site)
    by_name: dict[str, list[str]] = {}
    for full, (role, _) in inventory.items():
        if role.startswith("py:"):
            by_name.setdefault(full.rsplit(".", 1)[-1], []).append(full)
    missing = []
    checked = 0
    for module in _public_modules():
        for name in module.__all__:
            obj = getattr(module, name)
            checked += 1
            if isinstance(obj, types.ModuleType):
                if inventory.get(obj.__name__, ("", ""))[0] != "py:module":
                    missing.append(f"{module.__name__}.{name} (module page)")
                continue
            documented = [full for full in by_name.get(name, []) if any(t is obj for t in _targets(full))]
            if not documented:
                missing.append(f"{module.__name__}.{name}")
            elif (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj):
                missing.append(f"{module.__name__}.{name} (no docstring)")
            elif not (site / inventory[documented[0]][1]).is_file():
                missing.append(f"{module.__name__}.{name} (page {inventory[documented[0]][1]} not written)")
    assert checked > 40
    assert not missing, f"public names without a documented entry: {missing}"


def test_the_cli_is_documented(site: Path) -> None:
    text = (site / "api" / "cli.html").read_text(encoding="utf-8")
    for option in ("compare", "bench", "demo", "--quick", "--layers", "--epochs"):
        assert option in text


def test_api_pages_link_to_their_source(site: Path) -> None:
    page = (site / "api" / "generated" / "softmaxkit.softmax.html").read_text(encoding="utf-8")
    assert re.search(r'href="[^"]*_modules/softmaxkit/softmax\.html#', page)


def test_math_is_rendered_by_mathjax_served_from_the_site(site: Path) -> None:
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    pages = sorted(site.rglob("*.html"))
    remote = [
        str(p.relative_to(site))
        for p in pages
        if re.search(r"<script[^>]+src=\"(https?:)?//", p.read_text(encoding="utf-8"))
    ]
    assert not remote, f"pages that load a script from the network: {remote}"
    for rel in ("api/generated/softmaxkit.softmax.html", "tutorials/01_scores_to_probabilities.html"):
        text = (site / rel).read_text(encoding="utf-8")
        assert re.search(r'<script[^>]+src="(\.\./)*_static/mathjax/tex-chtml\.js', text), rel
        assert re.search(r'class="math[^"]*"', text), rel


def test_tutorials_are_executed_with_their_plots(site: Path) -> None:
    tutorials = sorted((site / "tutorials").glob("0*.html"))
    assert len(tutorials) == 7
    for page in tutorials:
        text = page.read_text(encoding="utf-8")
        assert "cell_output" in text, page.name
        assert re.search(r'<img[^>]+src="[^"]*\.png"', text), f"{page.name} has no plot"
        assert "Traceback" not in text, page.name
