"""The layering, read from every import (function-level ones too): `shared/` is the ground floor, services don't
reach into each other, production code never needs `deploy/`, and the local stack's modules import in one
direction (no circle, such as the launcher seeding through the demo that asks the launcher for tokens)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("gateway", "services", "shared")
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, package: str | None = None) -> set[str]:
    """Every module `path` imports, wherever in the file the import stands."""
    found: set[str] = set()
    if package is None:
        package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _sources(top: str) -> dict[str, set[str]]:
    return {_module(path): _imports(path) for path in sorted((ROOT / top).rglob("*.py"))}


def _offences(top: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module} imports {name}"
        for module, names in _sources(top).items()
        for name in sorted(names)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


def test_shared_is_the_ground_floor() -> None:
    assert _offences("shared", ("gateway", "services", "deploy")) == []


@pytest.mark.parametrize("top", PRODUCTION)
def test_production_code_never_imports_deploy(top: str) -> None:
    assert _offences(top, ("deploy",)) == []


def test_services_do_not_import_each_other() -> None:
    offences = []
    for service in SERVICES:
        others = tuple(f"services.{other}" for other in SERVICES if other != service)
        offences += _offences(f"services/{service}", others)
    assert offences == []


def _circles(top: str, package: str) -> list[str]:
    """Every import circle among the modules of `package` (read under `top`), as `a -> b -> a`."""
    sources = _sources(top)
    graph = {
        module: {name for name in names if name in sources}
        for module, names in sources.items()
        if module == package or module.startswith(package + ".")
    }
    for module in graph:  # a package's modules are not a dependency on the package's own __init__
        graph[module] = {name for name in graph[module] if not module.startswith(name + ".")}
    cycles = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_the_local_stack_imports_in_one_direction() -> None:
    assert _circles("deploy", "deploy.local") == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_s_rooms_import_in_one_direction(service: str) -> None:
    """The rooms a service's use cases are split into (dispatch's placing, reports, cancelling, ...) import one
    another from the ground up, never round in a circle."""
    assert _circles(f"services/{service}", f"services.{service}") == []


def test_the_circle_finder_finds_a_circle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A circle planted in a package is reported, or the tests above prove nothing."""
    package = tmp_path / "house"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "placing.py").write_text("from house import reports\n")
    (package / "reports.py").write_text("def f():\n    from house.placing import place\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert _circles("house", "house") == ["house.placing -> house.reports -> house.placing"]


def test_the_scanner_sees_every_form_of_import(tmp_path: Path) -> None:
    """Imports in function bodies and relative ones count, or the tests above prove nothing."""
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from services.order import app\n\n\nfrom ..stack import launcher\n")
    names = _imports(path, package="shared.events")
    assert {"services.order.app", "shared.stack.launcher"} <= names
