"""docs/map.md stays true: every module it names exists and imports, every product module is named in
it, and what it says crosses from ``hwsim`` into ``ksm`` is exactly what ``ksm`` imports."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "map.md"
PACKAGES = ("ksm", "hwsim")
CROSSING_HEADING = "## What crosses between the packages"


def _map_text() -> str:
    return MAP.read_text(encoding="utf-8")


def _named_paths(text: str) -> set[str]:
    """Every `ksm/...` or `hwsim/...` file or folder path written in backticks."""
    return set(re.findall(r"`((?:ksm|hwsim)/[\w/.]*)`", text))


def _product_modules() -> list[Path]:
    return sorted(p.relative_to(ROOT) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                  if p.name not in ("__init__.py", "__main__.py"))


def _module_name(path: Path) -> str:
    return ".".join(path.with_suffix("").parts)


def test_every_named_path_exists_and_imports() -> None:
    named = _named_paths(_map_text())
    assert named, "docs/map.md names no module"
    for path in sorted(named):
        target = ROOT / path
        assert target.exists(), f"docs/map.md names {path}, which does not exist"
        if target.suffix == ".py":
            importlib.import_module(_module_name(Path(path)))


def test_every_product_module_is_named() -> None:
    text = _map_text()
    named = _named_paths(text)
    missing = [str(p) for p in _product_modules()
               if str(p) not in named and f"{p.parent}/" not in named]
    assert not missing, f"docs/map.md leaves out {missing}"


def _section(text: str, heading: str) -> str:
    start = text.index(heading) + len(heading)
    end = text.find("\n## ", start)
    return text[start:] if end < 0 else text[start:end]


def _is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:
        return False


def _hwsim_modules_imported_by_ksm() -> set[str]:
    """The hwsim modules that ksm's code imports (``from hwsim import catalogue`` counts as
    ``hwsim.catalogue``; ``from hwsim.fileio.atomic import f`` as ``hwsim.fileio.atomic``)."""
    found: set[str] = set()
    for path in (ROOT / "ksm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hwsim":
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    found.add(child if _is_module(child) else node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == "hwsim")
    return found


def test_what_crosses_is_what_ksm_imports() -> None:
    section = _section(_map_text(), CROSSING_HEADING)
    said = set(re.findall(r"`(hwsim(?:\.\w+)+)`", section))
    actual = _hwsim_modules_imported_by_ksm()
    assert said == actual, (f"docs/map.md says ksm imports {sorted(said)} from hwsim; it imports {sorted(actual)}")


@pytest.mark.parametrize("forbidden", ["hwsim.cost", "hwsim.explore"])
def test_training_never_reads_the_cost_model(forbidden: str) -> None:
    """docs/map.md: ksm may read hwsim's torch-free facts, never its cost model (nor a sweep)."""
    assert not {m for m in _hwsim_modules_imported_by_ksm() if m == forbidden or m.startswith(forbidden + ".")}


def test_module_names_are_unique_across_the_packages() -> None:
    """A name means one thing: no two modules of ksm and hwsim share a file name (``masks.py`` once meant
    a mask parametrization in one package and a storage rule in the other)."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in _product_modules():
        if path.name in seen:
            clashes.append(f"{seen[path.name]} and {path}")
        seen[path.name] = path
    assert not clashes, f"module names used twice: {clashes}"
