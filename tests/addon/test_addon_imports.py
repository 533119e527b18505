"""No import cycles inside the add-on (blender_text3d) or the engine (engine), read from the
source with `ast`: plain pytest, neither bpy nor torch is imported.

The graph has one node per module of the package (`pkg/sub/__init__.py` is the node
`pkg.sub`) and an edge A -> B for every import in A of a module B of the same package:

- `import pkg.x`, `from pkg import x`, `from pkg.x import y`, `from . import x`,
  `from .x import y`, `from ..x import y`, anywhere in the file: at the top, and inside
  functions and classes (a lazy import is still a circle, only a hidden one);
- `from P import y`, where y is no submodule of the package P, is an edge to P's `__init__`,
  unless y is a name that `__init__` only re-exports (binds with `from .m import y`): the
  edge then goes to m, whose code y is. So `from engine.fields import Field` is an edge to
  engine.fields.base, and engine.fields.hashgrid may import Field that way;
- importing pkg.sub.m runs pkg/sub/__init__ first: an edge to it too ("implicit"), unless
  the importer is inside pkg.sub itself, which is then already importing (else every
  package whose `__init__` imports its own submodules would close a circle);
- not counted: imports under `if TYPE_CHECKING:`, which never run, and imports by name at
  run time (importlib), which `ast` cannot follow.

Also: only registration (the add-on's `__init__`) imports the operators, and the add-on modules
plain Python imports pull in no Blender module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("blender_text3d", "engine")
# The add-on modules that plain Python (pytest, install/) imports: no Blender module, not
# even through the modules they import.
BPY_FREE = ("paths", "runner", "jobspec", "captures", "tasks", "estimate")
BLENDER_MODULES = ("bpy", "bpy_extras", "mathutils", "addon_utils", "gpu", "bmesh")


class Module:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.is_package = path.name == "__init__.py"
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    @property
    def package(self) -> str:
        """What `from . import` means here."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def load(package: str, root: Path = REPO) -> dict[str, Module]:
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = Module(name, path)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(tree: ast.AST, top_level_only: bool = False):
    """The Import and ImportFrom nodes that can run, with whether each is at the module's top
    level (not inside a function)."""
    def walk(node, top):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    yield from walk_one(sub, top)
                continue
            yield from walk_one(child, top)

    def walk_one(node, top):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, top
            return
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if inner or not top_level_only:
            yield from walk(node, inner)

    yield from walk(tree, True)


