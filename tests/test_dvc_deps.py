"""dvc.yaml's code deps are the import graph's (eamm/pipeline_deps.py); no Prefect, no data."""

import json
import os
import subprocess
import sys
from pathlib import Path

from eamm import pipeline_deps
from eamm.pipeline_deps import (
    PACKAGE_DATA,
    collapse,
    declared_code_deps,
    differences,
    import_closure,
    rewrite,
)

ROOT = Path(__file__).resolve().parents[1]


def test_dvc_yaml_code_deps_match_imports():
    diff = differences(ROOT, ROOT / "dvc.yaml")
    assert not diff, f"dvc.yaml is stale: run `python -m eamm.pipeline_deps --write`: {diff}"


def test_dvc_lock_holds_the_current_code_and_params():
    """No code dep or param of any stage changed since dvc.lock was written: a commit that
    changes a stage's code without refreshing the lock makes a fresh clone's `make demo` re-run
    that stage for nothing (eamm/media's hash was stale for one commit). Data, checkpoints and
    reports may be absent (a clean clone) or another run's; those are not compared."""
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
        check=True,
    )
    outputs = ("data/", "models/", "outputs/", "reports/")
    stale = {
        stage: [path for path in change["changed deps"] if not path.startswith(outputs)]
        for stage, changes in json.loads(status.stdout or "{}").items()
        for change in changes
        if isinstance(change, dict) and "changed deps" in change
    }
    stale = {stage: paths for stage, paths in stale.items() if paths}
    assert not stale, f"dvc.lock is stale (run `dvc repro` and commit dvc.lock): {stale}"


def test_known_stale_cases_are_covered():
    deps = declared_code_deps(pipeline_deps.load(ROOT / "dvc.yaml"))
    assert "eamm/generate.py" in deps["evaluate"]
    assert {"eamm/models", "eamm/face", "eamm/audio"} <= set(deps["generate_demo"])
    assert {"eamm/shards.py", "eamm/manifest.py", "eamm/smoothing.py"} <= set(deps["train_fomm"])


def test_package_data_is_declared():
    """Every non-Python file under eamm/ is listed in PACKAGE_DATA (with the module reading it)."""
    data = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "eamm").rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    }
    declared = {f for files in PACKAGE_DATA.values() for f in files}
    assert data <= declared, f"add to PACKAGE_DATA: {sorted(data - declared)}"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_lazy_and_from_package_imports_are_followed(tmp_path):
    _write(
        tmp_path,
        {
            "flows/__init__.py": "",
            "flows/run.py": "def main():\n    from eamm.sub import lazy\n",
            "eamm/__init__.py": "",
            "eamm/sub/__init__.py": "",
            "eamm/sub/lazy.py": "from . import helper\n",
            "eamm/sub/helper.py": "import os\n",
            "eamm/unused.py": "",
        },
    )
    files = import_closure(tmp_path, ["flows.run"])
    assert files == {
        "flows/__init__.py",
        "flows/run.py",
        "eamm/__init__.py",
        "eamm/sub/__init__.py",
        "eamm/sub/lazy.py",
        "eamm/sub/helper.py",
    }
    # every file of eamm/sub is needed: listed as the folder; eamm itself never collapses
    assert collapse(tmp_path, files) == [
        "eamm/__init__.py",
        "eamm/sub",
        "flows/__init__.py",
        "flows/run.py",
    ]


def test_rewrite_touches_only_code_deps():
    text = (
        "stages:\n"
        "  a:\n"
        "    cmd: eamm x\n"
        "    deps:\n"
        "      - data/in.parquet   # a data dep\n"
        "      - eamm/old.py\n"
        "      - models/m.pt\n"
        "    outs:\n"
        "      - out\n"
    )
    assert rewrite(text, {"a": ["eamm/new.py", "flows/x.py"]}) == (
        "stages:\n"
        "  a:\n"
        "    cmd: eamm x\n"
        "    deps:\n"
        "      - data/in.parquet   # a data dep\n"
        "      - eamm/new.py\n"
        "      - flows/x.py\n"
        "      - models/m.pt\n"
        "    outs:\n"
        "      - out\n"
    )


def test_preflight_helpers_count_for_the_commands_that_call_them(tmp_path):
    """flows/preflight.py is followed per function, as flows/cli.py is: a check's lazy import is
    a dep of the commands calling it only, and neither file is a stage's dep itself."""
    _write(
        tmp_path,
        {
            "flows/__init__.py": "",
            "flows/cli.py": (
                "from flows.preflight import check_a, check_b\n"
                "@app.command()\ndef one():\n    check_a()\n    from eamm import run_one\n"
                "@app.command()\ndef two():\n    check_b()\n"
            ),
            "flows/preflight.py": (
                "from eamm import base\n"
                "def check_a():\n    from eamm import for_a\n"
                "def check_b():\n    from eamm import for_b\n"
            ),
            "eamm/__init__.py": "",
            **{f"eamm/{name}.py": "" for name in ("base", "run_one", "for_a", "for_b")},
        },
    )
    commands = pipeline_deps.cli_commands(tmp_path)
    deps = {
        words: import_closure(tmp_path, modules) - set(pipeline_deps.CLI_FILES)
        for words, modules in commands.items()
    }
    common = {"flows/__init__.py", "eamm/__init__.py", "eamm/base.py"}
    assert deps[("one",)] == common | {"eamm/run_one.py", "eamm/for_a.py"}
    assert deps[("two",)] == common | {"eamm/for_b.py"}


def test_evaluate_tracks_the_generate_settings_it_reads():
    """The evaluate stage lists each ``generate`` key the evaluation reads, not the group: an
    edit to ``crf``, ``seed`` or ``pose_smoothing`` (``eamm generate``'s alone) re-ran the whole
    evaluation. Every ``GenerateParams`` field is in params.yaml, so DVC sees each edit."""
    import yaml

    from eamm.config import GENERATION_ONLY, GenerateParams

    read = {f"generate.{k}" for k in GenerateParams.model_fields if k not in GENERATION_ONLY}
    evaluate = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]["params"]
    assert {p for p in evaluate if p.startswith("generate")} == read
    written = yaml.safe_load((ROOT / "params.yaml").read_text())["generate"]
    assert set(written) == set(GenerateParams.model_fields)
