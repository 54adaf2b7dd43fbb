"""Task: evaluate one dataset's test clips under the named protocol."""

from __future__ import annotations

from prefect import task

from eamm.clips import load_clips
from eamm.config import EvaluateParams, GenerateParams
from eamm.evaluate import ClipScore, evaluate_clips, select_clips
from eamm.generate import load_models
from eamm.judges.scoring import load_judges
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
) -> tuple[list[ClipScore], dict]:
    manifest = manifest_path(data_root, dataset)
    protocol = params.resolved()
    if protocol.landmarker == "dlib68":  # one line now if dlib is missing, not after the models
        from eamm.metrics.dlib68 import import_dlib, predictor_path

        import_dlib()
        predictor_path()
    clips = select_clips(manifest, params)  # no clip to score: stop before the models load
    pool = load_clips(manifest, (params.split,), min_frames=2)
    device = pick_device(generate.device)
    nets = load_models(checkpoints, device, generate, model)
    judges = load_judges(checkpoints, device, protocol.vshift, params.syncnet_weights)
    return evaluate_clips(clips, pool, nets, params, generate, device, judges)
