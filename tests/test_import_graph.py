"""No import circles among knowmix's own modules (corpora/, kg/, knowmix/, pipelines/, trainer/).

Each module is parsed with ``ast`` (nothing is imported, so no optional dependency is needed) and every
``import`` / ``from ... import`` of one of those packages becomes an edge, wherever the statement sits: at module
level and inside functions or classes alike. A function-level import is how a circle is usually hidden
("import it late so it works"); counting them keeps each module's dependencies one-way, which is what lets a
reader follow a document's path without going back and forth between files. ``if TYPE_CHECKING:`` imports are
skipped: they never run.

``from pipelines import beamio`` is an edge to ``pipelines.beamio`` (a submodule) and ``from pipelines.x import
name`` an edge to ``pipelines.x``; an import of a package (``import pipelines``) is an edge to its
``__init__``.
"""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("corpora", "kg", "knowmix", "pipelines", "trainer")
#: the folders that install as ``knowmix.NAME`` (setup.cfg's package_dir)
SUBPACKAGES = ("corpora", "kg", "pipelines", "trainer")


def module_files(root: str = ROOT) -> dict[str, str]:
    """Dotted module name -> file, for every ``.py`` file under the packages (a package is its ``__init__``)."""
    modules = {}
    for package in PACKAGES:
        for directory, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(directory, name), root)[: -len(".py")]
                parts = rel.split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                if parts[0] in SUBPACKAGES:
                    parts = ["knowmix", *parts]
                modules[".".join(parts)] = os.path.join(directory, name)
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an AST imports (``from a import b`` gives both ``a`` and ``a.b``: one of them is a module)."""
    found: list[str] = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for orelse in child.orelse:
                    visit_one(orelse)
                continue
            visit_one(child)

    def visit_one(node):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        visit(node)

    visit(tree)
    return found


def import_graph(root: str = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of the packages it imports (module-level and function-level imports)."""
    modules = module_files(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=path)
        is_package = path.endswith("__init__.py")
        targets = set()
        for name in _imports(tree, module, is_package):
            if name in modules and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module, each as one cycle through it
    (``[a, b, ..., a]``), sorted. Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
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
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(_cycle_through(graph, set(c)) for c in components)


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One cycle inside a strongly connected component, from its smallest module back to it (breadth first)."""
    start = min(component)
    parents = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & component):
            if child == start:
                path = [node]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
            if child not in parents:
                parents[child] = node
                queue.append(child)
    raise AssertionError("not a strongly connected component")


def test_the_finder_names_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pipelines"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "one.py").write_text("def f():\n    from knowmix.pipelines import two\n")
    (pkg / "two.py").write_text("from .one import f\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import knowmix.pipelines.three\n")
    (pkg / "three.py").write_text("import knowmix.pipelines.two\n")
    graph = import_graph(str(tmp_path))
    assert graph["knowmix.pipelines.one"] == {"knowmix.pipelines", "knowmix.pipelines.two"}
    assert graph["knowmix.pipelines.two"] == {"knowmix.pipelines.one"}  # the TYPE_CHECKING import never runs
    assert find_cycles(graph) == [["knowmix.pipelines.one", "knowmix.pipelines.two", "knowmix.pipelines.one"]]


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_every_import_of_ours_goes_through_the_knowmix_namespace():
    """``from pipelines.x import`` (anywhere, in functions too) would load a second copy of a module beside
    ``knowmix.pipelines.x``, and fails in an installed knowmix, which has no top-level ``pipelines``."""
    bare = []
    for module, path in module_files().items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=path)
        for name in _imports(tree, module, path.endswith("__init__.py")):
            if name.split(".")[0] in SUBPACKAGES:
                bare.append(f"{module}: {name}")
    assert not bare, bare
