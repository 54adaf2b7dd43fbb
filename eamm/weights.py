"""Third-party weight files a user points at (VGG19, SyncNet v2, pytorch-fid's Inception): read
without pickle code, and every way they can be wrong is one line naming the file and the
setting it came from (an empty file ended a command in Click's bare "Aborted.", a wrong shape
in "RuntimeError: Error(s) in loading state_dict" with the reason cut off)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from eamm.errors import EammError


def read_state_dict(path: str | Path, what: str, setting: str) -> dict[str, torch.Tensor]:
    """The tensors in ``path`` (a state dict, or a dict holding one as ``state_dict``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except EOFError:
        reason = "empty or cut short"
    except pickle.UnpicklingError:  # torch's text advises loading it with pickle code on
        reason = "not a file of tensors (anything else is refused unread)"
    except Exception as err:  # bytes that are no torch file fail anywhere in its unpickler
        first = next(iter(str(err).splitlines()), "")
        reason = f"not a torch weight file ({type(err).__name__}: {first})"
    else:
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
            return state
        raise EammError(f"{path}: not a {what} state dict ({setting})")
    raise EammError(f"{path}: cannot load {what} weights: {reason} ({setting})")


def load_into(
    net: nn.Module, state: dict, path: str | Path, what: str, setting: str, strict: bool = True
) -> None:
    """``state`` into ``net``; a key or shape that does not fit is one line naming the first."""
    try:
        missing, unexpected = net.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        first = lines[1] if len(lines) > 1 else lines[0]
        raise EammError(f"{path}: not the {what} ({first}) ({setting})") from None
    if missing or unexpected:
        raise EammError(
            f"{path}: not a {what} state dict (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}) ({setting})"
        )
