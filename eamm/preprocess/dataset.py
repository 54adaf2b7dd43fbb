"""Processing indexed clips of a dataset: fingerprints, skip decisions, manifest rows, journal.

A clip is reused (not processed again) when its previous record has the same source content and
the same parameter fingerprint and, for ok clips, all outputs are on disk (in its shard, or still
in the staging folder) and sound: members of a shard changed since the manifest was written
(or all, with ``verify_inputs: content``) are hashed against the manifest. A failed record is
kept only when the clip was at fault; one whose error names a run fault (disk full...) is
redone. Rows of a version-2 manifest get their member hashes on their first reuse.

New clips are built in ``.staging/<clip_id>/`` and packed into shards afterwards
(``eamm.preprocess.packing``). Every finished clip is appended to a journal (one JSON
line, flushed and fsynced) so a killed run loses no finished work; the manifest written at the
end of a run absorbs the journal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

from eamm import __version__
from eamm.config import AUDIO_RATE, PreprocessParams
from eamm.datasets.base import ClipEntry
from eamm.errors import EammError
from eamm.face.landmarks import FaceModels, LandmarkBackend
from eamm.manifest import (
    MANIFEST_NAME,
    OUTPUT_FILES,
    STAGING_DIR,
    ManifestRow,
    byte_ranges,
    check_members,
    members,
    run_fault_reason,
)
from eamm.preprocess.clip import preprocess_clip
from eamm.preprocess.errors import run_fault
from eamm.shards import locate, unmatched

# Bump when the outputs of the same inputs and params change, so old outputs are redone.
PREPROCESS_REVISION = 1
JOURNAL_DIR = ".journal"

# Parameters that do not change outputs, left out of the fingerprint.
NON_OUTPUT_PARAMS = {"decoder_threads"}


def _file_digest(path: Path, digest: hashlib.blake2b) -> None:
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)


def param_fingerprint(params: PreprocessParams) -> str:
    """Hash of everything that changes a clip's outputs: params, template content, revision.
    Files named by path count by content, not by where they are (moving a template or FAN's
    weights redid every clip, and restarted every training stage on the same bytes), and
    FAN's weights only where the backend is ``fan``."""
    settings = params.model_dump(exclude=NON_OUTPUT_PARAMS)
    if params.template != "default":
        settings["template"] = "file"  # its content is hashed below
    fan = params.landmarks.backend == "fan" and params.landmarks.fan_weights_dir
    settings["landmarks"]["fan_weights_dir"] = "folder" if fan else None
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(f"revision={PREPROCESS_REVISION}".encode())
    if params.template != "default":
        _file_digest(Path(params.template), digest)
    else:
        from eamm.face.template import DEFAULT_TEMPLATE

        _file_digest(DEFAULT_TEMPLATE, digest)
    if fan:  # the files the backend reads (torch hub may download others into the folder)
        from eamm.face.landmarks import FAN_FILES

        for name in FAN_FILES:
            path = Path(params.landmarks.fan_weights_dir) / "checkpoints" / name
            if path.is_file():
                digest.update(name.encode())
                _file_digest(path, digest)
    return digest.hexdigest()


def _sources(raw_root: Path, entry: ClipEntry) -> list[Path]:
    return [raw_root / entry.video] + ([raw_root / entry.audio] if entry.audio else [])


def source_stat(raw_root: Path, entry: ClipEntry) -> tuple[int, int]:
    """(total bytes, newest mtime in ns) of the clip's source files; cheap change detection."""
    stats = [p.stat() for p in _sources(raw_root, entry) if p.exists()]
    return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


def content_fingerprint(raw_root: Path, entry: ClipEntry) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for path in _sources(raw_root, entry):
        if path.exists():
            _file_digest(path, digest)
        digest.update(b"\x00")
    return digest.hexdigest()


def entry_row(entry: ClipEntry) -> dict:
    """The manifest columns that come from the index (``ManifestRow`` fields)."""
    row = dataclasses.asdict(entry)
    row["video_path"] = row.pop("video")
    row["audio_path"] = row.pop("audio")
    return row


def staging_dir(out_root: Path, clip_id: str) -> Path:
    return Path(out_root) / STAGING_DIR / clip_id


