"""Task: evaluate one dataset's test clips under the named protocol."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from eamm.checkpoint import file_fingerprint
from eamm.clips import load_clips
from eamm.config import EvaluateParams, GenerateParams
from eamm.evaluate import MIN_FRAMES, ClipScore, evaluate_clips, select_clips
from eamm.evaluation_journal import EvaluationJournal, journal_folder, numerics
from eamm.generate import load_models, stage_one_models
from eamm.judges.scoring import load_judges
from eamm.manifest import require_dataset
from eamm.metrics.fid import FidFeatures, load_fid_inception
from eamm.progress import ProgressLine
from eamm.stages import manifest_path
from eamm.tensors import pick_device


@task(name="evaluate-dataset")
def evaluate_dataset(
    dataset: str,
    data_root: str,
    checkpoints: str,
    params: EvaluateParams,
    generate: GenerateParams,
    model: dict,
    checkpoint_prints: dict[str, str],
    out_dir: str,
) -> tuple[list[ClipScore], dict, dict[str, float]]:
    """Per-clip scores, the report's stills, and FID per variant (empty without its weights).
    ``checkpoint_prints``: every checkpoint's fingerprint, read once by the flow. Each clip
    scored is recorded in ``out_dir``'s journal, and the clips a killed run of the same inputs
    recorded there are read back (``eamm.evaluation_journal``)."""
    manifest = manifest_path(data_root, dataset)
    protocol = params.resolved()
    if protocol.landmarker == "dlib68":  # one line now if dlib is missing, not after the models
        from eamm.metrics.dlib68 import require_dlib

        require_dlib()
    require_dataset(manifest, dataset)  # another dataset's rows: not scored as this one's
    clips = select_clips(manifest, params)  # no clip to score: stop before the models load
    pool = load_clips(manifest, (params.split,), min_frames=MIN_FRAMES)
    device = pick_device(generate.device)
    nets = load_models(checkpoints, device, generate, model)
    judges = load_judges(checkpoints, device, protocol.vshift, params.syncnet_weights)
    fid = None
    if params.fid_weights:
        fid = FidFeatures(load_fid_inception(params.fid_weights, device), device)
    stage_one = stage_one_models(checkpoints, nets)
    weights = (params.fid_weights, params.syncnet_weights)
    journal = EvaluationJournal(
        journal_folder(out_dir, dataset),
        {
            "dataset": dataset,
            "clips": [clip.clip_id for clip in clips],
            "manifest": file_fingerprint(manifest),
            "evaluate": params.model_dump(mode="json"),
            "generate": generate.model_dump(mode="json"),
            "model": model,
            "checkpoints": checkpoint_prints,
            "weights": [file_fingerprint(Path(w)) if w else None for w in weights],
            "numerics": numerics(device),
        },
    )
    logger, line = get_run_logger(), ProgressLine(f"evaluate {dataset}")
    scores, stills = evaluate_clips(
        clips,
        pool,
        nets,
        params,
        generate,
        device,
        judges,
        fid,
        stage_one,
        journal,
        progress=lambda *done: logger.info(line(*done)),
    )
    return scores, stills, fid.scores() if fid is not None else {}
