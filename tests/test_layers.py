"""The import rules of ``docs/architecture.md``, checked by reading every module's imports.

Every ``import`` and ``from ... import`` counts, at module level or inside a function (a lazy
import is still a dependency).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS = ("circuits", "mitigation", "backends", "jobs", "service", "client", "hybrid", "bench")
"""The folders installed as ``qldm.<folder>``; the root folder ``qldm/`` holds the rest."""

ALLOWED: dict[str, set[str]] = {
    "circuits": set(),
    "mitigation": {"circuits"},
    "backends": {"circuits", "mitigation"},
    "jobs": {"circuits", "mitigation", "backends"},
    "service": {"circuits", "mitigation", "backends", "jobs"},
    "client": {"circuits", "backends", "jobs"},
    "hybrid": {"circuits", "client"},
    "bench": {"circuits", "mitigation", "backends", "jobs", "service", "client"},
}
"""Which qldm packages each package may import (besides the leaf root modules, which all may)."""

LEAF_ROOT_MODULES = {"qldm.errors", "qldm.paths"}
"""Root modules that import nothing of qldm: the errors and the default data folder."""

THIRD_PARTY_BANNED: dict[str, set[str]] = {
    "circuits": {"torch", "sqlalchemy", "httpx", "fastapi"},
    "mitigation": {"torch", "sqlalchemy", "httpx", "fastapi"},
    "backends": {"sqlalchemy", "httpx", "fastapi"},
    "jobs": {"fastapi", "httpx"},
    "client": {"fastapi", "sqlalchemy"},
    "hybrid": {"fastapi", "sqlalchemy"},
}


def _modules() -> dict[str, Path]:
    """``qldm.<dotted name>`` -> file, for every module of the package."""
    found: dict[str, Path] = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "versions" in parts:
                continue  # Alembic revisions are data the migration runner loads
            found[".".join(("qldm", *parts)).removesuffix(".__init__")] = path
    for path in (ROOT / "qldm").glob("*.py"):
        found[f"qldm.{path.stem}".removesuffix(".__init__")] = path
    return found


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The modules ``path`` imports (``from a import b`` counts as ``a.b`` where that is one)."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(part for part in (base, node.module) if part)
            for alias in node.names:
                full = f"{source}.{alias.name}"
                names.add(full if full in known else source)
    return names


def _layer(module: str) -> str:
    """``qldm.jobs.store`` -> ``jobs``; root modules (``qldm.cli``) -> ``qldm``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "qldm"


MODULES = _modules()
IMPORTS = {name: _imports(path, name, set(MODULES)) for name, path in MODULES.items()}


def test_the_tree_has_the_layers() -> None:
    assert {_layer(m) for m in MODULES} == {*LAYERS, "qldm"}
    assert "qldm.errors" in MODULES and "qldm.cli" in MODULES


@pytest.mark.parametrize("layer", LAYERS)
def test_no_import_runs_up_the_layers(layer: str) -> None:
    wrong = []
    for module, names in IMPORTS.items():
        if _layer(module) != layer:
            continue
        for name in names:
            if not name.startswith("qldm.") or name in LEAF_ROOT_MODULES:
                continue
            target = _layer(name)
            if target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{module} imports {name}")
            if name == "qldm" or (target == "qldm" and name not in LEAF_ROOT_MODULES):
                wrong.append(f"{module} imports the root {name}")
        banned = {n for n in names if n.split(".")[0] in THIRD_PARTY_BANNED.get(layer, set())}
        wrong.extend(f"{module} imports {name}" for name in sorted(banned))
    assert not wrong, "\n".join(sorted(wrong))


def test_only_the_root_wires_service_hybrid_and_bench_together() -> None:
    for module, names in IMPORTS.items():
        layers = {_layer(n) for n in names if n.startswith("qldm.")}
        if {"service", "hybrid"} <= layers or {"hybrid", "bench"} <= layers:
            assert _layer(module) == "qldm", module


@pytest.mark.parametrize("module", sorted(LEAF_ROOT_MODULES))
def test_the_leaf_root_modules_import_nothing_of_qldm(module: str) -> None:
    assert not {n for n in IMPORTS[module] if n.startswith("qldm")}


def test_no_two_modules_of_a_package_import_each_other() -> None:
    """No cycle among the modules of one package (a package's ``__init__`` re-exporting its own
    modules is not a cycle: the modules never import their ``__init__`` back)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, names in IMPORTS.items():
        for name in names:
            target = name if name in MODULES else name.rpartition(".")[0]
            if target in MODULES and target != module and _layer(target) == _layer(module):
                graph[module].add(target)
    cycles = []
    for start in MODULES:
        seen, stack = set(), [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "\n".join(sorted(set(cycles)))
