"""The house stays as built: fakefs's folders are layers, imports only go
down, and no module imports itself back through others (module-level and
function-level imports alike; imports under TYPE_CHECKING are typing only
and are left out)."""

from __future__ import annotations

import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fakefs")

# Bottom first. A module may import its own layer and the ones below.
LAYERS = [
    ["fakefs.errors"],
    ["fakefs.model"],
    ["fakefs.host"],
    ["fakefs.vfs"],
    ["fakefs.backends"],
    ["fakefs.runtime"],
    ["fakefs.manager"],
    ["fakefs.cli", "fakefs.probe", "fakefs.demo", "fakefs.__main__", "fakefs"],
]


def layer_of(module: str) -> int:
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (index, prefix)
    assert best is not None, f"{module} is in no layer: add its folder to LAYERS"
    return best[0]


def modules() -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports_of(module: str, path: str, known: set[str]) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    typing_only = _type_checking_lines(tree)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            # "from pkg import mod" imports the module when there is one.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def test_every_import_goes_down_a_layer_or_stays_in_its_own():
    upward = [f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
              for m, deps in sorted(graph().items()) for d in sorted(deps) if layer_of(d) > layer_of(m)]
    assert not upward, "\n".join(upward)


def circles_in(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circles():
    circles = circles_in(graph())
    assert not circles, "\n".join(" <-> ".join(c) for c in circles)


def test_the_checks_catch_what_they_are_for(tmp_path):
    """A function-level import that goes up, and a circle through three
    modules, are both seen (a check that could not fail proves nothing)."""
    known = {"fakefs.model.a", "fakefs.model.b", "fakefs.model.c", "fakefs.manager.d"}
    sources = {"a": "def f():\n    from fakefs.manager import d\n", "b": "from fakefs.model import c\n",
               "c": "from fakefs.model.a import x\n"}
    g = {}
    for name, text in sources.items():
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        g[f"fakefs.model.{name}"] = imports_of(f"fakefs.model.{name}", str(path), known)
    assert g["fakefs.model.a"] == {"fakefs.manager.d"}
    assert layer_of("fakefs.manager.d") > layer_of("fakefs.model.a")
    g["fakefs.model.a"].add("fakefs.model.b")
    assert circles_in(g) == [["fakefs.model.a", "fakefs.model.b", "fakefs.model.c"]]
