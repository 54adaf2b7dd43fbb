import av
import numpy as np
import pytest

from eamm.atomic import file_mode
from eamm.errors import MediaError
from eamm.media import VideoWriter, encode_audio, probe


def test_video_writer_round_trip(tmp_path):
    out = tmp_path / "clip.mp4"
    wav = encode_audio(np.zeros(16000, np.float32), 16000, tmp_path / "a.wav")
    with VideoWriter(out, 64, 48, 25, audio_path=wav, audio_rate=16000, audio_channels=1) as w:
        for k in range(10):
            w.write(np.full((48, 64, 3), k * 20, np.uint8))
    info = probe(out, count_frames=True)
    assert (info.video.width, info.video.height, info.video.num_frames) == (64, 48, 10)
    assert info.video.fps == 25
    assert (info.audio.sample_rate, info.audio.channels) == (16000, 1)
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_failed_write_leaves_no_file(tmp_path):
    out = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError), VideoWriter(out, 32, 32, 25) as writer:
        writer.write(np.zeros((32, 32, 3), np.uint8))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_shape_is_rejected(tmp_path):
    writer = VideoWriter(tmp_path / "clip.mp4", 32, 32, 25)
    with pytest.raises(ValueError, match=r"uint8 \(32, 32, 3\)"):
        writer.write(np.zeros((16, 32, 3), np.uint8))
    writer.abort()


def test_probe_names_unreadable_file(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(MediaError, match=r"corrupt\.mp4: unreadable media"):
        probe(bad)
    with pytest.raises(MediaError, match="does not exist"):
        probe(tmp_path / "absent.mp4")


def test_two_writers_of_one_output_do_not_share_a_file(tmp_path):
    """Two runs writing the same output (two `eamm generate` into one --out): each encodes
    into its own file and the output is one whole video, the one closed last."""
    out = tmp_path / "talk.mp4"
    colours = {"first": 40, "second": 200}
    writers = {name: VideoWriter(out, 64, 64, 25) for name in colours}
    for _ in range(20):
        for name, writer in writers.items():
            writer.write(np.full((64, 64, 3), colours[name], np.uint8))
    for writer in writers.values():
        writer.close()
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 20 and all(abs(float(f.mean()) - 200) < 2 for f in frames)
    assert [p.name for p in tmp_path.iterdir()] == ["talk.mp4"]
    assert out.stat().st_mode & 0o777 == file_mode()  # as open() makes it (0644 under 022)


_FILL_THE_DISK = """
import numpy as np
from eamm.media import VideoWriter
frames = np.random.default_rng(0).integers(0, 255, (25, 128, 128, 3), dtype=np.uint8)
try:
    with VideoWriter("{out}", 128, 128, 25) as writer:
        for frame in frames:
            writer.write(frame)
    print("written")
except Exception as err:
    print(err)
"""


def test_a_disk_filling_up_at_the_trailer_is_an_error_not_a_short_file(tmp_path):
    """ffmpeg exits 0 after 'Error closing file ...: No space left on device' (a full disk left
    a 4 KiB video and exit 0 in `eamm generate`). A real 40 KiB tmpfs, in a mount namespace of
    our own (no root needed where user namespaces are on)."""
    import shutil
    import subprocess
    import sys

    disk = tmp_path / "disk"
    disk.mkdir()
    script = _FILL_THE_DISK.format(out=disk / "v.mp4")
    if shutil.which("unshare") is None:
        pytest.skip("no unshare here")
    mount = f"mount -t tmpfs -o size=40k tmpfs {disk}"
    run = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f'{mount} && exec "$0" -c "$1"', sys.executable, script],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0 or not run.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()[-200:]}")
    line = run.stdout.strip()
    assert line.startswith(f"{disk / 'v.mp4'}: ffmpeg failed: Error "), line
    assert line.endswith("No space left on device"), line  # a run fault: retried, not recorded
