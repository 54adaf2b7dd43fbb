"""dvc.yaml's code deps are the import graph's (eamm/pipeline_deps.py); no Prefect, no data."""

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
