"""The command line's checks of its inputs, outputs and params: run before a model loads or a
flow starts Prefect's temporary server, so a bad argument is one line in a second, not an error
minutes into a run."""

from __future__ import annotations

import os
from pathlib import Path

from eamm.errors import EammError
from eamm.stages import DATASETS, manifest_path


def require_input(option: str, path: Path | None, stream: str | None = None) -> None:
    """Fail now, naming ``option``, unless ``path`` exists (and ffprobe finds a ``stream`` in it,
    or it decodes as an ``image``): before models load, not minutes later."""
    if path is None:
        return
    if path.is_dir():
        raise EammError(f"{path}: a folder, not a file ({option})")
    if stream is None or stream == "image":
        if not path.is_file():
            raise EammError(f"{path}: file does not exist ({option})")
        if stream == "image":  # decoded as generation decodes it (ffprobe passes any .jpg)
            from eamm.media.image import read_image

            try:
                read_image(path)
            except EammError as err:
                raise EammError(f"{err} ({option})") from None
        return
    from eamm.media import probe

    try:
        info = probe(path)
    except EammError as err:
        raise EammError(f"{err} ({option})") from None
    if getattr(info, stream) is None:
        raise EammError(f"{path}: no {stream} stream ({option})")


def require_utf8(option: str, path: Path) -> None:
    """Paths go into Parquet, JSON and reports as UTF-8: a name in other bytes (a Latin-1
    disk) is refused now, not as a UnicodeEncodeError after the run's work."""
    try:
        str(path).encode()
    except UnicodeEncodeError:
        shown = str(path).encode(errors="surrogateescape").decode(errors="backslashreplace")
        raise EammError(f"{shown}: the path is not UTF-8; rename it ({option})") from None


def require_dir(option: str, path: Path | None) -> None:
    if path is not None:
        require_utf8(option, path)
        if not path.is_dir():
            what = "a file, not a folder" if path.exists() else "folder does not exist"
            raise EammError(f"{path}: {what} ({option})")


def require_raw(dataset: str, raw: Path | None) -> None:
    """A raw folder that cannot hold the dataset is refused now (the flow found it after
    Prefect's server had started, 15 s later): an empty folder, an LRW one without its
    ``lipread_mp4`` folder. Stops at the folder's first entry: cheap on a full download."""
    require_dir("--raw", raw)
    if raw is None:
        return
    with os.scandir(raw) as entries:
        if next(entries, None) is None:
            raise EammError(f"{raw}: an empty folder, no {dataset.upper()} clips in it (--raw)")
    if dataset == "lrw":
        from eamm.datasets.lrw import require_layout

        try:
            require_layout(raw)
        except EammError as err:
            raise EammError(f"{err} (--raw)") from None


def require_out(option: str, path: Path, folder: bool) -> None:
    """Fail now where ``path`` cannot be written as asked: a file in place of the folder to
    write (or a folder in place of the file), or a file where one of its parents should be;
    never replace a user's file with an output folder."""
    require_utf8(option, path)
    want = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        found = "a folder" if path.is_dir() else "a file"
        raise EammError(f"{path}: is {found}, not the {want} to write ({option})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise EammError(f"{path}: {parent} is a file, not a folder ({option})")
            return


def require_report_folder(out: Path) -> None:
    """Fail now where the report cannot be written or would replace a training stage's files:
    a folder holding a checkpoint (its metrics.json is the stage's), a folder where a report
    file goes, a file where the evaluation's journal goes."""
    from eamm.evaluation_journal import JOURNAL_DIR
    from eamm.report import REPORT_FILES
    from eamm.stages import CHECKPOINT_NAME

    if (out / CHECKPOINT_NAME).exists():
        raise EammError(
            f"{out}: holds a training stage's {CHECKPOINT_NAME}; the report's metrics.json would "
            "replace the stage's (--out: give a folder of its own)"
        )
    for name in REPORT_FILES:
        if (out / name).is_dir():
            raise EammError(f"{out / name}: a folder where the report writes a file (--out)")
    journal = out / JOURNAL_DIR
    for path in (journal, *(journal / d for d in DATASETS)):
        if path.exists() and not path.is_dir():
            raise EammError(f"{path}: a file where the evaluation keeps its journal folder")


def check_params(path: Path, *sections: str) -> None:
    """Validate the params sections a flow reads now, not after it has started Prefect's server."""
    from eamm import config

    if path.is_dir():
        raise EammError(f"{path}: a folder, not a params file (--params)")
    if not path.is_file():  # the pipeline's commands read the project's params, not defaults
        where = "" if path.is_absolute() else f" in {Path.cwd()}"
        raise EammError(
            f"{path}: params file not found{where} (--params); run it in the project folder "
            "or pass --params FILE"
        )
    models = {
        "sample_data": config.SampleDataParams,
        "datasets": config.DatasetsParams,
        "preprocess": config.PreprocessParams,
        "preprocess_run": config.PreprocessRunParams,
        "trainer": config.TrainerParams,
        "generate": config.GenerateParams,
        "evaluate": config.EvaluateParams,
    }
    for section in sections:
        config.load_section(path, section, models[section])


def check_evaluation(params: Path, data_root: Path, checkpoints: Path, out: Path) -> None:
    """Everything `eamm evaluate` needs, checked before Prefect starts: its params, a free
    report folder, the metrics' weights and dlib where asked, each dataset's manifest (of that
    dataset), the checkpoints it renders with and the judges' records."""
    check_params(params, "evaluate", "generate")
    require_out("--out", out, folder=True)
    from eamm.folder_lock import ensure_free

    ensure_free(out, "evaluation")  # a second evaluation into this folder stops now
    from eamm.train.recipe import resolve_evaluate

    settings = resolve_evaluate(params)
    if settings.resolved().landmarker == "dlib68":  # `eat` without dlib: one line, no server
        from eamm.metrics.dlib68 import require_dlib

        require_dlib()
    for setting in ("syncnet_weights", "fid_weights"):
        weights = getattr(settings, setting)
        require_input(f"evaluate.{setting}", Path(weights) if weights else None)
    for dataset in settings.datasets:
        require_input("evaluate.datasets", manifest_path(data_root, dataset))
    from eamm.stages import checkpoint_path

    require_input("--checkpoints", checkpoint_path(checkpoints, "train_fomm"))
    if not checkpoint_path(checkpoints, "finetune_a2fd").is_file():  # else stage 1's audio
        require_input("--checkpoints", checkpoint_path(checkpoints, "train_a2fd"))
    require_report_folder(out)  # (imports torch: after the quick checks)
    from eamm.evidence import judge_summary

    judge_summary(checkpoints, settings.resolved().vshift)  # a damaged judge metrics.json: now
    from eamm.manifest import require_dataset

    for dataset in settings.datasets:  # another dataset's manifest in its place
        require_dataset(manifest_path(data_root, dataset), dataset)
