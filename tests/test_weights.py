"""Weight files a user points at (VGG19, SyncNet v2, pytorch-fid's Inception): every way they
can be wrong is one line naming the file and the setting."""

from __future__ import annotations

import re

import pytest
import torch

from eamm.errors import EammError
from eamm.judges.sync import load_syncnet
from eamm.judges.sync_expert import SyncNetV2
from eamm.metrics.fid import load_fid_inception
from eamm.models.perceptual import Vgg19Features

LOADERS = {
    "model.perceptual.vgg_weights": (Vgg19Features.from_weights, Vgg19Features),
    "evaluate.syncnet_weights": (lambda p: load_syncnet(p, torch.device("cpu")), SyncNetV2),
    "evaluate.fid_weights": (lambda p: load_fid_inception(p, torch.device("cpu")), None),
}


def _reshaped(net_class) -> dict:
    state = net_class().state_dict()
    name = next(iter(state))
    state[name] = torch.zeros(*state[name].shape[:-1], state[name].shape[-1] + 2)
    return state


@pytest.mark.parametrize("setting", list(LOADERS))
@pytest.mark.parametrize("kind", ["empty", "junk", "list", "reshaped"])
def test_a_wrong_weight_file_is_one_line_naming_it(tmp_path, setting, kind):
    """An empty file ended the command in Click's bare "Aborted." (an EOFError), junk bytes in
    torch's advice to load it with pickle code on, a list in "AttributeError: 'list' object has
    no attribute 'items'", a wrong shape in "RuntimeError: Error(s) in loading state_dict for
    Vgg19Features:" with the reason cut off."""
    load, net_class = LOADERS[setting]
    if kind == "reshaped" and net_class is None:
        pytest.skip("the FID Inception is built from pytorch-fid's file only")
    path = tmp_path / "weights.pth"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "junk":
        path.write_bytes(b"\x80\x02junk" * 100)
    elif kind == "list":
        torch.save([torch.zeros(1)], path)
    else:
        torch.save(_reshaped(net_class), path)
    with pytest.raises(EammError) as err:
        load(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert message.endswith(f"({setting})") and "weights_only" not in message
    expected = {
        "empty": "cannot load .* weights: empty or cut short",
        "junk": "cannot load .* weights: not a (torch weight file|file of tensors)",
        "list": "not a .* state dict",
        "reshaped": r"not the .* \(size mismatch for ",
    }[kind]
    assert re.search(expected, message), message
