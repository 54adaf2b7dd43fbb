"""Checkpoints are reproducible files (issue 16): the same payload saved twice gives the same
bytes (torch.save's random archive id is replaced by digits of the archive's hash), the archive
stays a valid zip that loads safely, and an interrupted write leaves the old file."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest
import torch

from eamm.checkpoint import load_checkpoint, rng_state, save_checkpoint, seed_all, set_rng_state
from eamm.errors import EammError


def _payload(scale: float) -> dict:
    torch.manual_seed(0)
    net = torch.nn.Linear(8, 4)
    with torch.no_grad():
        net.weight.mul_(scale)
    return {"stage": "x", "step": 3, "models": {"net": net.state_dict()}, "history": [{"a": 1.0}]}


def test_same_payload_same_bytes_and_a_valid_archive(tmp_path: Path) -> None:
    a = save_checkpoint(_payload(1.0), tmp_path / "a" / "checkpoint.pt")
    b = save_checkpoint(_payload(1.0), tmp_path / "b" / "checkpoint.pt")
    c = save_checkpoint(_payload(2.0), tmp_path / "c" / "checkpoint.pt")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    with zipfile.ZipFile(a) as zf:
        assert zf.testzip() is None  # every member's CRC matches
        stamp = next(n for n in zf.namelist() if n.endswith("/serialization_id"))
        assert len(zf.read(stamp)) == 40 and zf.read(stamp).isdigit()
    loaded = load_checkpoint(a)
    assert loaded["step"] == 3
    assert torch.equal(loaded["models"]["net"]["weight"], _payload(1.0)["models"]["net"]["weight"])
    assert not list(tmp_path.rglob("*.partial"))


def test_plain_torch_save_is_not_reproducible(tmp_path: Path) -> None:
    """Why the stamp is replaced: without it two saves of one payload differ."""
    torch.save(_payload(1.0), tmp_path / "x.pt")
    torch.save(_payload(1.0), tmp_path / "y.pt")
    assert (tmp_path / "x.pt").read_bytes() != (tmp_path / "y.pt").read_bytes()


def test_saved_rng_state_ignores_draws_from_pythons_random() -> None:
    """Other threads (Prefect's client) draw from Python's ``random`` a varying number of times
    per run: the saved state leaves it out, so the bytes do not depend on them; a state from an
    older checkpoint that has it still restores."""
    seed_all(0)
    first = rng_state()
    random.random()  # a library's draw, between the seed and the checkpoint
    second = rng_state()
    assert "python" not in first and torch.equal(first["torch"], second["torch"])
    assert first["numpy"] == second["numpy"]
    torch.rand(3)
    set_rng_state({**first, "python": random.getstate()})
    assert torch.equal(torch.get_rng_state(), first["torch"])


class _Sneaky:
    """Pickles to a call of os.getcwd: what a safe load must refuse."""

    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_damaged_and_foreign_checkpoints_are_refused_in_one_line(tmp_path: Path) -> None:
    good = save_checkpoint(_payload(1.0), tmp_path / "good.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint\n")
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"models": {}, "hook": _Sneaky()}, unsafe)
    expected = {
        truncated: "not a checkpoint (truncated, damaged or not a torch.save file)",
        text: "not a checkpoint (truncated, damaged or not a torch.save file)",
        unsafe: "cannot load checkpoint safely (it holds objects a safe load refuses: ",
    }
    for path, reason in expected.items():
        try:
            load_checkpoint(path)
        except EammError as err:
            message = str(err)
        else:
            raise AssertionError(f"{path} loaded")
        assert message.startswith(f"{path}: {reason}")
        assert "\n" not in message and "weights_only" not in message


def test_a_failed_write_keeps_the_old_checkpoint_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import pytest

    path = save_checkpoint(_payload(1.0), tmp_path / "checkpoint.pt")
    before = path.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("eamm.atomic.os.fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(_payload(2.0), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_the_training_summary_averages_at_least_ten_steps(tmp_path: Path) -> None:
    """A 40-step stage's first and last losses are 10-step means (4 steps of batch 2 are
    noise); a 600-step stage's are 10 % (60 steps)."""
    from eamm.evidence import training_summary
    from eamm.stages import checkpoint_path

    for stage, steps in (("finetune_a2fd", 40), ("train_fomm", 600)):
        history = [{"step": k + 1, "loss/total": float(k // 10)} for k in range(steps)]
        payload = {"stage": stage, "step": steps, "history": history}
        save_checkpoint(payload, checkpoint_path(tmp_path, stage))
    summary = training_summary(tmp_path)
    assert (summary["a2fd_finetune"]["loss_first"], summary["a2fd_finetune"]["loss_last"]) == (0, 3)
    assert (summary["fomm"]["loss_first"], summary["fomm"]["loss_last"]) == (2.5, 56.5)


def test_a_checkpoint_rewritten_while_it_is_read_is_refused(tmp_path: Path, monkeypatch) -> None:
    """A stage hashed its upstream checkpoint, then loaded it in a second read: a training
    finishing in between gave it one run's weights and the other's fingerprint as lineage."""
    import eamm.checkpoint as checkpoint

    path = save_checkpoint(_payload(1.0), tmp_path / "fomm" / "checkpoint.pt")
    state, digest = checkpoint.load_fingerprinted(path)
    assert digest == checkpoint.file_fingerprint(path) and state["step"] == 3
    read = checkpoint.load_checkpoint

    def read_then_rewritten(where, *args, **kwargs):  # another run's save lands meanwhile
        state = read(where, *args, **kwargs)
        save_checkpoint(_payload(2.0), where)
        return state

    monkeypatch.setattr(checkpoint, "load_checkpoint", read_then_rewritten)
    with pytest.raises(EammError) as refused:
        checkpoint.load_fingerprinted(path)
    assert str(refused.value).startswith(f"{path}: the checkpoint changed while it was read")
