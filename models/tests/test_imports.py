"""The factory's modules import each other in one direction: the import graph of d2nwg is a DAG.

Every import counts, at module level or inside a function (a deferred import
still makes two modules depend on each other): `from .x import y`,
`from . import x`, `from ..x import y`, `import d2nwg.x`, `from d2nwg.x import y`.
"""

import ast
from pathlib import Path

from d2nwg.config import MODELS_DIR

PACKAGE = MODELS_DIR / "d2nwg"


def module_name(path: Path) -> str:
    parts = path.relative_to(MODELS_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """d2nwg module → the d2nwg modules it imports."""
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base_name = ".".join(base + ([node.module] if node.module else []))
                else:
                    base_name = node.module or ""
                targets.add(base_name)
                targets.update(f"{base_name}.{a.name}" for a in node.names)  # `from . import x`: the module x
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, …, a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_relative_absolute_and_deferred_imports():
    graph = import_graph()
    assert "d2nwg.ddim" in graph["d2nwg.cnn_generator"]  # from .ddim import …
    assert {"d2nwg.families.head", "d2nwg.families.cnn"} <= graph["d2nwg.families"]  # from . import cnn, head
    assert "d2nwg.residual_head" in graph["d2nwg.families.head"]  # from .. import residual_head
    assert "d2nwg.data.store" in graph["d2nwg.cnn_zoo"]  # from .data import store
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_the_factory_imports_itself_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_no_family_imports_the_other_or_a_stage():
    graph = import_graph()
    families = {"head": {"d2nwg.residual_head", "d2nwg.head_tokens", "d2nwg.evaluate_head",
                         "d2nwg.export_head", "d2nwg.families.head"},
                "cnn": {"d2nwg.cnn_generator", "d2nwg.cnn_tokens", "d2nwg.train_cnn", "d2nwg.evaluate_cnn",
                        "d2nwg.export_cnn", "d2nwg.families.cnn"}}
    stages = {"d2nwg.train_generator", "d2nwg.evaluate_generator", "d2nwg.export_generator", "d2nwg.quantize"}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        return seen

    for name, modules in families.items():
        other = set().union(*(m for n, m in families.items() if n != name))
        for module in modules:
            assert not reach(module) & (other | stages), (module, sorted(reach(module) & (other | stages)))