def available(row: dict, out_root: Path, content: bool = False) -> dict | None:
    """The ok row if its outputs are on disk (offsets re-read from the shard if it was
    repacked since the row was written) and sound, else None.

    ``content``: members are hashed against the row's hashes; a row without hashes gets them
    once its tar and ``.npy`` headers pass (so a version-2 manifest is read through once).
    """
    if not row.get("shard"):
        folder = staging_dir(out_root, row["clip_id"])
        return row if all((folder / name).is_file() for name in OUTPUT_FILES) else None
    if unmatched(Path(out_root) / row["shard"], byte_ranges(row), row["clip_id"]):
        found = locate(Path(out_root) / row["shard"], row["clip_id"], OUTPUT_FILES)
        if found is None:
            return None
        row = {
            **row,
            "member_offsets": [found[n][0] for n in row["output_files"]],
            "member_sizes": [found[n][1] for n in row["output_files"]],
        }
    if row.get("member_hashes") and not content:
        return row
    if check_members(row, Path(out_root), content=True):
        return None
    if row.get("member_hashes"):
        return row
    found = members(row, Path(out_root))
    return {**row, "member_hashes": [found[n].digest() for n in row["output_files"]]}


def keep(prev: dict, out_root: Path, content: bool) -> dict | None:
    """The previous record if it still stands as it is: a failed row whose failure was the
    clip's (not a run fault of an older run), or an ok row whose outputs are sound."""
    if prev["status"] == "failed":
        return None if run_fault_reason(prev.get("error_message")) else prev
    return available(prev, out_root, content) if prev["status"] == "ok" else None


def same_sources(prev: dict, entry: ClipEntry) -> bool:
    """Whether the previous record was made from the files the index names now: an audio file
    that appeared, went or was renamed changes the outputs even where the sizes and times add
    up the same."""
    return (prev.get("video_path"), prev.get("audio_path")) == (entry.video, entry.audio)


def relabelled(kept: dict, entry: ClipEntry, size: int, mtime_ns: int) -> dict:
    """A kept record with the index's labels of today (split, speaker, emotion, word: a new
    split file moves a speaker between splits without changing any output) and the sources'
    size and time."""
    return {**kept, **entry_row(entry), "source_bytes": size, "source_mtime_ns": mtime_ns}


def changed_since(row: dict, out_root: Path, since_ns: int) -> bool:
    """Whether the row's shard was written after ``since_ns`` (the manifest's mtime): the
    pipeline writes shards before the manifest, so a later shard was changed by something else."""
    if not row.get("shard"):
        return False
    try:
        return (Path(out_root) / row["shard"]).stat().st_mtime_ns > since_ns
    except OSError:
        return True


def reusable(
    prev: dict | None,
    entry: ClipEntry,
    raw_root: Path,
    out_root: Path,
    param_fp: str,
    verify_inputs: str = "mtime",
    since_ns: int = 0,
) -> dict | None:
    """The previous record to keep if it still describes the clip, else None.

    ``verify_inputs="mtime"`` judges the sources by size and mtime (no reads) and hashes only
    the members of shards changed since ``since_ns``; ``"content"`` hashes the sources and
    every reused member.
    """
    if prev is None or prev.get("param_fingerprint") != param_fp or not same_sources(prev, entry):
        return None
    size, mtime_ns = source_stat(raw_root, entry)
    content = verify_inputs == "content"
    if content:
        if prev.get("source_fingerprint") != content_fingerprint(raw_root, entry):
            return None
    elif (prev.get("source_bytes"), prev.get("source_mtime_ns")) != (size, mtime_ns):
        return None
    kept = keep(prev, out_root, content or changed_since(prev, out_root, since_ns))
    return None if kept is None else relabelled(kept, entry, size, mtime_ns)


