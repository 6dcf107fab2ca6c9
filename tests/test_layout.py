"""The package's structure: its modules import one another without a cycle, and none hides an import
of camnet's own inside a function to dodge one."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "camnet_cli"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module, modules: set[str]) -> tuple[set[str], list[int]]:
    """camnet modules imported at module level, and the lines of those imported inside functions."""
    top, hidden = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("camnet_cli"):
            names = {f"{node.module}.{a.name}" for a in node.names} & modules or {node.module}
        elif isinstance(node, ast.Import):
            names = {a.name for a in node.names if a.name.startswith("camnet_cli")}
        else:
            continue
        if not names:
            continue
        if node in tree.body or any(node in ast.walk(n) for n in tree.body if isinstance(n, ast.If)):
            top |= names
        else:
            hidden.append(node.lineno)
    return top, hidden


def _graph() -> tuple[dict[str, set[str]], dict[str, list[int]]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph, hidden = {}, {}
    for path in paths:
        top, inside = _imports(ast.parse(path.read_text()), modules)
        graph[_module_name(path)] = {m for m in top if m in modules}
        if inside:
            hidden[_module_name(path)] = inside
    return graph, hidden


def test_no_import_cycle():
    graph, _ = _graph()
    done, stack = set(), []

    def visit(module: str) -> None:
        if module in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(module):], module]))
        if module in done:
            return
        stack.append(module)
        for other in graph[module]:
            if other != module and not module.startswith(other + "."):  # a package's own __init__ is no cycle
                visit(other)
        stack.pop()
        done.add(module)

    assert len(graph) > 20
    for module in graph:
        visit(module)


def test_no_camnet_import_hidden_in_a_function():
    """One exception, for speed: the entry point loads the command line (and torch) only once the
    first raw has started decoding."""
    _, hidden = _graph()
    assert set(hidden) <= {"camnet_cli.__main__"} and len(hidden.get("camnet_cli.__main__", [])) <= 1


def test_every_subpackage_and_the_shipped_files_are_packaged():
    """pyproject.toml lists the packages by hand (weights/ and examples/ are mapped into the package):
    a new subpackage left out of the list would be missing from every installed camnet."""
    import tomllib

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    subpackages = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert set(config["packages"]) == subpackages | {"camnet_cli.shipped", "camnet_cli.example"}
    assert config["package-dir"] == {"camnet_cli.shipped": "weights", "camnet_cli.example": "examples"}
    root = PACKAGE.parent
    assert list(root.glob("weights/*.safetensors")) and list(root.glob("examples/*.dng"))
    assert not list(root.glob("examples/*.py")) and not list(root.glob("weights/*.py"))  # would be installed as modules
