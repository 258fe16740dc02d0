"""The package's shape holds: no import cycle between refinery's modules (imports inside
functions counted too: they hide a cycle, they do not remove it), and torch only on the
export and training side."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "refinery"
TORCH_SIDE = ("refinery.export", "refinery.train")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every refinery module `path` imports, wherever the import statement is."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative imports
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return {name for name in found if name in known}


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: imports_of(path, set(known)) - {name} for name, path in known.items()}
    # A package's __init__ that imports nothing does not make its modules depend on each other.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_torch_only_on_the_export_and_training_side() -> None:
    """No module outside export/ and train/ imports torch, and none imports those two at its
    top (the CLI's export and train commands load them when they run; tests/test_cli_runtime.py
    proves in a subprocess that the runtime commands never load torch)."""
    for name, path in modules().items():
        if name.startswith(TORCH_SIDE):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            for imported in _names(node):
                assert imported != "torch" and not imported.startswith("torch."), f"{name} imports torch"
        for node in tree.body:
            for imported in _names(node):
                assert not imported.startswith(TORCH_SIDE), f"{name} imports {imported} at its top"


def _names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return []


def test_every_error_is_defined_in_errors_and_named_in_its_tree() -> None:
    """refinery/errors.py is the one place to look for what refinery raises: no module defines
    a subclass of one of its errors, and its docstring's tree names every class it defines."""
    from refinery import errors

    ours = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.RefineryError)
    }
    elsewhere = []
    for name, path in modules().items():
        if name == "refinery.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                (base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")) in ours for base in node.bases
            ):
                elsewhere.append(f"{name}.{node.name}")
    assert not elsewhere, f"errors defined outside refinery/errors.py: {elsewhere}"
    tree = errors.__doc__ or ""
    unnamed = [name for name in ours if not re.search(rf"^[ │├└─]*{name}\b", tree, re.M)]
    assert not unnamed, f"refinery/errors.py's tree does not name {unnamed}"


def test_the_version_is_written_once() -> None:
    """pyproject.toml reads the version from refinery/__init__.py; the package's metadata, the
    CLI's --version and the module agree."""
    from importlib.metadata import version

    import refinery

    assert 'dynamic = ["version"]' in (REPO / "pyproject.toml").read_text()
    assert version(refinery.DISTRIBUTION) == refinery.__version__  # image-refinery on the package index


MAX_MODULE_LINES = 500  # a module a reader holds in mind at once
# A function that does one job, read without scrolling: its body, docstring included (the
# formatter writes a command's options one per line in its signature).
MAX_FUNCTION_LINES = 60


def test_modules_and_functions_stay_short() -> None:
    long_modules, long_functions = [], []
    for name, path in sorted(modules().items()):
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                lines = node.end_lineno - node.body[0].lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {lines} lines")
    assert not long_modules, f"over {MAX_MODULE_LINES} lines: {long_modules} - split by responsibility"
    assert not long_functions, f"over {MAX_FUNCTION_LINES} lines: {long_functions} - give each part a name"
