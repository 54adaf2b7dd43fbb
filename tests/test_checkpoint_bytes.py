"""Checkpoints are reproducible files (issue 16): the same payload saved twice gives the same
bytes (torch.save's random archive id is replaced by digits of the archive's hash), the archive
stays a valid zip that loads safely, and an interrupted write leaves the old file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from eamm.checkpoint import load_checkpoint, save_checkpoint


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
