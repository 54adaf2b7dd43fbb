"""Layers only point down: the library (``eamm``) imports neither ``tasks`` nor ``flows``, and
inference (generation, evaluation, the judges, the report, the metrics) never imports training.
Every import in a file counts, those inside functions too (``ast``, nothing is imported here).

The CLI sits in the top layer (``flows/cli.py``) without loading Prefect: the ``flows`` package
sets Prefect up through ``flows.local``, which every flow module imports.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from eamm.pipeline_deps import import_closure

ROOT = Path(__file__).resolve().parents[1]
INFERENCE = [
    "eamm/generate.py",
    "eamm/evaluate.py",
    *sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "eamm" / "judges").glob("*.py")
        if p.name != "training.py"
    ),
    "eamm/evidence.py",
    "eamm/report.py",
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "eamm" / "metrics").rglob("*.py")),
]


def imported(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of every module an import anywhere in ``path`` names (relative ones
    resolved against the file's package); for ``from pkg import name`` both ``pkg`` and
    ``pkg.name``."""
    relative = path.relative_to(root).with_suffix("")
    parts = relative.parts[:-1] if relative.name != "__init__" else relative.parts
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*package, node.module] if node.module else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_imported_sees_relative_and_lazy_imports(tmp_path):
    module = tmp_path / "eamm" / "sub" / "mod.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from ..train import loop\n    import flows.cli\n")
    assert {"eamm.train", "eamm.train.loop", "flows.cli"} <= imported(module, tmp_path)


@pytest.mark.parametrize(
    "path",
    sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "eamm").rglob("*.py")),
)
def test_library_imports_neither_tasks_nor_flows(path):
    bad = sorted(n for n in imported(ROOT / path) if _under(n, "flows") or _under(n, "tasks"))
    assert not bad, f"{path} imports {bad}: eamm/ is the bottom layer (move the code up)"


@pytest.mark.parametrize("path", INFERENCE)
def test_inference_does_not_import_training(path):
    training = ("eamm.train", "eamm.judges.training")
    bad = sorted(n for n in imported(ROOT / path) if any(_under(n, t) for t in training))
    assert not bad, f"{path} imports {bad}: move what both use out of the training code"


PREFECT_MODULES = sorted(
    p.stem
    for p in (ROOT / "flows").glob("*.py")
    if any(n.split(".")[0] == "prefect" for n in imported(p)) and p.stem != "local"
)


def test_prefect_modules_are_found():
    assert {"evaluate", "index", "preprocess", "runners", "train"} <= set(PREFECT_MODULES)


@pytest.mark.parametrize("name", PREFECT_MODULES)
def test_every_prefect_module_sets_prefect_up(name):
    assert "flows/local.py" in import_closure(ROOT, [f"flows.{name}"]), (
        f"flows/{name}.py uses Prefect: import flows.local (Prefect set up before a flow runs)"
    )


def test_cli_imports_no_prefect():
    """``eamm --help`` and the single-clip commands start without Prefect's import (seconds)."""
    code = (
        "import sys, flows.cli; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'torch')); "
        "print(loaded[:5]); sys.exit(bool(loaded))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, f"importing flows.cli loads {result.stdout}{result.stderr}"


def prefect_names() -> list[tuple[str, str]]:
    """(kind, name) of every ``flow(name=...)`` and ``task(name=...)`` in flows/ and tasks/."""
    found = []
    for path in sorted([*(ROOT / "flows").glob("*.py"), *(ROOT / "tasks").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("flow", "task"):
                for keyword in node.keywords:
                    if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                        found.append((node.func.id, keyword.value.value))
    return found


def test_flow_and_task_names_are_unique():
    """A run in the Prefect UI names one thing: no flow shares its name with a task."""
    names = [name for _, name in prefect_names()]
    assert {kind for kind, _ in prefect_names()} == {"flow", "task"}
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
