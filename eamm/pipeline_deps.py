"""The code dependencies of each ``dvc.yaml`` stage, computed from the import graph.

A stage's command is ``eamm <command> ...``; its function in ``flows/cli.py`` imports what it runs
(``from flows.train import train_flow``, lazily). Starting from those imports, the module-level
imports of ``flows/cli.py`` (and its package, ``flows``) and those of the cli helpers the command
calls (in ``flows/cli.py`` and in ``flows/preflight.py``, its argument checks), this follows every
``import``/``from ... import`` in the project packages (``eamm``, ``tasks``, ``flows``) with
``ast``, function bodies included: a lazy import may run, and depending on too much only reruns a
stage, while depending on too little leaves its outputs stale. Each imported module brings the
``__init__.py`` of every package above it, and the package data files it reads
(``PACKAGE_DATA``). ``flows/cli.py`` and ``flows/preflight.py`` themselves are left out: they only
parse and check arguments, and every stage would rerun on any change to any command. A folder
every file of which is needed is listed as the folder.

    python -m eamm.pipeline_deps --check   # exit 1, listing per stage the missing and extra deps
    python -m eamm.pipeline_deps --write   # rewrite the code deps in dvc.yaml (nothing else)
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
import sys
from pathlib import Path

from ruamel.yaml import YAML

PACKAGES = ("eamm", "tasks", "flows")
CLI = "flows/cli.py"
# Modules of the commands' helpers, followed per function as flows/cli.py is (not whole).
CLI_FILES = (CLI, "flows/preflight.py")

# Non-Python files a module opens (through ``Path(__file__)``), added with that module. A new data
# file under eamm/ must be listed here: tests/test_dvc_deps.py fails on one that is not.
PACKAGE_DATA: dict[str, tuple[str, ...]] = {
    "eamm/face/template.py": ("eamm/face/data/template68.npy",),
    "eamm/metrics/dlib68.py": ("eamm/face/data/template68.npy",),
    "eamm/report.py": ("eamm/metrics/published_mead.yaml",),
}

_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


def module_file(root: Path, module: str) -> str | None:
    """The project file (relative, posix) of a dotted module name, or None outside the project."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / candidate).is_file():
            return candidate.as_posix()
    return None


def _module_name(path: str) -> str:
    parts = Path(path).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: str) -> str:
    """The package a file's relative imports start from."""
    name = _module_name(path)
    return name if path.endswith("__init__.py") else name.rpartition(".")[0]


def imported_modules(tree: ast.AST, path: str) -> list[str]:
    """Every module name an ``import`` anywhere in ``tree`` (functions included) may load; for
    ``from pkg import name`` both ``pkg`` and ``pkg.name`` (``name`` may be a submodule)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(path).split(".")
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, node.module] if node.module else package)
            else:
                base = node.module or ""
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _with_parents(root: Path, module: str) -> list[str]:
    """The module's file and the ``__init__.py`` of every package above it."""
    parts = module.split(".")
    files = []
    for i in range(1, len(parts) + 1):
        found = module_file(root, ".".join(parts[:i]))
        if found is not None:
            files.append(found)
    return files


def import_closure(root: Path, modules: list[str]) -> set[str]:
    """Project files (relative, posix) the given modules load, transitively, with package data."""
    seen: set[str] = set()
    todo = [f for m in modules for f in _with_parents(root, m)]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse((root / path).read_text(), filename=path)
        for name in imported_modules(tree, path):
            todo.extend(_with_parents(root, name))
    return seen | {data for path in seen for data in PACKAGE_DATA.get(path, ())}


def _command_name(decorator: ast.expr) -> tuple[str, str | None] | None:
    """(typer variable, explicit name) of an ``@<var>.command(...)`` decorator."""
    if not (
        isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Attribute)
        and decorator.func.attr == "command"
        and isinstance(decorator.func.value, ast.Name)
    ):
        return None
    args = decorator.args
    name = args[0].value if args and isinstance(args[0], ast.Constant) else None
    return decorator.func.value.id, name


def cli_commands(root: Path) -> dict[tuple[str, ...], list[str]]:
    """Each ``eamm`` command (its words, e.g. ``("manifest", "summary")``) and the modules it
    imports: its own, its cli helpers' (transitively), ``flows/cli.py``'s module-level ones and its
    package (running the CLI imports ``flows/__init__.py``)."""
    trees = {path: ast.parse((root / path).read_text(), filename=path) for path in CLI_FILES}
    tree = trees[CLI]
    helpers = {_module_name(path) for path in CLI_FILES}
    functions = {  # name -> (function, its file)
        n.name: (n, path)
        for path, module in trees.items()
        for n in module.body
        if isinstance(n, ast.FunctionDef)
    }
    prefixes: dict[str, tuple[str, ...]] = {"app": ()}  # app.add_typer(sub, name="manifest")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_typer"
            and node.args
            and isinstance(node.args[0], ast.Name)
        ):
            for keyword in node.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    prefixes[node.args[0].id] = (keyword.value.value,)
    top = [
        _package_of(CLI),
        *(
            module
            for path, module_tree in trees.items()
            for node in module_tree.body
            if isinstance(node, ast.Import | ast.ImportFrom)
            for module in imported_modules(node, path)
            if module not in helpers and module.rpartition(".")[0] not in helpers
        ),
    ]
    commands: dict[tuple[str, ...], list[str]] = {}
    for function, _ in functions.values():
        for decorator in function.decorator_list:
            found = _command_name(decorator)
            if found is None or found[0] not in prefixes:
                continue
            var, name = found
            words = (*prefixes[var], name or function.name.replace("_", "-"))
            modules, todo, done = list(top), [(function, CLI)], set()
            while todo:
                current, path = todo.pop()
                if current.name in done:
                    continue
                done.add(current.name)
                modules.extend(imported_modules(current, path))
                todo.extend(
                    functions[n.func.id]
                    for n in ast.walk(current)
                    if isinstance(n, ast.Call)
                    and isinstance(n.func, ast.Name)
                    and n.func.id in functions
                )
            commands[words] = modules
    return commands


