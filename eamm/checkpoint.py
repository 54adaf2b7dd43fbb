"""Checkpoints: atomic writes, safe loading (``weights_only=True``), exact resume.

A checkpoint holds tensors and plain Python values only: model, optimiser and scheduler states,
step, RNG states, the stage's params, the fingerprint of the manifest it was trained on and
those of the upstream checkpoints it started from (``upstream``).
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import sys
import zipfile
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from eamm.atomic import write_bytes
from eamm.errors import EammError


def file_fingerprint(path: str | Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_fingerprints(models_root: str | Path, stages: Iterable[str]) -> dict[str, str]:
    """{stage folder: ``file_fingerprint`` of its checkpoint} of the ``stages`` that have one."""
    from eamm.stages import STAGE_DIRS, checkpoint_path

    paths = {STAGE_DIRS[stage]: checkpoint_path(models_root, stage) for stage in stages}
    return {name: file_fingerprint(path) for name, path in paths.items() if path.is_file()}


def learned_from(manifests: Iterable[Path], checkpoint_fingerprints: Iterable[str]) -> str:
    """A stage's data fingerprint (its checkpoint's ``manifest_fingerprint``): its manifests'
    content (timing columns aside) and the upstream checkpoints' file fingerprints."""
    from eamm.manifest import content_fingerprint

    digest = hashlib.blake2b(digest_size=16)
    for path in manifests:
        digest.update(content_fingerprint(path).encode())
    for fingerprint in checkpoint_fingerprints:
        digest.update(fingerprint.encode())
    return digest.hexdigest()


def trained_on_other_data(state: dict, stage: str, data_root: Path) -> bool:
    """Whether ``state`` (a ``stage`` checkpoint) records manifests other than ``data_root``'s
    present ones: the fingerprint it would record training on them now (its own datasets and
    upstream checkpoints) is not its ``manifest_fingerprint``. False where it cannot tell (an
    imported or older checkpoint, a manifest not there)."""
    from eamm.stages import manifest_path

    recorded = state.get("manifest_fingerprint")
    datasets = ((state.get("params") or {}).get(stage) or {}).get("datasets")
    if not isinstance(recorded, str) or not isinstance(datasets, list):
        return False
    paths = [manifest_path(data_root, d) for d in datasets]
    if not all(p.is_file() for p in paths):
        return False
    return learned_from(paths, (state.get("upstream") or {}).values()) != recorded


