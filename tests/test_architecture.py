"""The layering of docs/ARCHITECTURE.md, checked on the source: no import cycles, components that
do not reach up into the experiment configuration, nothing below the CLI that imports the CLI.

Imports are read with ``ast`` from every module of bench/, losses/, models/ and reports/, at module
level and inside functions alike (a function-level import is still a dependency, only a deferred one).
An edge goes to the most specific module that exists: ``from bench.synth import corpus`` depends on
``bench.synth.corpus``, ``from bench.synth.config import X`` on ``bench.synth.config``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "losses", "models", "reports")


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of PACKAGES (packages as their __init__)."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules (None for outside modules)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Our modules that ``module`` imports anywhere in its source (module or function level), except
    under ``if TYPE_CHECKING:``: those imports never run, so they make no runtime cycle."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative import: the package of this module, ``level - 1`` more levels up.
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # ``from pkg import sub`` depends on pkg.sub when sub is a module, else on pkg.
            targets = [f"{prefix}.{alias.name}" for alias in node.names] or [prefix]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, known)
            if resolved is not None and resolved != module:
                out.add(resolved)
    return out


def import_graph() -> dict[str, set[str]]:
    known = module_files()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (iterative); returns only the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return components


def defines_registry(package: str, known: dict[str, Path]) -> bool:
    """True when the package's __init__ assigns a ``Registry(...)`` at module level."""
    path = known[package]
    if path.name != "__init__.py":
        return False
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Name) and func.id == "Registry":
                return True
    return False


def is_registry_cycle(component: set[str], known: dict[str, Path]) -> bool:
    """A registry package's __init__ imports its submodules so that they register; they import the
    registry back from the package. That cycle is by design: allowed exactly when the component is one
    registry package plus some of its direct submodules, nothing else."""
    for package in component:
        others = component - {package}
        if defines_registry(package, known) and all(m.rpartition(".")[0] == package for m in others):
            return True
    return False


# -- the graph builder itself, on a made-up package (so the checks below cannot pass vacuously) --


def test_graph_builder_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n    return b\n")
    (pkg / "b.py").write_text("from .c import X\n")
    (pkg / "c.py").write_text("import pkg.a\nX = 1\n")
    known = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py", "pkg.c": pkg / "c.py"}
    graph = {m: imports_of(m, p, known) for m, p in known.items()}
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert strongly_connected(graph) == [{"pkg.a", "pkg.b", "pkg.c"}]


def test_strongly_connected_matches_brute_force_reachability():
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},
        "d": {"e"},
        "e": {"d"},
        "f": {"a"},
        "g": set(),
    }

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    brute = {frozenset(n for n in graph if n in reach(m) and m in reach(n)) | {m} for m in graph}
    expected = sorted(sorted(c) for c in brute if len(c) > 1)
    assert sorted(sorted(c) for c in strongly_connected(graph)) == expected


def test_registry_cycle_rule_is_narrow():
    known = module_files()
    assert defines_registry("losses", known) and defines_registry("models", known)
    assert is_registry_cycle({"losses", "losses.pair"}, known)
    assert not is_registry_cycle({"losses", "losses.pair", "bench.config"}, known)
    assert not is_registry_cycle({"bench.synth.banks", "bench.synth.corpus"}, known)


# -- the rules ------------------------------------------------------------------------------------


# Cycles that exist today and are not of the registry kind, each with the reason it is still there.
# The list may only shrink: a cycle that is gone must leave it (test below), a new one fails.
KNOWN_CYCLES: set[frozenset[str]] = set()  # none left: keep it that way


def cycles_beyond_registries() -> set[frozenset[str]]:
    known = module_files()
    return {frozenset(c) for c in strongly_connected(import_graph()) if not is_registry_cycle(c, known)}


def test_no_import_cycles_beyond_registry_packages():
    assert len(module_files()) > 50  # the walk found the source tree
    new = sorted(sorted(c) for c in cycles_beyond_registries() - KNOWN_CYCLES)
    assert new == [], f"import cycles: {new}"


def test_known_cycles_are_still_there():
    gone = sorted(sorted(c) for c in KNOWN_CYCLES - cycles_beyond_registries())
    assert gone == [], f"these cycles are gone: delete them from KNOWN_CYCLES: {gone}"


FORBIDDEN_FOR_COMPONENTS = ("bench.config", "bench.runner", "bench.commands", "bench.cli")


def within(module: str, parents: tuple[str, ...]) -> bool:
    """True when ``module`` is one of ``parents`` or inside one (``bench.config_checks`` is not)."""
    return any(module == p or module.startswith(p + ".") for p in parents)


@pytest.mark.parametrize("package", ["losses", "models"])
def test_components_do_not_import_experiment_layers(package):
    graph = import_graph()
    bad = {
        module: sorted(t for t in targets if within(t, FORBIDDEN_FOR_COMPONENTS))
        for module, targets in graph.items()
        if module.split(".")[0] == package
    }
    bad = {m: t for m, t in bad.items() if t}
    assert bad == {}, f"components own their configs; they import: {bad}"


def test_nothing_below_the_cli_imports_the_cli():
    graph = import_graph()
    cli = ("bench.commands", "bench.cli")
    bad = {
        module: sorted(t for t in targets if within(t, cli))
        for module, targets in graph.items()
        if not within(module, (*cli, "bench.__main__"))
    }
    bad = {m: t for m, t in bad.items() if t}
    assert bad == {}, f"library modules import the CLI: {bad}"


def test_type_only_imports_are_not_edges(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\nimport bench.errors\n"
        "if TYPE_CHECKING:\n    from bench.config import ExperimentConfig\n"
        "def f():\n    from bench.io import atomic_write\n"
    )
    deps = imports_of("bench.fake", src, module_files())
    assert deps == {"bench.errors", "bench.io"}