def collapse(root: Path, files: set[str]) -> list[str]:
    """Sorted deps: a folder under a project package whose every file is in ``files`` replaces
    those files (the topmost such folder; never a whole top-level package)."""

    listed: dict[Path, set[str]] = {}

    def all_files(folder: Path) -> set[str]:
        if folder not in listed:
            listed[folder] = {
                p.relative_to(root).as_posix()
                for p in folder.rglob("*")
                if p.is_file()
                and p.suffix not in _SKIP_SUFFIXES
                and not _SKIP_DIRS & set(p.relative_to(root).parts)
            }
        return listed[folder]

    deps: set[str] = set()
    for path in files:
        parts = Path(path).parts
        for depth in range(2, len(parts)):  # eamm/<dir>, eamm/<dir>/<dir>, ...
            folder = Path(*parts[:depth])
            if all_files(root / folder) <= files:
                deps.add(folder.as_posix())
                break
        else:
            deps.add(path)
    return sorted(deps)


def is_code_dep(dep: str) -> bool:
    return dep.split("/")[0] in PACKAGES


def _stage_cmd(stage: dict) -> str:
    cmd = stage["cmd"]
    return cmd if isinstance(cmd, str) else cmd[0]


def stage_code_deps(root: Path, dvc_yaml: dict) -> dict[str, list[str]]:
    """For each stage that runs ``eamm <command>``, its computed code deps (collapsed, sorted)."""
    commands = cli_commands(root)
    result = {}
    for name, stage in dvc_yaml["stages"].items():
        words = shlex.split(_stage_cmd(stage))
        if not words or words[0] != "eamm":
            continue
        args = [w for w in words[1:] if not w.startswith("-")]
        matches = [c for c in commands if tuple(args[: len(c)]) == c]
        if not matches:
            raise ValueError(f"stage {name}: no eamm command matches {_stage_cmd(stage)!r}")
        modules = commands[max(matches, key=len)]
        files = import_closure(root, modules) - set(CLI_FILES)
        result[name] = collapse(root, files)
    return result


def declared_code_deps(dvc_yaml: dict) -> dict[str, list[str]]:
    return {
        name: [d for d in stage.get("deps", []) if isinstance(d, str) and is_code_dep(d)]
        for name, stage in dvc_yaml["stages"].items()
    }


def load(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


def differences(root: Path, dvc_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Per stage whose code deps differ: (missing from dvc.yaml, extra in dvc.yaml)."""
    spec = load(dvc_path)
    declared = declared_code_deps(spec)
    found = {}
    for name, computed in stage_code_deps(root, spec).items():
        missing = sorted(set(computed) - set(declared[name]))
        extra = sorted(set(declared[name]) - set(computed))
        if missing or extra:
            found[name] = (missing, extra)
    return found


_STAGE = re.compile(r"^  ([A-Za-z0-9_-]+):\s*(#.*)?$")
_DEPS = re.compile(r"^    deps:\s*(#.*)?$")
_ITEM = re.compile(r"^      - (\S+)")


def rewrite(text: str, computed: dict[str, list[str]]) -> str:
    """``dvc.yaml`` text with each stage's code-dep items replaced by ``computed``; every other
    line (data deps, params, outs, comments) kept as it is. Code deps go where the first one was,
    else after the stage's last dep."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    stage = None
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _STAGE.match(line)
        if match:
            stage = match.group(1)
        if stage in computed and _DEPS.match(line):
            out.append(line)
            i += 1
            items: list[str] = []
            while i < len(lines) and lines[i].startswith(("      - ", "      #", "        ")):
                items.append(lines[i])
                i += 1
            kept: list[str] = []
            at = None
            for item in items:
                dep = _ITEM.match(item)
                if dep and is_code_dep(dep.group(1)):
                    at = len(kept) if at is None else at
                else:
                    kept.append(item)
            at = len(kept) if at is None else at
            new = [f"      - {dep}\n" for dep in computed[stage]]
            out.extend(kept[:at] + new + kept[at:])
            continue
        out.append(line)
        i += 1
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eamm.pipeline_deps", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml's code deps differ")
    mode.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps")
    parser.add_argument("--root", type=Path, default=Path("."), help="project root")
    args = parser.parse_args(argv)
    dvc_path = args.root / "dvc.yaml"
    if args.write:
        computed = stage_code_deps(args.root, load(dvc_path))
        text = dvc_path.read_text()
        updated = rewrite(text, computed)
        if updated != text:
            dvc_path.write_text(updated)
        print(f"{dvc_path}: code deps {'updated' if updated != text else 'already current'}")
        return 0
    diff = differences(args.root, dvc_path)
    for stage, (missing, extra) in diff.items():
        for dep in missing:
            print(f"{stage}: missing {dep}")
        for dep in extra:
            print(f"{stage}: extra {dep}")
    if diff:
        print("run `python -m eamm.pipeline_deps --write` to update dvc.yaml", file=sys.stderr)
        return 1
    print(f"{dvc_path}: code deps match the imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