class Graph:
    def __init__(self, package: str, root: Path = REPO) -> None:
        self.package = package
        self.modules = load(package, root)
        # edges[a][b]: where a imports b, as "file.py:line" (+ " (lazy)" inside a function)
        self.edges: dict[str, dict[str, str]] = {name: {} for name in self.modules}
        for module in self.modules.values():
            for node, top in runtime_imports(module.tree):
                where = f"{module.path.relative_to(root)}:{node.lineno}" + ("" if top else " (lazy)")
                for target in self.targets(module, node):
                    for implicit in self._parents_to_run(module, target):
                        self.edges[module.name].setdefault(implicit, f"{where}, implicit: imports {target}")
                    if target != module.name:
                        self.edges[module.name].setdefault(target, where)

    def _parents_to_run(self, module: Module, target: str) -> list[str]:
        """The packages above target whose `__init__` importing it runs, and that are not already
        importing because module is inside them."""
        mine = module.name if module.is_package else module.name.rpartition(".")[0]
        out, parts = [], target.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent != mine and not mine.startswith(parent + "."):
                out.append(parent)
        return out

    def _base(self, module: Module, node: ast.ImportFrom) -> str | None:
        if node.level == 0:
            return node.module
        parts = module.package.split(".")
        if node.level - 1 >= len(parts):
            return None
        base = ".".join(parts[:len(parts) - (node.level - 1)])
        return f"{base}.{node.module}" if node.module else base

    def _ours(self, name: str | None) -> bool:
        return name is not None and (name == self.package or name.startswith(self.package + "."))

    def targets(self, module: Module, node) -> list[str]:
        if isinstance(node, ast.Import):
            out = []
            for alias in node.names:
                if self._ours(alias.name):
                    out.append(self._existing(alias.name))
            return out
        base = self._base(module, node)
        if not self._ours(base):
            return []
        return [self.provider(base, alias.name) for alias in node.names]

    def _existing(self, dotted: str) -> str:
        """The most specific module a dotted name has (`import pkg.a.b` of a missing b imports pkg.a)."""
        while dotted not in self.modules and "." in dotted:
            dotted = dotted.rpartition(".")[0]
        return dotted

    def provider(self, base: str, name: str, seen: frozenset = frozenset()) -> str:
        """The module whose code `from base import name` runs for name."""
        if f"{base}.{name}" in self.modules:
            return f"{base}.{name}"
        base = self._existing(base)
        init = self.modules.get(base)
        if init is None or not init.is_package or name == "*" or (base, name) in seen:
            return base
        # A name the __init__ only re-exports belongs to the submodule it comes from.
        for node, _ in runtime_imports(init.tree, top_level_only=True):
            if isinstance(node, ast.ImportFrom):
                source = self._base(init, node)
                for alias in node.names:
                    if (alias.asname or alias.name) == name and self._ours(source):
                        return self.provider(source, alias.name, seen | {(base, name)})
        return base

    def components(self) -> list[list[str]]:
        """The strongly connected components of more than one module (Tarjan): the circles."""
        index, low, stack, on_stack, out = {}, {}, [], set(), []

        def strongconnect(v):  # recursion is fine: the packages have tens of modules
            index[v] = low[v] = len(index)
            stack.append(v)
            on_stack.add(v)
            for w in sorted(self.edges[v]):
                if w not in index:
                    strongconnect(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                component = []
                while not component or component[-1] != v:
                    component.append(stack.pop())
                    on_stack.discard(component[-1])
                if len(component) > 1:
                    out.append(sorted(component))

        for v in sorted(self.edges):
            if v not in index:
                strongconnect(v)
        return out

    def cycles(self) -> list[list[str]]:
        """For each module in a circle, the shortest cycle through it (each cycle once)."""
        out, seen = [], set()
        for component in self.components():
            for start in component:
                cycle = self._shortest_cycle(start, set(component))
                key = frozenset(zip(cycle, cycle[1:]))
                if key not in seen:
                    seen.add(key)
                    out.append(cycle)
        return out

    def _shortest_cycle(self, start: str, component: set) -> list[str]:
        paths, frontier = {start: [start]}, [start]
        while frontier:  # breadth first, so the first way back is a shortest one
            nxt = []
            for v in frontier:
                for w in sorted(self.edges[v]):
                    if w == start:
                        return paths[v] + [start]
                    if w in component and w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
            frontier = nxt
        raise AssertionError(f"{start} is in no cycle of {component}")

    def report(self) -> str:
        lines = [f"circle of {len(c)} modules: {', '.join(c)}" for c in self.components()]
        for cycle in self.cycles():
            lines.append(f"cycle {' -> '.join(cycle)}")
            lines += [f"    {a} -> {b}  ({self.edges[a][b]})" for a, b in zip(cycle, cycle[1:])]
        return "\n".join(lines)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package):
    graph = Graph(package)
    assert len(graph.modules) > 3
    report = graph.report()
    print(report or f"{package}: no import cycles among {len(graph.modules)} modules")
    assert not report, f"import cycles in {package}:\n{report}"


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """A made-up package with one import of each kind, and circles that only a lazy import closes."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "def register():\n    from . import a\n",
        "a.py": "from . import b\nimport pkg.sub.c\n",
        "b.py": "from .sub import Thing\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n",
        "sub/__init__.py": "from .d import Thing\nVALUE = 1\n",
        "sub/c.py": "from ..sub import VALUE\n",
        "sub/d.py": "def f():\n    from pkg.a import x\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text, encoding="utf-8")
    graph = Graph("pkg", tmp_path)
    assert {a: set(b) for a, b in graph.edges.items()} == {
        "pkg": {"pkg.a"}, "pkg.a": {"pkg.b", "pkg.sub", "pkg.sub.c"},
        "pkg.b": {"pkg.sub", "pkg.sub.d"},  # Thing is d's; pkg.sub's __init__ runs first
        "pkg.sub": {"pkg.sub.d"}, "pkg.sub.c": {"pkg.sub"}, "pkg.sub.d": {"pkg.a"}}
    assert graph.edges["pkg.sub.d"]["pkg.a"] == "pkg/sub/d.py:2 (lazy)"
    assert graph.edges["pkg.a"]["pkg.sub"] == "pkg/a.py:2, implicit: imports pkg.sub.c"
    assert graph.components() == [["pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.sub.d"]]
    assert sorted(graph.cycles()) == [["pkg.a", "pkg.b", "pkg.sub.d", "pkg.a"],
                                      ["pkg.sub", "pkg.sub.d", "pkg.a", "pkg.sub"],
                                      ["pkg.sub.c", "pkg.sub", "pkg.sub.d", "pkg.a", "pkg.sub.c"]]
    (pkg / "sub" / "d.py").write_text("def f():\n    pass\n", encoding="utf-8")
    assert Graph("pkg", tmp_path).report() == ""  # the lazy import closed them all


def test_only_register_imports_the_operators():
    """Operators are what the user calls; nothing but registration may depend on them."""
    graph = Graph("blender_text3d")
    importers = sorted(a for a, b in graph.edges.items() if "blender_text3d.operators" in b)
    assert importers == ["blender_text3d"]


@pytest.mark.parametrize("name", BPY_FREE)
def test_plain_python_modules_import_no_blender_module(name):
    graph = Graph("blender_text3d")
    seen, todo = set(), [f"blender_text3d.{name}"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(graph.edges[module])
        for node, _ in runtime_imports(graph.modules[module].tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            blender = [n for n in names if n.split(".")[0] in BLENDER_MODULES]
            assert not blender, f"{module} (needed by {name}) imports {blender} at line {node.lineno}"