def process_entry(
    entry: ClipEntry,
    raw_root: Path,
    out_root: Path,
    params: PreprocessParams,
    param_fp: str,
    prev: dict | None,
    models: FaceModels,
    backend: LandmarkBackend,
) -> tuple[dict, bool]:
    """(row, reused?): a ``ManifestRow`` as a dict (``to_dict``), as rows travel. Bad clips
    become failed rows; a run fault (disk full, I/O error, out of memory) raises, so the task
    retries it and no row records it.

    ``prev`` is reused when the sources' content is unchanged (a touched file) and its
    outputs pass a content check: the flow sends here the clips it could not reuse.
    """
    try:
        size, mtime_ns = source_stat(raw_root, entry)
        fingerprint = content_fingerprint(raw_root, entry)
    except OSError as err:  # a folder where the clip was, no read permission: the clip's
        if run_fault(err):  # (it failed its whole batch, 16 clips, as if the run had)
            raise
        where = err.filename or raw_root / entry.video
        failed = ManifestRow(
            **entry_row(entry),
            param_fingerprint=param_fp,
            code_version=__version__,
            status="failed",
            error_code="unreadable_input",
            error_message=f"{where}: cannot read the raw file ({err.strerror or err})",
        )
        return failed.to_dict(), False
    if (
        prev is not None
        and prev.get("source_fingerprint") == fingerprint
        and prev.get("param_fingerprint") == param_fp
        and same_sources(prev, entry)
    ):
        kept = keep(prev, out_root, content=True)
        if kept is not None:
            return relabelled(kept, entry, size, mtime_ns), True
    common = dict(
        **entry_row(entry),
        source_bytes=size,
        source_mtime_ns=mtime_ns,
        source_fingerprint=fingerprint,
        param_fingerprint=param_fp,
        code_version=__version__,
    )
    clip_dir = staging_dir(out_root, entry.clip_id)
    audio = raw_root / entry.audio if entry.audio else None
    try:
        result = preprocess_clip(
            raw_root / entry.video,
            clip_dir,
            audio=audio,
            params=params,
            models=models,
            backend=backend,
        )
    except Exception as err:  # one bad clip must not stop the dataset
        shutil.rmtree(clip_dir, ignore_errors=True)
        if run_fault(err):
            raise
        code = getattr(err, "code", None) if isinstance(err, EammError) else "internal_error"
        message = str(err) if isinstance(err, EammError) else f"{entry.video}: {err!r}"
        failed = ManifestRow(
            **common, status="failed", error_code=code or "error", error_message=message
        )
        return failed.to_dict(), False
    row = ManifestRow(
        **common,
        status="ok",
        fps_in=result.input_fps,
        n_frames_in=result.input_frames,
        width=result.width,
        height=result.height,
        duration_s=result.input_frames / result.input_fps,
        n_frames=result.num_frames,
        n_mfcc_windows=result.num_windows,
        audio_source=result.audio_source,
        audio_video_offset_s=-result.audio_diff_samples / AUDIO_RATE,
        mfcc_end_pad=result.mfcc_end_pad,
        faces_detected=result.faces_detected,
        frames_with_face=result.frames_with_face,
        transform=list(result.transform),
        landmark_backend=result.landmark_backend,
        output_files=list(OUTPUT_FILES),  # staged: shard and byte ranges come at packing
        processing_seconds=result.seconds,
    )
    return row.to_dict(), False


class Journal:
    """Append-only JSON lines of finished clips, one file per process and thread."""

    def __init__(self, out_root: Path) -> None:
        self.folder = Path(out_root) / JOURNAL_DIR
        self.folder.mkdir(parents=True, exist_ok=True)

    def append(self, row: dict) -> None:
        self.extend([row])

    def extend(self, rows: list[dict]) -> None:
        """The rows' lines, durable (flushed and fsynced) when this returns: one write and one
        fsync for all of them (a shard's rows after packing; a fsync per line cost 7 % of the
        flow's CPU at 20k clips)."""
        name = f"{os.getpid()}-{threading.get_ident()}.jsonl"
        with (self.folder / name).open("a") as handle:
            handle.write("".join(json.dumps(row) + "\n" for row in rows))
            handle.flush()
            os.fsync(handle.fileno())


def manifest_mtime_ns(out_root: Path) -> int:
    """When the last manifest was written (0 if none): shards changed later are hashed."""
    try:
        return (Path(out_root) / MANIFEST_NAME).stat().st_mtime_ns
    except OSError:
        return 0


def clear_journal(out_root: Path) -> None:
    shutil.rmtree(Path(out_root) / JOURNAL_DIR, ignore_errors=True)
