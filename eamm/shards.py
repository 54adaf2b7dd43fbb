"""Processed clips packed into uncompressed tar shards, read back through byte offsets.

Why: DVC stats and hashes every file of a tracked folder, so 5 files per clip made `dvc status`
take 12-28 s at 20k clips. One tar per group (an LRW split/word, a MEAD speaker/view) keeps the
file count in the hundreds for the full datasets while each member stays a plain byte range:
loaders read exactly the bytes of one member (``os.pread``), and ``tar xf`` gives the per-clip
folders back. Shards are written deterministically (sorted members, zero mtimes and owners), so
the same clips always give the same bytes and DVC sees no change after a no-op re-run.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from eamm.atomic import file_mode

SHARDS_DIR = "shards"
SHARD_DEPTH = 2
BLOCK = tarfile.BLOCKSIZE
CHUNK = 1 << 20


def new_digest() -> hashlib.blake2b:
    """The content hash of shard members (BLAKE2b, 16 bytes): stdlib, ~0.5 GB/s per core."""
    return hashlib.blake2b(digest_size=16)


def digest_of(data: bytes) -> str:
    """Hex content hash (``new_digest``) of bytes already read."""
    digest = new_digest()
    digest.update(data)
    return digest.hexdigest()


def shard_of(clip_id: str) -> str:
    """Shard path (relative to the processed root) for a clip: its first two id components.

    LRW ``train/ABOUT/ABOUT_00001`` -> ``shards/train/ABOUT.tar`` (one split of one word, up to
    ~1000 clips); MEAD ``M003/front/angry/level_1/001`` -> ``shards/M003/front.tar`` (one
    speaker's view, ~700 clips). New raw data only touches the shards of its groups.
    """
    parts = clip_id.split("/")
    group = "/".join(parts[:SHARD_DEPTH]) if len(parts) > SHARD_DEPTH else "_".join(parts[:-1])
    return f"{SHARDS_DIR}/{group or 'root'}.tar"


@dataclass(frozen=True)
class Member:
    """Where one output file of a clip lives: ``size`` bytes at ``offset`` in ``shard``."""

    shard: Path
    offset: int
    size: int

    def read(self) -> bytes:
        fd = os.open(self.shard, os.O_RDONLY)
        try:
            data = os.pread(fd, self.size, self.offset)
        finally:
            os.close(fd)
        if len(data) != self.size:
            raise OSError(f"{self.shard}: truncated member at byte {self.offset}")
        return data

    def digest(self) -> str:
        """Hex content hash of the member's bytes, read in chunks (members can be large)."""
        digest = new_digest()
        with self.shard.open("rb") as handle:
            handle.seek(self.offset)
            left = self.size
            while left > 0 and (chunk := handle.read(min(CHUNK, left))):
                digest.update(chunk)
                left -= len(chunk)
        if left:
            raise OSError(f"{self.shard}: truncated member at byte {self.offset}")
        return digest.hexdigest()


# A member to pack: a file on disk or a byte range of an existing shard.
Source = Path | Member


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _copy_into(handle: io.BufferedWriter, source: Source) -> str:
    """Append ``source`` to ``handle``; returns the content hash of the bytes written."""
    digest = new_digest()
    if isinstance(source, Member):
        data = source.read()
        digest.update(data)
        handle.write(data)
        return digest.hexdigest()
    with source.open("rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


def write_shard(
    path: Path, clips: Mapping[str, Mapping[str, Source]]
) -> dict[str, dict[str, tuple[int, int, str]]]:
    """Pack ``{clip_id: {file name: source}}`` into ``path`` atomically; returns
    ``{clip_id: {file name: (data offset, size, content hash)}}``. Readers see the old shard
    or the new one.

    Written block by block (header, data, padding; two zero blocks and record padding at the
    end), so each member's data offset is known as it is written; the hash is of the bytes as
    they were written, so later damage to the shard shows up against it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    placed: dict[str, dict[str, tuple[int, int, str]]] = {}
    try:
        with tmp.open("wb") as handle:
            for clip_id in sorted(clips):
                placed[clip_id] = {}
                for name, source in clips[clip_id].items():
                    size = source.size if isinstance(source, Member) else source.stat().st_size
                    info = tarfile.TarInfo(f"{clip_id}/{name}")
                    info.size, info.mode, info.mtime = size, 0o644, 0
                    handle.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
                    start = handle.tell()
                    digest = _copy_into(handle, source)
                    if handle.tell() - start != size:
                        raise OSError(f"{path}: {clip_id}/{name} changed size while packing")
                    handle.write(b"\0" * (_padded(size) - size))
                    placed[clip_id][name] = (start, size, digest)
            end = handle.tell() + 2 * BLOCK
            handle.write(
                b"\0" * (-(-end // tarfile.RECORDSIZE) * tarfile.RECORDSIZE - end + 2 * BLOCK)
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return placed


def _parse_header(header: bytes) -> tuple[bytes, int] | None:
    """(ustar name, size) of a tar header block, None unless its checksum is right.

    Parsed by hand: ``tarfile.TarInfo.frombuf`` costs more than the read itself, and the reuse
    check runs on every member of a dataset.
    """
    if len(header) != BLOCK:
        return None
    try:
        size = int(header[124:136].strip(b"\0 ") or b"0", 8)
        checksum = int(header[148:156].strip(b"\0 ") or b"0", 8)
    except ValueError:
        return None
    if checksum != sum(header[:148]) + 8 * 32 + sum(header[156:]):
        return None
    return header[:100].split(b"\0", 1)[0], size


def unmatched(shard: Path, members: Mapping[str, tuple[int, int]], clip_id: str = "") -> list[str]:
    """Names of ``{file name: (data offset, size)}`` whose tar header, just before the offset,
    does not name ``<clip_id>/<file name>`` with that size (all if the shard is unreadable).

    One open and one 512-byte read per member: cheap enough to check every clip of a dataset
    before reusing it.
    """
    try:
        fd = os.open(shard, os.O_RDONLY)
    except OSError:
        return list(members)
    bad = []
    try:
        for name, (offset, size) in members.items():
            header = os.pread(fd, BLOCK, offset - BLOCK) if offset >= BLOCK else b""
            parsed = _parse_header(header)
            # a name over 100 bytes lives in a PAX header before this one, cut to 100 bytes here
            full = (f"{clip_id}/{name}" if clip_id else name).encode()[:100]
            if parsed != (full, size):
                bad.append(name)
    finally:
        os.close(fd)
    return bad


@lru_cache(maxsize=64)
def _scan(shard: Path, mtime_ns: int) -> dict[str, tuple[int, int]]:
    with tarfile.open(shard, mode="r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}


def scan_shard(shard: Path) -> dict[str, tuple[int, int]]:
    """``{member name: (data offset, size)}`` of a shard (empty if missing or unreadable)."""
    try:
        return _scan(shard, shard.stat().st_mtime_ns)
    except (OSError, tarfile.TarError):
        return {}


def locate(shard: Path, clip_id: str, names: Iterable[str]) -> dict[str, tuple[int, int]] | None:
    """Offsets of a clip's members found by reading the shard's index; None if any is missing."""
    index = scan_shard(shard)
    found = {name: index.get(f"{clip_id}/{name}") for name in names}
    return None if any(v is None for v in found.values()) else found  # type: ignore[return-value]


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _npy_header(member: Member) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, Fortran order, dtype, data offset in the shard) from a ``.npy`` member's header;
    ValueError when the header is damaged."""
    with member.shard.open("rb") as handle:
        handle.seek(member.offset)
        version = np.lib.format.read_magic(handle)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(handle)
        return shape, fortran, dtype, handle.tell()


def npy_shape(member: Member) -> tuple[int, ...]:
    """Shape of a ``.npy`` member from its header alone (a quick check reads no data)."""
    return _npy_header(member)[0]


def npy_memmap(member: Member) -> np.ndarray:
    """A ``.npy`` member mapped read-only from its shard: a slice reads only the pages it needs."""
    shape, fortran, dtype, start = _npy_header(member)
    return np.memmap(
        member.shard,
        dtype=dtype,
        mode="r",
        offset=start,
        shape=shape,
        order="F" if fortran else "C",
    )
