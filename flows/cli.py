"""The ``eamm`` command line. Commands that run a pipeline step start its Prefect flow
(imported lazily, so the library itself never imports Prefect); the single-clip commands call the
library directly unless ``PREFECT_API_URL`` names a server. Errors are one line on stderr (the
traceback with ``--debug``), and inputs and params are checked before a model loads or a flow
starts Prefect's temporary server."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from eamm.errors import EammError
from eamm.runtime import (
    DEBUG_ENV,
    checkpoints_folder,
    configure_environment,
    debug_enabled,
    generate_settings,
    load_settings,
    params_file,
    prefect_api_configured,
    project_root,
)
from eamm.stages import DATASETS, manifest_path

app = typer.Typer(
    help="Reproducible EAMM: preprocessing, training, generation and evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()


def _require_input(option: str, path: Path | None, stream: str | None = None) -> None:
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


def _require_utf8(option: str, path: Path) -> None:
    """Paths go into Parquet, JSON and reports as UTF-8: a name in other bytes (a Latin-1
    disk) is refused now, not as a UnicodeEncodeError after the run's work."""
    try:
        str(path).encode()
    except UnicodeEncodeError:
        shown = str(path).encode(errors="surrogateescape").decode(errors="backslashreplace")
        raise EammError(f"{shown}: the path is not UTF-8; rename it ({option})") from None


def _require_dir(option: str, path: Path | None) -> None:
    if path is not None:
        _require_utf8(option, path)
        if not path.is_dir():
            what = "a file, not a folder" if path.exists() else "folder does not exist"
            raise EammError(f"{path}: {what} ({option})")


