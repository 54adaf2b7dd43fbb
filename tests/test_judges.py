"""The evaluation judges: metric implementations on known answers (identical and shifted audio,
swapped emotions), SyncNet weights from a local file, and the judges' training stages learning
what they should on data whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eamm.audio import load_audio_16k_mono
from eamm.audio.mfcc import mfcc_windows
from eamm.clips import Clip, read_frames
from eamm.config import MEAD_EMOTIONS, StageParams, TrainerParams
from eamm.errors import EammError
from eamm.judges import EmotionClassifier, SyncExpert, SyncNetV2
from eamm.judges.emotion import emotion_accuracy, predict_emotion, spread
from eamm.judges.sync import load_syncnet, offset_search, shift_audio, syncnet_score
from eamm.judges.sync_expert import SYNC_WINDOW
from eamm.judges.training import classifier_losses, sync_losses, validate_classifier, validate_sync
from eamm.media import probe
from eamm.media.encode import VideoWriter
from eamm.tensors import to_tensor
from eamm.train.datasets import EmotionFrames, SyncWindows
from eamm.train.loop import Stage, train_stage

TRAINER = TrainerParams(num_workers=0, seed=0, device="cpu")
EMOTIONS = ("contempt", "disgusted", "fear", "happy", "sad")  # the fixture's aligned clips


def test_offset_search_finds_zero_for_identical_and_the_shift_for_delayed_audio():
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.normal(size=(40, 16))).float()
    same = offset_search(audio, audio, vshift=6)
    # pairwise_distance adds 1e-6 to each difference, as syncnet_python
    assert same.offset == 0 and same.min_dist < 1e-5 and same.confidence > 0
    for frames in (3, -2):
        delayed = torch.from_numpy(shift_audio(audio.numpy()[:, None], frames)[:, 0])
        found = offset_search(audio, delayed, vshift=6)
        assert found.offset == -frames  # syncnet_python's sign: delayed audio -> negative
        assert found.confidence > 0


def test_shift_audio_delays_and_advances_per_frame_windows():
    windows = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((1, 28, 12), np.float32)
    delayed = shift_audio(windows, 3)
    assert delayed.shape == windows.shape
    assert delayed[:4, 0, 0].tolist() == [0, 0, 0, 0] and delayed[9, 0, 0] == 6
    advanced = shift_audio(windows, -2)
    assert advanced[0, 0, 0] == 2 and advanced[-2:, 0, 0].tolist() == [9, 9]


def test_emotion_accuracy_known_answers():
    labels = ["happy", "sad", "angry", "neutral"]
    assert emotion_accuracy(labels, labels) == 1.0
    assert emotion_accuracy(labels, labels[1:] + labels[:1]) == 0.0  # swapped emotions
    assert emotion_accuracy(labels, ["happy", "sad", "fear", "fear"]) == 0.5
    assert math.isnan(emotion_accuracy([], []))
    with pytest.raises(ValueError, match="3 predictions for 4 labels"):
        emotion_accuracy(labels[:3], labels)
    assert spread(100, 5) == [0, 25, 50, 74, 99] and spread(3, 5) == [0, 1, 2]


@pytest.mark.fixtures
def test_syncnet_v2_weights_load_from_a_local_file_by_name(fixtures_dir, tmp_path):
    torch.manual_seed(0)
    reference = SyncNetV2().eval()
    path = tmp_path / "syncnet_v2.model"
    torch.save(reference.state_dict(), path)
    loaded = load_syncnet(str(path), torch.device("cpu"))
    for (name, a), b in zip(
        reference.state_dict().items(), loaded.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    clip = fixtures_dir / "lrw" / "lipread_mp4" / "ABOUT" / "train" / "ABOUT_00001.mp4"
    frames = read_frames(clip, list(range(29)))
    audio = load_audio_16k_mono(clip, stream_from_video=True)
    score = syncnet_score(loaded, frames, audio, vshift=4)
    assert -4 <= score.offset <= 4 and score.confidence >= 0 and score.min_dist > 0
    bad = tmp_path / "other.model"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(EammError, match=r"other\.model: not a SyncNet v2 state dict"):
        load_syncnet(str(bad), torch.device("cpu"))


# --- the judges learn known answers ---------------------------------------------------------


def _write_clip(folder, frames: np.ndarray, emotion: str | None, dataset: str) -> Clip:
    folder.mkdir(parents=True)
    with VideoWriter(folder / "frames.mp4", frames.shape[2], frames.shape[1], 25, crf=10) as w:
        for frame in frames:
            w.write(frame)
    return Clip.from_folder(folder, len(frames), "M030", emotion, dataset)


def _train(stage: Stage, steps: int, batch: int, out, lr: float = 2e-3) -> dict:
    params = StageParams(steps=steps, batch_size=batch, lr=lr, betas=(0.9, 0.999), log_every=50)
    return train_stage(stage, params, TRAINER, out, "test", {"steps": steps})


@pytest.mark.fixtures
@pytest.mark.slow
def test_emotion_classifier_scores_held_out_frames_and_rejects_swapped_labels(
    fixtures_dir, tmp_path
):
    """Five real MEAD emotion clips: trained on the first 60 % of each, the classifier names the
    emotion of the last 40 % (accuracy 1); with the labels swapped the accuracy is 0."""
    size = 32
    train, holdout = [], []
    for emotion in EMOTIONS:
        video = fixtures_dir / "aligned_videos" / f"{emotion}.mp4"
        n = probe(video, count_frames=True).video.num_frames
        frames = read_frames(video, list(range(n)), size)
        cut = int(0.6 * n)
        train.append(_write_clip(tmp_path / f"{emotion}_a", frames[:cut], emotion, "mead"))
        holdout.append(_write_clip(tmp_path / f"{emotion}_b", frames[cut:], emotion, "mead"))
    torch.manual_seed(0)
    net = EmotionClassifier(block_expansion=8, num_blocks=3, max_features=32)
    stage = Stage(
        "train_emotion_classifier",
        trainable={"emotion_classifier": net},
        frozen={},
        param_groups={"emotion_classifier": ["emotion_classifier"]},
        dataset=EmotionFrames(train, size, clip_len=4, jitter=0.1),
        loss_fn=classifier_losses(net, {}),
        validate=validate_classifier(net, holdout, size),
    )
    metrics = _train(stage, steps=60, batch=5, out=tmp_path / "out")
    assert metrics["heldout/clips"] == 5 and metrics["heldout/accuracy"] == 1.0
    confusion = np.array(metrics["heldout/confusion"])  # rows intended, columns predicted
    assert confusion.shape == (8, 8) and np.trace(confusion) == 5 == confusion.sum()
    assert (tmp_path / "out" / "confusion.png").is_file()
    predicted = [
        predict_emotion(net, to_tensor(c.frames(spread(c.num_frames, 8)))) for c in holdout
    ]
    swapped = list(EMOTIONS[1:] + EMOTIONS[:1])
    assert emotion_accuracy(predicted, swapped) == 0.0
    assert set(predicted) <= set(MEAD_EMOTIONS)


@pytest.mark.fixtures
@pytest.mark.slow
def test_sync_expert_finds_the_offset_of_shifted_audio(fixtures_dir, tmp_path):
    """Real speech drives a synthetic mouth (its opening follows MFCC c1 over each frame's 40 ms):
    trained on 7 clips, the expert finds offset 0 on held-out clips with their own audio
    and -5 with the audio delayed by 5 frames."""
    windows = mfcc_windows(load_audio_16k_mono(fixtures_dir / "audio" / "sample1_16k.wav"))
    drive = windows[:, 12:16, 1].mean(axis=1)  # rows 12-15: the frame's own 40 ms
    opening = np.round(14 * (drive - drive.min()) / np.ptp(drive)).astype(int)
    size = 32
    frames = np.full((len(windows), size, size, 3), 150, np.uint8)
    for t, h in enumerate(opening):
        frames[t, 22 - h // 2 : 23 + h // 2, 8:24] = 30  # the mouth: a dark bar, 1-15 px tall
    clips = []
    for k in range(9):
        span = slice(29 * k, 29 * (k + 1))
        clip = _write_clip(tmp_path / f"clip{k}", frames[span], None, "lrw")
        np.save(clip.files["mfcc.npy"], windows[span])
        clips.append(clip)
    torch.manual_seed(0)
    net = SyncExpert(block_expansion=8, num_blocks=3, max_features=32, audio_blocks=2, embed_dim=32)
    stage = Stage(
        "train_sync_expert",
        trainable={"sync_expert": net},
        frozen={},
        param_groups={"sync_expert": ["sync_expert"]},
        dataset=SyncWindows(clips[:7], size, SYNC_WINDOW, min_offset=2),
        loss_fn=sync_losses(net, {}),
        validate=validate_sync(net, clips[7:], size, vshift=8),
    )
    metrics = _train(stage, steps=400, batch=16, out=tmp_path / "out")
    print(metrics)
    assert metrics["heldout/clips"] == 2
    assert metrics["heldout/offset_accuracy"] == 1.0
    assert metrics["heldout/shifted_offset_accuracy"] == 1.0
    assert metrics["heldout/confidence"] > 0
    assert (tmp_path / "out" / "offsets.png").is_file()


def test_judges_at_the_reference_profile_size():
    """The judges as params.yaml sizes them for real training, on 256x256 crops."""
    import yaml

    from tests.conftest import ROOT

    sizes = yaml.safe_load((ROOT / "params.yaml").read_text())["judges"]["profiles"]["reference"]
    classifier = EmotionClassifier(**sizes["emotion_classifier"]).eval()
    expert = SyncExpert(**sizes["sync_expert"]).eval()
    with torch.no_grad():
        assert classifier(torch.rand(2, 3, 3, 256, 256)).shape == (2, len(MEAD_EMOTIONS))
        frames = torch.rand(2, SYNC_WINDOW, 3, 128, 256)  # mouth halves of 256 crops
        assert expert(frames, torch.rand(2, 28, 12)).shape == (2,)
        assert expert.embed_video(frames).norm(dim=-1).allclose(torch.ones(2))


def test_class_weights_balance_a_rare_class():
    from eamm.judges.training import class_weights

    neutral, happy = MEAD_EMOTIONS.index("neutral"), MEAD_EMOTIONS.index("happy")
    weights = class_weights([neutral] + [happy] * 3)
    assert weights[neutral] == pytest.approx(3 * weights[happy])
    assert weights[[neutral, happy]].mean() == pytest.approx(1.0)
    assert weights.sum() == pytest.approx(2.0)  # absent classes weigh 0


def test_spatial_emotion_classifier_keeps_positions():
    """With ``input_size`` the head sees a feature's place: a brow moved up changes the
    logits even where the global average of the features would not."""
    torch.manual_seed(0)
    net = EmotionClassifier(block_expansion=4, num_blocks=3, max_features=16, input_size=32).eval()
    assert net(torch.rand(2, 5, 3, 32, 32)).shape == (2, len(MEAD_EMOTIONS))
    pooled = EmotionClassifier(block_expansion=4, num_blocks=3, max_features=16).eval()
    pooled.trunk[:3].load_state_dict(net.trunk[:3].state_dict())
    image = torch.zeros(1, 3, 32, 32)
    image[..., 4:8, 8:24] = 1.0
    moved = torch.roll(image, 16, dims=-2)
    with torch.no_grad():
        assert not torch.allclose(net(image), net(moved), atol=1e-4)
        assert torch.allclose(pooled(image), pooled(moved), atol=1e-4)


def test_random_blur_softens_a_clip_alike_and_zero_leaves_it():
    from eamm.augment import random_blur

    rng = np.random.default_rng(0)
    clip = (rng.random((3, 64, 64, 3)) * 255).astype(np.uint8)
    assert random_blur(clip, np.random.default_rng(1), 0.0) is clip
    blurred = random_blur(clip, np.random.default_rng(1), 0.05)
    again = random_blur(clip, np.random.default_rng(1), 0.05)
    assert np.array_equal(blurred, again)  # seeded: the same blur on a re-run
    # one sigma for the whole clip, and high frequencies go: neighbours become alike
    detail = np.abs(np.diff(blurred.astype(float), axis=2)).mean(axis=(1, 2, 3))
    assert np.allclose(detail, detail[0], rtol=0.2)
    assert detail.mean() < 0.5 * np.abs(np.diff(clip.astype(float), axis=2)).mean()
