"""The import rules of the architecture (README, "Layout"), checked on the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCORING_CORE = ("scoring", "explain", "preprocess", "schema")
# what writes files or talks to MLflow / Prefect: never behind the scoring core
IO_MODULES = (
    "outputs",
    "batch",
    "registry",
    "tracking",
    "promotion",
    "promotion_history",
    "report",
    "monitoring",
)
# one concept per module: sizes that stay readable (README, "Layout")
MAX_MODULE_LINES, MAX_CLASS_LINES = 400, 300


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _module_path(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (
        ROOT.joinpath(*parts).with_suffix(".py"),
        ROOT.joinpath(*parts, "__init__.py"),
    ):
        if candidate.is_file():
            return candidate
    return None


def _closure(start: str) -> set[str]:
    """``start`` and every project module it imports, transitively."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        path = _module_path(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        todo += [m for m in _imports(path) if m.split(".")[0] in ("vae", "pipeline", "flows")]
    return seen


def test_imports_go_one_way_vae_pipeline_flows():
    for path in (ROOT / "vae").glob("*.py"):
        third = {m.split(".")[0] for m in _imports(path)}
        assert not third & {"pipeline", "flows", "pandas", "sklearn", "mlflow", "prefect"}, path
    for path in (ROOT / "pipeline").rglob("*.py"):
        assert not {m for m in _imports(path) if m.split(".")[0] == "flows"}, path


def test_the_scoring_core_imports_nothing_that_writes_files_or_talks_to_mlflow():
    for core in SCORING_CORE:
        reached = _closure(f"pipeline.{core}")
        leaks = {m for m in reached if m.split(".")[1:2] and m.split(".")[1] in IO_MODULES}
        assert not leaks, (core, leaks)
        for name in reached:
            path = _module_path(name)
            assert path is not None
            assert not {m.split(".")[0] for m in _imports(path)} & {"mlflow", "prefect"}, name


def test_model_ref_and_the_scoring_loop_load_without_mlflow():
    code = (
        "import sys; from pipeline.registry import ModelRef; import pipeline.batch; "
        "assert 'mlflow' not in sys.modules, 'mlflow imported'"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr


def test_no_module_over_400_lines_and_no_class_over_300():
    too_long = []
    for package in ("vae", "pipeline", "flows"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            if len(text.splitlines()) > MAX_MODULE_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_CLASS_LINES:
                        too_long.append(f"{path.relative_to(ROOT)}: class {node.name} {lines}")
    assert not too_long, too_long
