"""Every file of the project that the docs, the benchmarks' notes and the docstrings name
exists where they say: a file that moved leaves no stale pointer behind."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO

# A path the project's own text cites: from the repository's root (refinery/dedup/run.py), or
# from inside the package as the code's comments write it (dedup/run.py, stages/scenes.py).
CITED = re.compile(
    r"(?<![\w/.-])((?:refinery|benchmarks|tests|docs|\.ci|dedup|io|cli|export|runner|retrieval|"
    r"review|train|configs|stages|engines)/[\w/.-]*\w\.(?:py|md|toml|json|sh|js|css|html))"
)
ROOTS = (REPO, REPO / "refinery", REPO / "refinery" / "dedup")


def texts() -> list[Path]:
    found = [
        REPO / "README.md",
        *(REPO / "docs").glob("*.md"),
        *(REPO / "benchmarks").glob("*.md"),
        *(REPO / "benchmarks").glob("*.py"),
        *(REPO / "refinery").rglob("*.py"),
        *(REPO / "tests").glob("*.py"),
    ]
    here = Path(__file__).resolve()  # not this file: its examples are stale on purpose
    return [path for path in found if path.exists() and path.resolve() != here]


def test_every_cited_project_path_exists() -> None:
    stale = sorted(
        {
            f"{path.relative_to(REPO)}: {cited}"
            for path in texts()
            for cited in CITED.findall(path.read_text(encoding="utf-8"))
            if not any((root / cited).exists() for root in ROOTS)
        }
    )
    assert not stale, "cited paths that do not exist:\n" + "\n".join(stale)


def test_a_stale_citation_is_found() -> None:
    """The pattern finds the citations it is meant to (a test that cannot fail is a defect)."""
    text = "see refinery/journal.py and dedup/stages/near.py, not OUT/model.onnx or http://x.org/a/b.py"
    assert CITED.findall(text) == ["refinery/journal.py", "dedup/stages/near.py"]


def test_every_name_the_benchmarks_and_tests_import_from_refinery_exists() -> None:
    """A benchmark is run by hand, months apart: a name it imports that moved would only
    show when someone needs its figures (benchmarks/retrieval_index.py imported HNSW_M from
    where it no longer was)."""
    import ast
    import importlib

    missing = []
    for path in [*(REPO / "benchmarks").glob("*.py"), *(REPO / "tests").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("refinery"):
                try:
                    module = importlib.import_module(node.module or "")
                except ImportError as e:  # an extra this install lacks (torch, ray) is not a stale name
                    if (e.name or "").startswith("refinery"):
                        missing.append(f"{path.name}: {node.module}")
                    continue
                missing += [f"{path.name}: {node.module}.{a.name}" for a in node.names if not has(module, a.name)]
    assert not missing, missing


def has(module: object, name: str) -> bool:
    """`name` is an attribute of `module`, or a submodule of it (`from refinery import features`)."""
    import importlib

    if hasattr(module, name):
        return True
    try:
        importlib.import_module(f"{getattr(module, '__name__', '')}.{name}")
    except ImportError:
        return False
    return True
