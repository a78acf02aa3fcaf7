"""The house: no import points up a layer, and no function-level import dodges a cycle.

The layers are import-linter's contract in pyproject.toml (`lint-imports` checks it); the tests
also break a copy of the tree on purpose, so a contract that no longer bites fails here too."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("synctwin", "agents", "world", "scenarios", "harness")
# Entry points import lazily so `synctwin --help` does not load numpy, scipy and FastAPI, and the
# pytest plugin so that pytest runs of other projects in the same environment stay light. Nowhere
# else: a function-level import there would hide a cycle.
LAZY_ALLOWED = ("synctwin/app/", "harness/pytest_plugin.py")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(exe), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy_tree(dst: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "builtin"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_no_import_points_up_a_layer() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_the_layer_contract_catches_an_upward_import(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    (tree / "world" / "peek.py").write_text("from agents.syncflow.guards import MarginGuardian  # noqa\n")
    done = _lint_imports(tree)
    assert done.returncode != 0 and "world.peek -> agents.syncflow.guards" in done.stdout, done.stdout[-3000:]


def function_level_imports(root: Path) -> list[str]:
    """`path:line module` for every import of a project module inside a function, outside LAZY_ALLOWED."""
    found = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(LAZY_ALLOWED):
                continue
            for fn in ast.walk(ast.parse(path.read_text())):
                if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and not node.level:
                        names = [node.module or ""]
                    else:
                        continue
                    found += [f"{rel}:{node.lineno} {n}" for n in names if n.split(".")[0] in PACKAGES]
    return found


def test_no_function_level_import_of_the_project_outside_the_entry_points() -> None:
    assert function_level_imports(ROOT) == []


def test_the_function_level_check_sees_a_hidden_import(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    (tree / "agents" / "hidden.py").write_text("def f():\n    from synctwin.kernel.models import Strategy\n")
    assert function_level_imports(tree) == ["agents/hidden.py:2 synctwin.kernel.models"]


@pytest.mark.parametrize("package", ["world", "synctwin/kernel", "synctwin/infra"])
def test_lower_layers_name_no_agent(package: str) -> None:
    """Belt and braces for the two rules newcomers break first: the world and the kernel know no agent."""
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                assert not node.module.startswith(("agents", "harness", "synctwin.app", "synctwin.services")), (
                    f"{path.relative_to(ROOT)} imports {node.module}"
                )
