"""Reports, summaries, figures and tables are replaced whole or not at all."""

from __future__ import annotations

import pytest

from eamm.atomic import file_mode, replacing, write_bytes, write_text


def test_write_text_replaces_and_creates_the_folder(tmp_path):
    path = tmp_path / "reports" / "metrics.json"
    write_text(path, "old\n")
    write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
    assert path.stat().st_mode & 0o777 == file_mode()  # as open() makes it (0644 under 022)


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "metrics.json"
    write_bytes(path, b"old")
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(b"half a fi")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_writers_told_the_format_write_to_the_temporary_name(tmp_path):
    from PIL import Image

    path = tmp_path / "sheet.png"
    with replacing(path) as tmp:
        Image.new("RGB", (4, 4)).save(tmp, format="PNG")
    assert Image.open(path).size == (4, 4)


def test_strict_json_writes_null_for_non_finite_numbers():
    """A bare NaN (Python's default) is not JSON: strict readers reject the file."""
    import json

    import numpy as np

    from eamm.strict_json import json_text

    text = json_text({"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": (2,)})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "a": None,
        "b": [None, 1.5],
        "c": [2],
    }


def test_a_signal_during_a_sets_renames_waits_for_the_whole_set(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) between two renames of a set left the new video beside the old
    comparison: the signal now lands after the last rename."""
    import os
    import signal

    from eamm import atomic

    paths = {name: tmp_path / f"{name}.mp4" for name in ("emotion", "neutral", "compare")}
    for path in paths.values():
        path.write_text("old")
    renamed = []

    def replace_then_signal(src, dst):  # the signal arrives right after the first rename
        os.rename(src, dst)
        renamed.append(dst)
        if len(renamed) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(atomic.os, "replace", replace_then_signal)
    # Python's own SIGINT handler (a pytest-xdist worker ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), atomic.replacing_all(paths) as temps:
            for tmp in temps.values():
                tmp.write_text("new")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(renamed) == 3
    assert {path.read_text() for path in paths.values()} == {"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())


def test_held_signals_leave_the_handlers_as_they_were():
    """After the block, raised out of or not, SIGINT and SIGTERM have their own handlers back
    (a holding handler left installed swallowed every later Ctrl-C)."""
    import signal

    from eamm.atomic import signals_held

    before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    with pytest.raises(RuntimeError), signals_held():
        raise RuntimeError("the renames failed")
    with signals_held():
        pass
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == before