def _require_out(option: str, path: Path, folder: bool) -> None:
    """Fail now where ``path`` cannot be written as asked: a file in place of the folder to
    write (or a folder in place of the file), or a file where one of its parents should be;
    never replace a user's file with an output folder."""
    _require_utf8(option, path)
    want = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        found = "a folder" if path.is_dir() else "a file"
        raise EammError(f"{path}: is {found}, not the {want} to write ({option})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise EammError(f"{path}: {parent} is a file, not a folder ({option})")
            return


def _require_report_folder(out: Path) -> None:
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


def _check_params(path: Path, *sections: str) -> None:
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


@app.callback()
def _setup(
    debug: bool = typer.Option(False, "--debug", help="show tracebacks (Prefect's too)"),
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"  # child processes (task runners) inherit it
    configure_environment()


@app.command()
def doctor() -> None:
    """Check Python, torch/CUDA, ffmpeg/ffprobe, OpenCV, mediapipe models, Prefect and DVC."""
    from eamm.doctor import run_checks

    checks = run_checks()
    table = Table(title="eamm doctor", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for check in checks:
        table.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAIL[/]", check.detail)
    console.print(table)
    failed = [c for c in checks if not c.ok]
    for check in failed:
        print(f"missing: {check.name}: {check.detail}", file=sys.stderr)
    if failed:
        raise typer.Exit(1)


@app.command("sample-data")
def sample_data(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section sample_data)"),
    out: Path = typer.Option(Path("data/sample/raw"), help="output root (MEAD + LRW layouts)"),
    summary: Path = typer.Option(Path("data/sample/summary.json"), help="summary JSON"),
    portrait: Path | None = typer.Option(None, help="also write a portrait photo (PNG) here"),
) -> None:
    """Generate the bundled sample dataset (a Prefect flow; the DVC stage `sample_data`)."""
    _check_params(params, "sample_data")
    _require_out("--out", out, folder=True)
    from eamm.sample.dataset import check_replaceable_root

    try:  # before Prefect starts: a user's folder named by mistake is never replaced
        check_replaceable_root(out)
    except EammError as err:
        raise EammError(f"{err} (--out)") from None
    from eamm.folder_lock import ensure_output_free

    ensure_output_free(out, "sample-data run")  # a second run on this folder stops now
    _require_out("--summary", summary, folder=False)
    if portrait is not None:
        _require_out("--portrait", portrait, folder=False)
    from flows.sample_data import sample_data_flow

    result = sample_data_flow(
        params_path=str(params),
        out=str(out),
        summary_path=str(summary),
        portrait=str(portrait) if portrait else None,
    )
    console.print(f"sample dataset: {result['clips']} clips under {out}")


@app.command("preprocess-clip")
def preprocess_clip_cmd(
    video: Path = typer.Argument(..., help="raw clip (any container/codec ffmpeg decodes)"),
    out: Path = typer.Option(..., "--out", help="output folder for the clip's five files"),
    audio: Path | None = typer.Option(None, help="separate audio file (MEAD's .m4a); must exist"),
    params: Path | None = typer.Option(
        None, help="params file (section preprocess; default: params.yaml here, else built in)"
    ),
) -> None:
    """Process one clip: aligned crops, landmarks, pose, 16 kHz audio, MFCC windows."""
    from eamm.config import PreprocessParams
    from eamm.preprocess import preprocess_clip

    settings = load_settings(params_file(params), "preprocess", PreprocessParams)
    _require_out("--out", out, folder=True)
    result = preprocess_clip(video, out, audio=audio, params=settings)
    print(result.summary())


class Dataset(str, Enum):
    mead = "mead"
    lrw = "lrw"


@app.command()
def index(
    dataset: Dataset = typer.Argument(..., help="mead or lrw"),
    out: Path = typer.Option(..., "--out", help="index Parquet file (report JSON goes beside it)"),
    raw: Path | None = typer.Option(None, help="raw folder (default: datasets.<name>.raw)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file (section datasets)"),
) -> None:
    """Index a raw MEAD/LRW folder; layout problems are listed in the report, never guessed at."""
    _check_params(params, "datasets")
    _require_dir("--raw", raw)
    _require_out("--out", out, folder=False)
    if dataset is Dataset.mead:  # the split file, before Prefect starts
        from eamm.config import DatasetsParams, load_section
        from eamm.datasets.mead import load_test_speakers

        load_test_speakers(load_section(params, "datasets", DatasetsParams).mead.split_file)
    from flows.index import index_flow

    report = index_flow(
        dataset.value, str(out), raw=str(raw) if raw else None, params_path=str(params)
    )
    console.print(
        f"{dataset.value}: {report['clips']} clips {report['by_split']}, "
        f"{len(report['problems'])} layout problems -> {out}"
    )
    if not report["clips"]:
        console.print(f"note: no {dataset.value} clip found: is the raw folder the right one?")


@app.command()
def preprocess(
    dataset: Dataset = typer.Argument(..., help="mead or lrw"),
    out: Path = typer.Option(..., "--out", help="processed dataset folder"),
    raw: Path | None = typer.Option(None, help="raw folder (default: the index's root)"),
    index_path: Path | None = typer.Option(None, "--index", help="index from `eamm index`"),
    workers: int | None = typer.Option(None, min=1, help="parallel workers (default: CPU cores)"),
    runner: str | None = typer.Option(None, help="threads, processes or a Dask address"),
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
    summary_path: Path | None = typer.Option(None, "--summary", help="summary JSON (metrics)"),
) -> None:
    """Preprocess every clip of a dataset with Prefect and write <out>/manifest.parquet."""
    _check_params(params, "datasets", "preprocess", "preprocess_run")
    _require_dir("--raw", raw)
    _require_out("--out", out, folder=True)
    _require_input("--index", index_path)
    if summary_path is not None:  # a bad one failed after every clip was processed
        _require_out("--summary", summary_path, folder=False)
    from eamm.folder_lock import ensure_free

    ensure_free(out)  # a second run on this folder stops now, not after Prefect has loaded
    from flows.preprocess import run_preprocess

    result = run_preprocess(
        dataset.value,
        str(out),
        raw=str(raw) if raw else None,
        index_path=str(index_path) if index_path else None,
        params_path=str(params),
        summary_path=str(summary_path) if summary_path else None,
        workers=workers,
        runner=runner,
        runner_option="--runner",
    )
    console.print(
        f"{dataset.value}: {result['by_status']} (processed {result['processed']}, reused "
        f"{result['reused']}) in {result['seconds']} s -> {result['manifest']}"
    )


@app.command()
def train(
    stage: str = typer.Argument(
        ...,
        help="train_fomm, train_a2fd, finetune_a2fd, train_emotion, "
        "train_emotion_classifier or train_sync_expert",
    ),
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
    data_root: Path = typer.Option(Path("data"), help="holds <dataset>/processed/manifest.parquet"),
    models_root: Path = typer.Option(Path("models"), help="checkpoints go to <root>/<stage>/"),
    resume: bool = typer.Option(True, help="continue from the stage's last checkpoint"),
) -> None:
    """Run one training stage (a Prefect flow; the DVC stage of the same name)."""
    _check_params(params, "trainer")
    from eamm.train.recipe import resolve_stage
    from eamm.train.run import check_stage, stage_dir

    check_stage(stage)
    resolved = resolve_stage(params, stage)  # the stage's section and model, before Prefect
    _require_out("--models-root", models_root, folder=True)
    from eamm.train.build import manifest_paths, stage_vgg, upstream_checkpoints

    upstream_checkpoints(stage, models_root)  # the checkpoints it starts from, likewise
    stage_vgg(stage, resolved.model, resolved.params)  # and the VGG19 a real run needs
    from eamm.folder_lock import ensure_free

    ensure_free(stage_dir(models_root, stage), f"training of {stage}")  # before Prefect starts
    manifest_paths(data_root, resolved.params.datasets)  # and its manifests, of its datasets
    from flows.train import train_flow

    metrics = train_flow(
        stage,
        params_path=str(params),
        data_root=str(data_root),
        models_root=str(models_root),
        resume=resume,
    )
    console.print(f"{stage}: step {metrics.get('step')}, loss {metrics.get('loss/total', 0):.4g}")


@app.command()
def generate(
    photo: Path = typer.Option(..., help="portrait photo, any size (aligned here)"),
    audio: Path = typer.Option(..., help="speech, any format ffmpeg reads"),
    out: Path = typer.Option(..., help="output .mp4 (+ _neutral, _compare with an emotion source)"),
    emotion_video: Path | None = typer.Option(None, help="emotion source video, raw or aligned"),
    pose: Path | None = typer.Option(None, help="head pose rows (.npy, (n, 7) or (n, 6))"),
    pose_video: Path | None = typer.Option(None, help="estimate head pose from this video"),
    checkpoints: Path | None = typer.Option(
        None, help="folder of the stage checkpoints (default: models/ here or in the project)"
    ),
    params: Path | None = typer.Option(
        None, help="params file (generate, preprocess; default: params.yaml here, else built in)"
    ),
) -> None:
    """Animate a photo with speech and the emotion of a video; head pose from a file, a video,
    or (default) the photo itself."""
    if pose is not None and pose_video is not None:
        raise EammError("give --pose or --pose-video, not both")
    params = params_file(params)
    settings = generate_settings(params)
    checkpoints = checkpoints_folder(checkpoints)
    for option, path, stream in (
        ("--photo", photo, "image"),
        ("--audio", audio, "audio"),
        ("--emotion-video", emotion_video, "video"),
        ("--pose-video", pose_video, "video"),
        ("--pose", pose, None),
    ):
        _require_input(option, path, stream)
    _require_out("--out", out, folder=False)
    if prefect_api_configured():  # a server to report to: the same work as a flow run there
        from flows.generate import generate_flow

        result = generate_flow(
            str(photo),
            str(audio),
            str(out),
            str(emotion_video) if emotion_video else None,
            str(checkpoints),
            str(pose) if pose else None,
            str(pose_video) if pose_video else None,
            str(params) if params else None,
        )
    else:
        from eamm.generate import generate as generate_video

        result = generate_video(
            photo, audio, emotion_video, out, checkpoints, pose, pose_video, **settings.arguments
        )
    for name in ("emotion", "neutral", "compare"):
        if getattr(result, name) is not None:
            print(f"{name}: {getattr(result, name)}")
    print(f"{result.num_frames} frames at 25 fps; emotion keypoints {result.emotion_kp}")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)


@app.command("import-eamm")
def import_eamm(
    fomm: Path = typer.Option(..., help="EAMM's 124_52000.pth.tar (FOMM generator + kp detector)"),
    audio: Path | None = typer.Option(None, help="EAMM's 1-6000.pth.tar (audio network)"),
    emotion: Path | None = typer.Option(None, help="EAMM's 5-3000.pth.tar (emotion network)"),
    out: Path = typer.Option(Path("models"), help="checkpoint folder (as the training stages)"),
    replace: bool = typer.Option(False, help="overwrite checkpoints already in --out"),
) -> None:
    """Convert EAMM's released checkpoints into ours (dead parameters dropped, strict check)."""
    _require_out("--out", out, folder=True)
    from eamm.train.eamm_import import import_eamm_release

    for stage, path in import_eamm_release(fomm, audio, emotion, out, replace).items():
        print(f"{stage}: {path}")


@app.command()
def evaluate(
    params: Path = typer.Option(Path("params.yaml"), help="params (sections evaluate, generate)"),
    data_root: Path = typer.Option(Path("data"), help="holds <dataset>/processed"),
    checkpoints: Path = typer.Option(Path("models"), help="folder of the stage checkpoints"),
    out: Path = typer.Option(Path("reports"), help="report folder"),
) -> None:
    """Score generated test clips under the pinned protocol; writes metrics.json and a report."""
    _check_params(params, "evaluate", "generate")
    _require_out("--out", out, folder=True)
    from eamm.folder_lock import ensure_free

    ensure_free(out, "evaluation")  # a second evaluation into this folder stops now
    from eamm.train.recipe import resolve_evaluate

    settings = resolve_evaluate(params)
    if settings.resolved().landmarker == "dlib68":  # `eat` without dlib: one line, no server
        from eamm.metrics.dlib68 import require_dlib

        require_dlib()
    for setting in ("syncnet_weights", "fid_weights"):
        weights = getattr(settings, setting)
        _require_input(f"evaluate.{setting}", Path(weights) if weights else None)
    for dataset in settings.datasets:
        _require_input("evaluate.datasets", manifest_path(data_root, dataset))
    from eamm.stages import checkpoint_path

    _require_input("--checkpoints", checkpoint_path(checkpoints, "train_fomm"))
    if not checkpoint_path(checkpoints, "finetune_a2fd").is_file():  # else stage 1's audio
        _require_input("--checkpoints", checkpoint_path(checkpoints, "train_a2fd"))
    _require_report_folder(out)  # (imports torch: after the quick checks)
    from eamm.evidence import count_line, judge_summary, relations

    judge_summary(checkpoints, settings.resolved().vshift)  # a damaged judge metrics.json: now
    from eamm.manifest import require_dataset

    for dataset in settings.datasets:  # another dataset's manifest in its place
        require_dataset(manifest_path(data_root, dataset), dataset)
    from eamm.report import dataset_tables
    from flows.evaluate import evaluate_flow

    metrics = evaluate_flow(str(params), str(data_root), str(checkpoints), str(out))
    for dataset, variants in dataset_tables(metrics).items():
        for variant, row in variants.items():
            print(f"{dataset} {variant}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
    checks = relations(metrics)
    print(f"relations: {count_line(checks)}")
    for check in checks:
        if check.measured and not check.holds:
            print(f"  not: {check.claim}")
    print(f"report: {out / 'evaluation.md'}")


manifest_app = typer.Typer(help="Inspect and validate dataset manifests.", no_args_is_help=True)
app.add_typer(manifest_app, name="manifest")


def _manifest_file(path: Path) -> Path:
    """``path``, or the ``manifest.parquet`` in it when it names a processed folder."""
    if not path.is_dir():
        return path
    if (path / "manifest.parquet").is_file():
        return path / "manifest.parquet"
    raise EammError(f"{path}: a folder without manifest.parquet (pass the manifest file)")


@manifest_app.command("summary")
def manifest_summary(
    path: Path = typer.Argument(..., help="manifest.parquet (or the processed folder)"),
) -> None:
    """Counts by status, split, speaker/emotion or word, and failure reasons."""
    from eamm.manifest import read_rows, summarize

    console.print_json(json.dumps(summarize(read_rows(_manifest_file(path)))))


@manifest_app.command("validate")
def manifest_validate(
    path: Path = typer.Argument(..., help="manifest.parquet (or the processed folder)"),
    quick: bool = typer.Option(False, help="headers only: skip hashing every member's bytes"),
) -> None:
    """Check the schema and the files on disk, each member's bytes against its hash; exit 1
    listing each problem."""
    from eamm.manifest import validate_manifest

    path = _manifest_file(path)
    problems = validate_manifest(path, content=not quick)
    for problem in problems:
        print(f"invalid: {problem}", file=sys.stderr)
    if problems:
        raise typer.Exit(1)
    console.print(f"{path}: valid")


@app.command()
def summary(
    root: Path | None = typer.Option(
        None, help="pipeline data folder (default: data/ of the project the working folder is in)"
    ),
) -> None:
    """Print where the pipeline's outputs are, with a short summary of each: those of the
    project (the folder holding dvc.yaml) the working folder is in, from any folder below it."""
    project = project_root()
    _require_dir("--root", root)  # a mistyped --root printed the other rows only
    root = root or project / "data"

    here = Path.cwd().resolve()

    def shown(path: Path) -> str:  # relative to the working folder where it is below it
        return str(path.relative_to(here) if path.is_relative_to(here) else path)

    table = Table(title="eamm outputs")
    table.add_column("output")
    table.add_column("where")
    table.add_column("summary", overflow="fold")
    sample = root / "sample" / "summary.json"
    if sample.is_file():

        def sample_row(info: dict) -> tuple[str, ...]:
            parts = [
                f"{d}: {n} clips, {info['frames'][d]} frames, {info['seconds'][d]} s"
                for d, n in info["clips"].items()
            ]
            return "sample raw dataset", str(info["root"]), "; ".join(parts)

        _summary_row(table, sample, sample_row)
    from eamm.manifest import read_rows, summarize

    for dataset in DATASETS:
        manifest = manifest_path(root, dataset)
        if manifest.is_file():
            try:
                info = summarize(read_rows(manifest))
            except EammError as err:  # one damaged manifest leaves the rest of the table
                print(f"note: {err}; left out of the summary", file=sys.stderr)
                continue
            status = ", ".join(f"{n} {k}" for k, n in info["by_status"].items())
            splits = ", ".join(f"{k} {n}" for k, n in info["by_split"].items())
            table.add_row(
                f"processed {dataset.upper()} + manifest",
                shown(manifest.parent),
                f"{status}; ok by split: {splits}; {info['frames']} frames at 25 fps",
            )
    from eamm.stages import STAGE_DIRS, checkpoint_path

    for name, stage in STAGE_DIRS.items():
        checkpoint = checkpoint_path(project / "models", name)
        metrics = checkpoint.with_name("metrics.json")
        if metrics.is_file():

            def stage_row(info: dict, name=name, stage=stage, checkpoint=checkpoint):
                heldout = ", ".join(
                    f"{k.removeprefix('heldout/')} {v:.3g}"
                    for k, v in info.items()
                    if k.startswith("heldout/") and isinstance(v, float)
                )
                files = {
                    "train_emotion_classifier": "loss.png, confusion.png",
                    "train_sync_expert": "loss.png, offsets.png",
                }.get(name, "loss.png, samples.png")
                return (
                    f"checkpoint {stage}",
                    shown(checkpoint),
                    f"step {_shown_number(info.get('step'), 'd')}, "
                    f"loss {_shown_number(info.get('loss/total'), '.4g')}; "
                    + (f"held out: {heldout}; " if heldout else "")
                    + files
                    + (
                        ""
                        if checkpoint.is_file()
                        else "; no checkpoint file: dvc pull, or dvc repro to train it"
                    ),
                )

            _summary_row(table, metrics, stage_row)
    demo = project / "outputs" / "demo"
    if (demo / "emotion.mp4").is_file():
        table.add_row(
            "generated videos",
            shown(demo),
            "emotion.mp4, emotion_neutral.mp4, emotion_compare.mp4 (25 fps, audio)",
        )
    metrics_file = project / "reports" / "metrics.json"
    if metrics_file.is_file():
        from eamm.evidence import count_line, relations
        from eamm.report import dataset_tables

        def report_row(table_data: dict) -> tuple[str, ...]:
            parts = [
                f"{d} {v}: PSNR {row['psnr']}, SSIM {row['ssim']}"
                for d, variants in dataset_tables(table_data).items()
                for v, row in variants.items()
                if v in ("reconstruction", "emotion")
            ]
            parts.append(f"relations: {count_line(relations(table_data))}")
            return (
                "evaluation report",
                shown(metrics_file.with_name("evaluation.md")),
                "; ".join(parts),
            )

        _summary_row(table, metrics_file, report_row)
    if not table.row_count:
        if not (project / "dvc.yaml").is_file():
            raise EammError(
                f"{Path.cwd()}: not in an eamm project (no dvc.yaml here or above); run it in "
                "the project folder or below it"
            )
        raise EammError(f"{root}: no pipeline outputs yet; run `make demo` (dvc repro)")
    console.print(table)


def _shown_number(value: object, spec: str) -> str:
    """A summary's number, or "-" where the file has none (not 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return format(value, spec) if spec != "d" or isinstance(value, int) else str(value)


def _summary_row(table: Table, path: Path, row) -> None:
    """Add ``row(info)`` for the JSON object in ``path``; a damaged file, or one without what
    the row shows, is a note naming it, and the rest of the table is still printed."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise TypeError(f"a JSON {type(info).__name__}, not an object")
        table.add_row(*row(info))
    except KeyError as err:
        print(f"note: {path}: no {err} in it; left out of the summary", file=sys.stderr)
    except (OSError, ValueError, TypeError, AttributeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, json.JSONDecodeError):
            reason = f"not JSON: {reason}"
        print(f"note: {path}: cannot be read ({reason}); left out of the summary", file=sys.stderr)


INTERRUPTED = "interrupted; what finished is kept (clips, checkpoints): run it again to go on"
# Prefect's RuntimeError when PREFECT_API_URL names a server that does not answer
UNREACHABLE_API = "Failed to reach API at "


def _named_error(err: Exception, first_line: str) -> str | None:
    """The one line for an error the pipeline can name although it is not an EammError."""
    if isinstance(err, EammError):
        return first_line
    from eamm.manifest import RUN_FAULT_ERRNOS  # here: pyarrow would slow every start

    if isinstance(err, OSError) and err.errno in RUN_FAULT_ERRNOS:  # the disk's, not ours
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}; what finished is kept: fix it and run it again"
    if isinstance(err, RuntimeError) and first_line.startswith(UNREACHABLE_API):
        url = first_line.removeprefix(UNREACHABLE_API).strip()
        return (
            f"PREFECT_API_URL {url}: no Prefect server answers; start it (`prefect server "
            "start`, docs/operations.md) or unset PREFECT_API_URL to run with a temporary one"
        )
    if _lost_server(err):
        return (
            f"PREFECT_API_URL {os.environ.get('PREFECT_API_URL', '')}: the Prefect server "
            f"stopped answering during the run ({first_line}); what finished is kept: start "
            "it again and re-run"
        )
    if getattr(getattr(err, "response", None), "status_code", None) == 401:
        return (
            f"PREFECT_API_URL {os.environ.get('PREFECT_API_URL', '')}: the server refuses this "
            "client (401 Unauthorized): set PREFECT_API_AUTH_STRING (a self-hosted server's "
            "user:password) or PREFECT_API_KEY (Prefect Cloud)"
        )
    return None


def _lost_server(err: Exception) -> bool:
    """Whether ``err`` is the Prefect server going away mid-run (connection refused, reset)."""
    if "httpx" not in sys.modules:
        return False
    import httpx

    return isinstance(err, httpx.TransportError)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry: every error is one line on stderr; ``--debug`` adds the traceback.

    Exit 2 for an error the pipeline names (bad input, params, media), 1 for anything else.
    SIGTERM (``kill``, ``timeout``, ``docker stop``) stops a command as Ctrl-C does: encoders
    stopped, partial outputs and temporary files removed (it killed Python alone, and
    generation's ffmpeg went on encoding into a partial file).
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except KeyboardInterrupt:
        print(f"error: {INTERRUPTED}", file=sys.stderr)
        sys.exit(130)
    except SystemExit as done:  # Ctrl-C inside a flow: Prefect marks the run crashed and exits
        if done.code == 130:
            print(f"error: {INTERRUPTED}", file=sys.stderr)
        raise
    except Exception as err:
        if debug_enabled():
            traceback.print_exc()
        first_line = next(iter(str(err).splitlines()), "")
        named = _named_error(err, first_line)
        if named is not None:
            print(f"error: {named}", file=sys.stderr)
            if _lost_server(err):  # Prefect's exit hooks would retry the dead server for minutes
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(2)
            sys.exit(2)
        hint = "" if debug_enabled() else " (run with --debug for the traceback)"
        print(f"error: {type(err).__name__}: {first_line}{hint}", file=sys.stderr)
        sys.exit(1)
