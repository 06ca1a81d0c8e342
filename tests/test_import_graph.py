"""The ``fantasyid`` package has no import cycle, and model loading reads top-down.

The graph is built from the source with ``ast``: every ``import`` / ``from … import`` of a module, absolute or
relative, at module level or deferred inside a function (a deferred import hides a cycle from Python, not from a
reader), except those under ``if TYPE_CHECKING:``. ``from pkg import name`` counts as an edge to ``pkg.name`` when that
is a module, else to ``pkg``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str = "fantasyid") -> dict[str, tuple[Path, bool]]:
    modules = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _import_nodes(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(package: str = "fantasyid") -> dict[str, set[str]]:
    """module → the modules of ``package`` it imports."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        edges: set[str] = set()
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name
                    while target and target not in modules:
                        target = target.rpartition(".")[0]
                    if target:
                        edges.add(target)
                continue
            if node.level:
                base = here[: len(here) - (node.level - 1)] + ([node.module] if node.module else [])
                source = ".".join(base)
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    edges.add(f"{source}.{alias.name}")
                elif source in modules:
                    edges.add(source)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, …, a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_fantasyid_package_has_no_import_cycle():
    graph = import_graph()
    # the graph sees relative, absolute and deferred imports (else the test below could pass on an empty graph)
    assert "fantasyid.hub" in graph["fantasyid.pipelines.loading"]  # relative, module level
    assert "fantasyid.pipelines.loading" in graph["fantasyid.generation.run"]  # relative, inside a function
    assert "fantasyid.generation.run" in graph["fantasyid.generation"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_model_loading_reads_top_down():
    """Weight resolution knows nothing of pipelines; the checkpoint format knows nothing of the loaders."""
    graph = import_graph()
    assert not {m for m in graph["fantasyid.hub"] if m.startswith("fantasyid.pipelines")}, graph["fantasyid.hub"]
    loaders = {"fantasyid.pipelines.loading", "fantasyid.pipelines.load_tiny", "fantasyid.pipelines.load_released",
               "fantasyid.pipelines.load_saved", "fantasyid.pipelines.components"}
    for module in ("fantasyid.pipelines.checkpoint", "fantasyid.pipelines.weights"):
        assert not graph[module] & loaders, f"{module} imports {graph[module] & loaders}"
