"""Lip-sync scores by SyncNet's offset search, for our sync expert and for SyncNet v2.

For every 5-frame video window the embedding distance to the audio embedding at each offset in
[-vshift, vshift] is taken; the distances are averaged over windows per offset. The offset with
the smallest mean distance is the audio-visual offset, ``min_dist`` that distance (LSE-D), and
``confidence`` = median over offsets - minimum (LSE-C), exactly as syncnet_python computes them.
Offsets carry syncnet_python's sign: audio delayed by k frames against the video gives -k.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from eamm.audio.mfcc import mfcc_frames
from eamm.config import AUDIO_PER_FRAME
from eamm.judges.sync_expert import SYNC_WINDOW, SyncExpert, SyncNetV2, mouth_half


@dataclass(frozen=True)
class SyncScore:
    offset: int
    min_dist: float
    confidence: float


def offset_distances(video: torch.Tensor, audio: torch.Tensor, vshift: int) -> torch.Tensor:
    """Mean distance per offset (2 * vshift + 1,) of video window embeddings (N, D) to audio
    window embeddings (N, D), syncnet_python's ``calc_pdist`` averaged over windows.

    Window i of the video is compared with audio window i + s for s in [-vshift, vshift]; audio
    windows outside the clip are zero vectors. Distances are ``F.pairwise_distance`` (the
    reference's, with its eps 1e-6 added to the difference)."""
    n = video.shape[0]
    padded = F.pad(audio, (0, 0, vshift, vshift))
    shifts = torch.arange(2 * vshift + 1)
    index = torch.arange(n)[:, None] + shifts[None, :]  # (N, S) rows of padded audio
    dists = F.pairwise_distance(video[:, None, :].expand(-1, shifts.numel(), -1), padded[index])
    return dists.T.contiguous().mean(dim=1)  # (S, N) summed as the reference sums: same bits


def offset_search(video: torch.Tensor, audio: torch.Tensor, vshift: int) -> SyncScore:
    """Best offset, its distance and the confidence from :func:`offset_distances`."""
    mean = offset_distances(video, audio, vshift)
    best = int(torch.argmin(mean))
    return SyncScore(
        offset=vshift - best,
        min_dist=float(mean[best]),
        confidence=float(torch.median(mean) - mean[best]),
    )


def shift_audio(mfcc: np.ndarray, frames: int) -> np.ndarray:
    """Per-frame MFCC windows delayed by ``frames`` video frames (the start repeats): the
    known-answer case for the offset search, which should then report ``-frames``."""
    if frames <= 0:
        return np.concatenate([mfcc[-frames:], np.repeat(mfcc[-1:], -frames, axis=0)])
    return np.concatenate([np.repeat(mfcc[:1], frames, axis=0), mfcc[:-frames]])


@torch.no_grad()
def expert_score(
    expert: SyncExpert, frames: torch.Tensor, mfcc: torch.Tensor, vshift: int
) -> SyncScore | None:
    """Sync of frames (T, 3, H, W) in [0, 1] with their per-frame MFCC windows (T, 28, 12);
    None when the clip is shorter than one window."""
    windows = min(frames.shape[0], mfcc.shape[0]) - SYNC_WINDOW + 1
    if windows < 1:
        return None
    mouths = mouth_half(frames)
    video = torch.stack([mouths[i : i + SYNC_WINDOW] for i in range(windows)])
    middle = mfcc[SYNC_WINDOW // 2 : SYNC_WINDOW // 2 + windows]
    return offset_search(expert.embed_video(video), expert.embed_audio(middle), vshift)


def syncnet_inputs(frames_rgb: np.ndarray, audio_16k: np.ndarray) -> tuple[torch.Tensor, ...]:
    """SyncNet v2's inputs from uint8 RGB crops (T, H, W, 3) and 16 kHz mono float audio in
    [-1, 1]: 224x224 BGR frames with values 0-255 (3, T, 224, 224) and the MFCC matrix
    (1, 13, rows) of python_speech_features' defaults on int16-scaled samples (how
    syncnet_python reads its WAV), 4 rows per video frame."""
    import cv2

    crops = np.stack(
        [cv2.resize(f, (224, 224), interpolation=cv2.INTER_CUBIC)[..., ::-1] for f in frames_rgb]
    )
    video = torch.from_numpy(np.ascontiguousarray(crops)).float().permute(3, 0, 1, 2)
    mfcc = torch.from_numpy(mfcc_frames(np.asarray(audio_16k, np.float64) * 32768.0).T).float()
    return video, mfcc[None]


@torch.no_grad()
def syncnet_score(
    net: SyncNetV2, frames_rgb: np.ndarray, audio_16k: np.ndarray, vshift: int, batch: int = 20
) -> SyncScore | None:
    """SyncNet confidence the way syncnet_python's ``SyncNetInstance.evaluate`` computes it:
    window i is frames i..i+4 and MFCC rows 4i..4i+19, for i below min(frames, audio samples
    // 640) - 5 (25 fps video, 16 kHz audio)."""
    device = next(net.parameters()).device
    video, mfcc = (x.to(device) for x in syncnet_inputs(frames_rgb, audio_16k))
    windows = min(video.shape[1], len(audio_16k) // AUDIO_PER_FRAME) - SYNC_WINDOW
    if windows < 1:
        return None
    vid, aud = [], []
    for start in range(0, windows, batch):
        idx = range(start, min(windows, start + batch))
        vid.append(net.embed_video(torch.stack([video[:, i : i + SYNC_WINDOW] for i in idx])))
        aud.append(net.embed_audio(torch.stack([mfcc[:, :, 4 * i : 4 * i + 20] for i in idx])))
    return offset_search(torch.cat(vid), torch.cat(aud), vshift)


def load_syncnet(
    path: str | Path, device: torch.device, setting: str = "evaluate.syncnet_weights"
) -> SyncNetV2:
    """SyncNet v2 from a local ``syncnet_v2.model`` (a state dict; loaded without pickle code).

    Errors are one line naming the file and the ``setting`` it came from."""
    from eamm.errors import EammError
    from eamm.weights import load_into, read_state_dict

    if not Path(path).is_file():
        raise EammError(f"{path}: file does not exist ({setting})")
    state = read_state_dict(path, "SyncNet v2", setting)
    state = {k.removeprefix("__S__."): v for k, v in state.items()}
    net = SyncNetV2()
    load_into(net, state, path, "SyncNet v2", setting, strict=False)
    return net.to(device).eval()
