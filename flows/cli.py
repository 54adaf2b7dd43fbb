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
from rich.text import Text

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
)
from flows.preflight import (
    check_evaluation,
    check_params,
    require_dir,
    require_input,
    require_out,
    require_raw,
)

app = typer.Typer(
    help="Reproducible EAMM: preprocessing, training, generation and evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Paths print as given: "a[/]b" was markup (a MarkupError), and a long one was broken over
# two lines at the terminal's width.
console = Console(markup=False, soft_wrap=True)


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
        status = Text("ok", style="green") if check.ok else Text("FAIL", style="red")
        table.add_row(check.name, status, check.detail)
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
    check_params(params, "sample_data")
    require_out("--out", out, folder=True)
    from eamm.sample.dataset import check_replaceable_root

    try:  # before Prefect starts: a user's folder named by mistake is never replaced
        check_replaceable_root(out)
    except EammError as err:
        raise EammError(f"{err} (--out)") from None
    from eamm.folder_lock import ensure_output_free

    ensure_output_free(out, "sample-data run")  # a second run on this folder stops now
    require_out("--summary", summary, folder=False)
    if portrait is not None:
        require_out("--portrait", portrait, folder=False)
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
    require_out("--out", out, folder=True)
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
    check_params(params, "datasets")
    require_dir("--raw", raw)
    require_out("--out", out, folder=False)
    if dataset is Dataset.mead:  # the split file, before Prefect starts
        from eamm.config import DatasetsParams, load_section
        from eamm.datasets.mead import load_test_speakers

        load_test_speakers(load_section(params, "datasets", DatasetsParams).mead.split_file)
    from flows.index import index_flow  # (Prefect's home and server checked here)

    require_raw(dataset.value, raw)  # after the checks above: its content, not its name
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
    check_params(params, "datasets", "preprocess", "preprocess_run")
    require_dir("--raw", raw)
    require_out("--out", out, folder=True)
    require_input("--index", index_path)
    if summary_path is not None:  # a bad one failed after every clip was processed
        require_out("--summary", summary_path, folder=False)
    from eamm.folder_lock import ensure_free

    ensure_free(out)  # a second run on this folder stops now, not after Prefect has loaded
    from flows.preprocess import redone_note, run_preprocess  # (Prefect's checks here)

    require_raw(dataset.value, raw)
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
        f"{result['reused']}{redone_note(result)}) in {result['seconds']} s -> {result['manifest']}"
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
    check_params(params, "trainer")
    from eamm.train.recipe import resolve_stage
    from eamm.train.run import check_stage, stage_dir

    check_stage(stage)
    resolved = resolve_stage(params, stage)  # the stage's section and model, before Prefect
    require_out("--models-root", models_root, folder=True)
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
    if params is None:  # the project's params.yaml (the demo's relative mode, ...) not found
        print(f"note: {NO_PARAMS_NOTE}", file=sys.stderr)
    for option, path, stream in (
        ("--photo", photo, "image"),
        ("--audio", audio, "audio"),
        ("--emotion-video", emotion_video, "video"),
        ("--pose-video", pose_video, "video"),
        ("--pose", pose, None),
    ):
        require_input(option, path, stream)
    require_out("--out", out, folder=False)
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
    with_emotion = f"; emotion keypoints {result.emotion_kp}" if result.emotion is not None else ""
    print(f"{result.num_frames} frames at 25 fps{with_emotion}")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)


# Outside a project (no dvc.yaml above) generation runs on the packaged defaults, which differ
# from the project's params.yaml (the demo's relative mode): said, not silent.
NO_PARAMS_NOTE = (
    "no params.yaml found (here or in a project folder above): generation's built-in settings "
    "(eamm/config.py GenerateParams; --params names a params file)"
)


@app.command("import-eamm")
def import_eamm(
    fomm: Path = typer.Option(..., help="EAMM's 124_52000.pth.tar (FOMM generator + kp detector)"),
    audio: Path | None = typer.Option(None, help="EAMM's 1-6000.pth.tar (audio network)"),
    emotion: Path | None = typer.Option(None, help="EAMM's 5-3000.pth.tar (emotion network)"),
    out: Path = typer.Option(Path("models"), help="checkpoint folder (as the training stages)"),
    replace: bool = typer.Option(False, help="overwrite checkpoints already in --out"),
) -> None:
    """Convert EAMM's released checkpoints into ours (dead parameters dropped, strict check)."""
    require_out("--out", out, folder=True)
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
    check_evaluation(params, data_root, checkpoints, out)
    from eamm.evidence import clip_scores_beside, count_line, relations
    from eamm.report import dataset_tables
    from flows.evaluate import evaluate_flow

    metrics = evaluate_flow(str(params), str(data_root), str(checkpoints), str(out))
    for dataset, variants in dataset_tables(metrics).items():
        for variant, row in variants.items():
            print(f"{dataset} {variant}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
    checks = relations(metrics, clip_scores_beside(out / "metrics.json"))
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
    from flows.outputs_summary import outputs_table

    console.print(outputs_table(root))


INTERRUPTED = "interrupted; what finished is kept (clips, checkpoints): run it again to go on"
# Prefect's RuntimeError when PREFECT_API_URL names a server that does not answer
UNREACHABLE_API = "Failed to reach API at "


def _named_error(err: Exception, first_line: str) -> str | None:
    """The one line for an error the pipeline can name although it is not an EammError."""
    if isinstance(err, EammError):
        return first_line
    from eamm.manifest import NO_THREAD, RUN_FAULT_ERRNOS  # here: pyarrow slowed every start

    if isinstance(err, OSError) and err.errno in RUN_FAULT_ERRNOS:  # the disk's, not ours
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}; what finished is kept: fix it and run it again"
    if isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and first_line.startswith(NO_THREAD)
    ):
        return (
            f"out of memory ({first_line or type(err).__name__}); what finished is kept: "
            "raise the memory limit (ulimit -v) or use fewer workers, and run it again"
        )
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
