"""The package's shape: imports flow one way, no import cycles, no huge files.

Imports flow estimators -> models -> layers -> backends -> kernels (imports inside
functions count too: a deferred import is still a dependency, only hidden).  The
lists of known exceptions below are the debt still to pay; the tests fail when a new
exception appears and when a listed one is gone (so that the list shrinks with it).
"""
import ast
from pathlib import Path

import pytest

from conftest import PACKAGE_DIR

# rank of each part: a module may import modules of its own rank or lower
RANKS = [
    ("neonlearn._kernels", 0),
    ("neonlearn._params", 1), ("neonlearn._input_dict", 1), ("neonlearn.exceptions", 1),
    ("neonlearn.transforms", 1),
    ("neonlearn.initializers", 1),
    ("neonlearn.backends", 2),
    ("neonlearn.layers", 3), ("neonlearn.costs", 3), ("neonlearn.optimizers", 3),
    ("neonlearn.schedules", 3),
    ("neonlearn.metrics", 3),
    ("neonlearn.models", 4), ("neonlearn.callbacks", 4), ("neonlearn.neon_io", 4),
    ("neonlearn", 5),  # the estimators, the package root and the tools around them
    ("neonlearn.onnx", 6),  # the ONNX export reads fitted estimators; nothing imports it
]
ONLY_BACKENDS_IMPORT_KERNELS = True
MAX_LINES = 600

KNOWN_LAYERING = {
}
KNOWN_CYCLES = {
}
KNOWN_LONG = {}


def _sources():
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.suffix in (".py", ".pyx", ".pxd") and "__pycache__" not in path.parts:
            yield path


def _module(path):
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph():
    modules = {_module(p) for p in _sources()}
    graph = {}
    for path in _sources():
        if path.suffix != ".py":
            continue
        name, is_pkg = _module(path), path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[:None if is_pkg else -1]
                    base = base[:len(base) - node.level + 1]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = ["%s.%s" % (base, a.name) for a in node.names] or [base]
                targets = [t if t in modules else base for t in targets]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    graph.setdefault(name, set()).add(target)
    return graph


def _rank(part):
    return dict(RANKS)[part]


def _part(module):
    """The longest RANKS prefix of ``module``."""
    return max((p for p, _ in RANKS if module == p or module.startswith(p + ".")), key=len)


def test_imports_flow_one_way():
    found = set()
    for source, targets in _import_graph().items():
        for target in targets:
            lower = _rank(_part(target)) > _rank(_part(source))
            kernels = (ONLY_BACKENDS_IMPORT_KERNELS and target.startswith("neonlearn._kernels")
                       and not source.startswith(("neonlearn.backends", "neonlearn._kernels",
                                                  "neonlearn._show_versions")))
            if lower or kernels:
                found.add((_part(source) if _part(source) != "neonlearn" else source,
                           target))
    assert found == set(KNOWN_LAYERING), (
        "new: %s; gone (remove from KNOWN_LAYERING): %s"
        % (sorted(found - set(KNOWN_LAYERING)), sorted(set(KNOWN_LAYERING) - found)))


def test_no_import_cycles():
    # a package's __init__ importing its own submodules re-exports them; those edges
    # are left out, so that a submodule may import a sibling through the package
    graph = {a: {b for b in targets if not b.startswith(a + ".")}
             for a, targets in _import_graph().items()}
    cycles = {frozenset(group) for group in _cycles(graph)}
    known = {frozenset(group) for group in KNOWN_CYCLES}
    assert cycles == known, ("new: %s; gone (remove from KNOWN_CYCLES): %s"
                             % ([sorted(c) for c in cycles - known],
                                [sorted(c) for c in known - cycles]))


def _cycles(graph):
    """Groups of modules that import each other (strongly connected, Tarjan)."""
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in list(graph):
        if v not in index:
            visit(v)
    return groups


def test_source_files_stay_short():
    long = {str(p.relative_to(PACKAGE_DIR)): sum(1 for _ in p.open())
            for p in _sources()}
    long = {k for k, n in long.items() if n > MAX_LINES}
    assert long == set(KNOWN_LONG), (
        "over %d lines: new %s; gone (remove from KNOWN_LONG): %s"
        % (MAX_LINES, sorted(long - set(KNOWN_LONG)), sorted(set(KNOWN_LONG) - long)))
