"""Dependencies point one way: the summarizer uses the shared infrastructure only, the workers never import the
summarizer or the demo (only the command line, ``workers/cli.py`` and ``workers/commands/``, imports both), and
imports sit at the top of their module (a function-local import hid the cycles this rule removed)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# what the summarizer may use of the workers package: infrastructure, no worker
SHARED = {"workers.couch", "workers.settings", "workers.errors", "workers.logs", "workers.audit",
          "workers.provision", "workers.dbnames"}
COMMAND_LINE = ("workers/cli.py", "workers/commands/")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at the top of the file) for every import of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    out: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(f"{node.module}.{alias.name}" if node.module in ("workers", "summarizer", "demo")
                     else node.module, id(node) in top) for alias in node.names]
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_summarizer_uses_the_shared_infrastructure_only() -> None:
    wrong = [(str(path.relative_to(ROOT)), module) for path in _modules("summarizer")
             for module, _ in _imports(path)
             if module.startswith(("workers.", "demo")) and not any(module == s or module.startswith(s + ".")
                                                                   for s in SHARED)]
    assert wrong == []


def test_only_the_command_line_imports_the_summarizer_or_the_demo() -> None:
    wrong = [(str(path.relative_to(ROOT)), module) for path in _modules("workers")
             if not str(path.relative_to(ROOT)).startswith(COMMAND_LINE)
             for module, _ in _imports(path) if module.split(".")[0] in ("summarizer", "demo")]
    assert wrong == []


def test_imports_of_the_project_sit_at_the_top_of_their_module() -> None:
    hidden = [(str(path.relative_to(ROOT)), module) for package in ("workers", "summarizer", "demo")
              for path in _modules(package) for module, at_top in _imports(path)
              if not at_top and module.split(".")[0] in ("workers", "summarizer", "demo", "validators")]
    assert hidden == []
