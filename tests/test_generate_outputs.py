"""What ``eamm generate`` leaves at ``--out``: a neutral-only run removes an earlier emotion
run's ``_neutral``/``_compare`` videos (after its own video is in place), and speech from an
M4A gives as many frames as the same speech as WAV (the AAC end padding is cut)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import yaml

from benchmarks.generate_memory import write_random_checkpoints
from eamm.audio import load_audio_16k_mono, write_wav_s16
from eamm.config import GenerateParams
from eamm.generate import generate, load_speech
from eamm.media.encode import encode_audio_inprocess
from eamm.sample.dataset import write_portrait
from eamm.sample.voice import synth_speech
from tests.conftest import ROOT
from tests.test_faults_generate import full_disk_closing

MODEL = yaml.safe_load((ROOT / "params.yaml").read_text())["model"] | {"profile": "tiny"}
PARAMS = GenerateParams(device="cpu")
EARLIER = {"talk.mp4": b"emotion", "talk_neutral.mp4": b"neutral", "talk_compare.mp4": b"compare"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    speech = synth_speech(0.4, 16000, seed=0).samples
    return {
        "photo": write_portrait(root / "portrait.png"),
        "audio": write_wav_s16(speech, root / "speech.wav"),
        "models": write_random_checkpoints(root / "models", MODEL, emotion=False),
    }


def earlier_run(folder) -> None:
    """What an emotion run left at ``--out talk.mp4`` (stand-ins: only the names matter)."""
    for name, data in EARLIER.items():
        (folder / name).write_bytes(data)


def test_a_neutral_run_removes_an_earlier_runs_emotion_videos(inputs, tmp_path):
    earlier_run(tmp_path)
    out = tmp_path / "talk.mp4"
    result = generate(inputs["photo"], inputs["audio"], None, out, inputs["models"], params=PARAMS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.mp4"]
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == result.num_frames == 10
    removed = f"{tmp_path / 'talk_neutral.mp4'} and {tmp_path / 'talk_compare.mp4'}"
    assert result.notes == [
        f"{out}: the neutral video (no emotion video given)",
        f"{out}: removed {removed} of an earlier run (this run writes no emotion video)",
    ]


def test_a_neutral_run_that_fails_leaves_the_earlier_runs_videos(inputs, tmp_path, monkeypatch):
    """A full disk as the new video closes: the earlier run's three videos stay, all of them."""
    earlier_run(tmp_path)
    full_disk_closing(monkeypatch, ".talk.mp4.")
    with pytest.raises(OSError, match="No space left"):
        generate(
            inputs["photo"], inputs["audio"], None, tmp_path / "talk.mp4", inputs["models"],
            params=PARAMS,
        )  # fmt: skip
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == EARLIER


@pytest.mark.parametrize(("seconds", "frames"), [(1.366, 34), (0.001, 1)])
def test_speech_as_m4a_gives_the_frames_of_the_same_speech_as_wav(tmp_path, seconds, frames):
    n = round(seconds * 16000)
    tone = (0.3 * np.sin(2 * np.pi * 220 * (np.arange(n) + 0.5) / 16000)).astype(np.float32)
    wav = write_wav_s16(tone, tmp_path / "speech.wav")
    m4a = encode_audio_inprocess(tone, 16000, tmp_path / "speech.m4a")
    (wav_samples, wav_frames), (m4a_samples, m4a_frames) = load_speech(wav), load_speech(m4a)
    assert m4a_frames == wav_frames == frames
    assert len(m4a_samples) == len(wav_samples)
    # preprocessing's plain decode is unchanged: it keeps the encoder's end padding
    assert len(load_audio_16k_mono(m4a)) > n == len(load_audio_16k_mono(m4a, trim_to_duration=True))


def test_each_network_is_built_as_its_own_checkpoint_trained_it(inputs, tmp_path):
    """Stage 1 trained after an edit to the audio head's temperature (a setting, not a
    weight): generation built it with train_fomm's recorded temperature and rendered other
    keypoints without a word; it now takes the a2fd checkpoint's own record."""
    import shutil

    from eamm.checkpoint import load_checkpoint, save_checkpoint
    from eamm.generate import load_models
    from eamm.stages import checkpoint_path

    models = tmp_path / "models"
    shutil.copytree(inputs["models"], models)
    edited = yaml.safe_load(yaml.safe_dump(MODEL))
    edited["profiles"]["tiny"]["audio_head"]["temperature"] = 0.37
    for stage in ("train_a2fd", "finetune_a2fd"):
        state = load_checkpoint(checkpoint_path(models, stage))
        save_checkpoint({**state, "params": {"model": edited}}, checkpoint_path(models, stage))
    loaded = load_models(models, torch.device("cpu"), PARAMS)
    assert loaded.audio_head.temperature == 0.37
    assert loaded.kp_detector.temperature == MODEL["profiles"]["tiny"]["kp_detector"]["temperature"]
