"""The library's layout (docs/architecture.md): core modules, then stage packages in workflow order; no import runs
back up. Read from the source with `ast`, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "anneuron"
# Each package may import itself and the levels before it (stages reads the dataset pass's shards beside the
# experiments); core imports core only. demos may use the stages (a demo
# runs them to check what it built); bench and devtools sit above everything and nothing imports them.
LEVELS = ["core", "weights", "dataset", "experiments|stages", "universality", "pages|report", "demos", "bench|devtools"]


def level(module: str) -> int:
    parts = module.split(".")
    pkg = parts[1] if len(parts) > 1 and (LIB / parts[1]).is_dir() else "core"
    return next(i for i, names in enumerate(LEVELS) if pkg in names.split("|"))


def imports(path: Path) -> list[str]:
    """Every anneuron module `path` imports; `from anneuron.x import y` counts as anneuron.x.y when y is a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("anneuron")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "anneuron":
            folder = LIB.joinpath(*node.module.split(".")[1:])
            out += [f"{node.module}.{a.name}" if (folder / a.name).is_dir() or (folder / f"{a.name}.py").exists()
                    else node.module for a in node.names]
    return out


MODULES = sorted(p for p in LIB.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(LIB)))
def test_no_import_runs_back_up(path):
    me = "anneuron." + ".".join(path.relative_to(LIB).with_suffix("").parts)
    mine = level(me)
    bad = [m for m in imports(path) if level(m) > mine]
    assert not bad, f"{me} (level {LEVELS[mine]}) imports {bad}, a later level"


def test_the_library_never_imports_snakemake():
    for path in MODULES:
        names = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]
        mods = [a.name for n in names if isinstance(n, ast.Import) for a in n.names]
        mods += [n.module or "" for n in names if isinstance(n, ast.ImportFrom)]
        assert not [m for m in mods if m.split(".")[0] == "snakemake"], path


def test_every_package_says_what_it_does():
    for init in LIB.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 80, f"{init} has no docstring saying what the package does"