def seed_all(seed: int) -> None:
    """Seed torch's, Python's and NumPy's global generators, so the RNG state a checkpoint
    saves (and a resumed run restores) is the same on every run and machine: unseeded, the
    NumPy state made checkpoint bytes differ between fresh clones."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def rng_state() -> dict:
    """Torch's and NumPy's generator states (CUDA's too where present). Python's ``random`` is
    left out: no training code draws from it, and libraries running in other threads of the
    process (Prefect's client) do, a varying number of times per run, so saving it made the
    same training write different checkpoint bytes in two fresh clones."""
    state = {"torch": torch.get_rng_state()}
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy"] = [keys.tolist(), int(pos), int(has_gauss), float(gauss)]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`'s generators (a ``python`` entry of older checkpoints too)."""
    torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _stable_serialization_id(buffer: io.BytesIO) -> None:
    """torch.save stamps each archive with a random 40-digit id (read back only for usage
    logging): put digits of the archive's own hash there, so the same checkpoint is the same
    file on every run and DVC's hashes reproduce. Same length, so only the CRCs change."""
    with zipfile.ZipFile(buffer) as zf:
        info = next((i for i in zf.infolist() if i.filename.endswith("/serialization_id")), None)
        start_dir = zf.start_dir
    if info is None or info.compress_type != zipfile.ZIP_STORED:
        return
    with buffer.getbuffer() as archive:  # edited in place: no copy of a large checkpoint
        _restamp(archive, info, start_dir)


def _restamp(archive: memoryview, info: zipfile.ZipInfo, start_dir: int) -> None:
    name_len, extra_len = struct.unpack_from("<HH", archive, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    size = info.file_size
    archive[start : start + size] = b"0" * size
    digits = str(int.from_bytes(hashlib.blake2b(archive, digest_size=32).digest(), "big"))
    stamp = digits.zfill(size)[-size:].encode()
    archive[start : start + size] = stamp
    crc = struct.pack("<I", zlib.crc32(stamp))
    if info.flag_bits & 0x08:  # CRC in the data descriptor after the data
        signed = bytes(archive[start + size : start + size + 4]) == b"PK\x07\x08"
        at = start + size + (4 if signed else 0)
    else:
        at = info.header_offset + 14
    archive[at : at + 4] = crc
    name = info.filename.encode()
    entry = start_dir
    while bytes(archive[entry : entry + 4]) == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<HHH", archive, entry + 28)
        if bytes(archive[entry + 46 : entry + 46 + n]) == name:
            archive[entry + 16 : entry + 20] = crc
            return
        entry += 46 + n + m + k


class CheckpointWriteError(EammError, OSError):
    """A checkpoint could not be written (full disk, I/O error); the old file is intact. An
    ``OSError`` too, for callers that catch those."""


def canonical(value):
    """``value`` as a tree that pickles by value alone: every ``str`` interned, every dict,
    list and tuple a new object (state dicts keep their type and ``_metadata``), tensors as
    they are. Pickle writes an object met twice as a back-reference, so its bytes depend on
    which equal objects are one object: a resumed run's Adam states kept the ``'step'`` key
    (and the ``history`` its ``'loss/total'``, ``'lr'``; the optimisers their ``'betas'``)
    loaded from the old checkpoint, a string of its own where a straight run has the interned
    literal, and wrote other bytes for the same values."""
    kind = type(value)
    if kind is str:
        return sys.intern(value)
    if kind is list:
        return [canonical(v) for v in value]
    if kind is tuple:
        return tuple(canonical(v) for v in value)
    if kind in (dict, OrderedDict, Counter):
        copy = kind()
        for key, item in value.items():
            copy[canonical(key)] = canonical(item)
        for name, attr in getattr(value, "__dict__", {}).items():  # a state dict's _metadata
            setattr(copy, name, canonical(attr))
        return copy
    return value


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write to a temporary file in the same folder, flushed to disk, then rename: never a half
    checkpoint; the same payload gives the same bytes (``canonical``: whichever objects hold
    its values; ``_stable_serialization_id``), so a resumed run's checkpoint is a straight
    run's file. A failed write (full disk) keeps the old checkpoint and names the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(canonical(payload), buffer)
    _stable_serialization_id(buffer)
    try:
        write_bytes(path, buffer.getbuffer())  # a full disk, a kill: the old checkpoint stays
    except OSError as err:
        kept = "the previous checkpoint is kept" if path.is_file() else "nothing was written"
        reason = err.strerror or str(err) or type(err).__name__
        raise CheckpointWriteError(
            f"{path}: cannot write the checkpoint: {reason} ({kept})"
        ) from err
    return path


def require_torch_file(path: Path) -> None:
    """Refuse, without loading it, a file that cannot be a checkpoint (a zeroed or truncated
    file, another format): cheap enough to check before a run starts."""
    if not zipfile.is_zipfile(path):  # torch.save's format; torch's own message would suggest
        # weights_only=False, the unsafe load, for what is a damaged or foreign file
        raise EammError(f"{path}: not a checkpoint (truncated, damaged or not a torch.save file)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise EammError(f"{path}: checkpoint does not exist")
    require_torch_file(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # damaged members and non-tensor pickles alike
        raise EammError(f"{path}: cannot load checkpoint safely ({_load_error(err)})") from None
    if not isinstance(state, dict):  # torch.save([1, 2, 3]): a torch file, not a checkpoint
        raise EammError(
            f"{path}: not a checkpoint (a torch.save file holding a {type(state).__name__}, "
            "not a checkpoint's dict)"
        )
    return state


def load_fingerprinted(path: str | Path) -> tuple[dict, str]:
    """(state, ``file_fingerprint``) of one and the same file: hashed before and after the
    load, refused when they differ (a training rewrote it meanwhile), so the lineage a stage
    records is that of the weights it started from."""
    before = file_fingerprint(path)
    state = load_checkpoint(path)
    if file_fingerprint(path) != before:
        raise EammError(
            f"{path}: the checkpoint changed while it was read (a training writing it?); "
            "run again once that run is done"
        )
    return state, before


def require_stage(state: dict, path: Path, stage: str) -> None:
    """Refuse a checkpoint another stage wrote, put where ``stage``'s belongs (a copied or
    swapped file): it trained silently, or failed later with a lineage message naming the
    wrong stage. Checkpoints that record no stage are not checked."""
    recorded = state.get("stage")
    if isinstance(recorded, str) and recorded != stage:
        raise EammError(f"{path}: a {recorded} checkpoint, where {stage}'s belongs")


def unfinished(state: dict, path: Path, stage: str) -> str:
    """A note for a checkpoint whose training stopped before its ``steps`` (a killed or
    interrupted run): usable, and said ("" when finished or not recorded)."""
    step = state.get("step")
    steps = ((state.get("params") or {}).get(stage) or {}).get("steps")
    if isinstance(step, int) and isinstance(steps, int) and step < steps:
        return f"{path}: {stage} stopped at step {step} of {steps} (its training did not finish)"
    return ""


def peek_checkpoint(path: Path) -> dict:
    """A checkpoint's record without reading its tensors (memory-mapped): for notes about a
    file the run loads elsewhere."""
    require_torch_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise EammError(f"{path}: cannot load checkpoint safely ({_load_error(err)})") from None
    return state if isinstance(state, dict) else {}


def _load_error(err: Exception) -> str:
    """torch.load's reason in one line, without its advice to load unsafely."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):  # objects beyond tensors
        detail = lines[1].removeprefix("WeightsUnpickler error: ") if len(lines) > 1 else ""
        return f"it holds objects a safe load refuses: {detail}".rstrip(": ")
    return lines[0] if lines else type(err).__name__


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The plain module behind DDP / torch.compile wrappers (state-dict keys without prefixes)."""
    module = getattr(module, "_orig_mod", module)
    return getattr(module, "module", module)


def check_lineage(
    loaded: list[tuple[Path, dict]],
    files: dict[str, Path],
    known: dict[str, str] | None = None,
) -> None:
    """Refuse checkpoints of different training runs used together: each records the upstream
    checkpoints it was trained from (``upstream``: stage -> file fingerprint), and ``files``
    says where those stages' checkpoints are now (one missing there is not checked). A folder
    whose FOMM was another run's rendered another face with exit 0. Checkpoints without the
    record (older, imported) are not checked. ``known``: fingerprints of ``files`` the caller
    has already taken (a reference checkpoint is hundreds of MB: hashed once)."""
    fingerprints = dict(known or {})
    for path, state in loaded:
        for upstream, recorded in (state.get("upstream") or {}).items():
            found = files.get(upstream)
            if found is None or not found.is_file():
                continue
            if upstream not in fingerprints:
                fingerprints[upstream] = file_fingerprint(found)
            if fingerprints[upstream] != recorded:
                raise EammError(
                    f"{path}: trained from another {upstream} checkpoint than {found} (the "
                    "checkpoints mix training runs); retrain it or use one run's checkpoints"
                )
