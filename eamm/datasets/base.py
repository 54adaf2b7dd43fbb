"""Common interface of the dataset recipes: clip entries, layout problems, the folder walker.

A recipe turns a raw download folder into a :class:`DatasetIndex`: one :class:`ClipEntry` per
clip it recognises and one :class:`IndexProblem` per thing that breaks the expected layout.
Recipes never guess at a broken layout; they list it so a person can decide.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from eamm.config import LinkPolicy
from eamm.errors import EammError

Kind = Literal["dir", "file"]

OUTSIDE_ROOT = "resolves outside the raw root"


@dataclass(frozen=True)
class ClipEntry:
    """One raw clip; ``clip_id`` is also its output folder relative to the processed root."""

    clip_id: str
    dataset: str
    split: str
    speaker: str | None
    emotion: str | None
    level: int | None
    view: str | None
    word: str | None
    utterance: str
    video: str
    audio: str | None


@dataclass(frozen=True)
class IndexProblem:
    """Something under the raw root that does not fit the layout (``path`` is root-relative)."""

    path: str
    reason: str


@dataclass
class DatasetIndex:
    """The clips of one raw folder (sorted by ``clip_id``) and its layout problems (by path)."""

    dataset: str
    root: str
    entries: list[ClipEntry]
    problems: list[IndexProblem]


class DatasetRecipe(Protocol):
    """Knows one dataset's raw layout, its split rule, and indexes a folder holding it.

    Adding a dataset is one module with a class like this, one ``RECIPES`` entry and its section
    under ``datasets`` in params.yaml; the index flow and everything after it read only
    :class:`ClipEntry` records (the clip record every recipe yields).
    """

    name: str

    @classmethod
    def from_params(cls, section: Any) -> DatasetRecipe:
        """The recipe configured by its ``datasets.<name>`` params section."""
        ...

    def index(self, root: Path) -> DatasetIndex:
        """One :class:`ClipEntry` per clip found, split by :meth:`split_of`."""
        ...

    def split_of(self, entry: ClipEntry) -> str:
        """The split rule: which split a clip belongs to (train/val/test)."""
        ...


def entry_with_split(recipe: DatasetRecipe, **fields: Any) -> ClipEntry:
    """The clip record of ``fields`` (all but ``split``), split by the recipe's rule."""
    entry = ClipEntry(split="", **fields)
    return replace(entry, split=recipe.split_of(entry))


def join(rel: str, name: str) -> str:
    """Posix path of ``name`` inside the root-relative folder ``rel`` ("" is the root)."""
    return f"{rel}/{name}" if rel else name


def not_mp4(name: str) -> str:
    """Why ``name`` is no clip of a tree whose clips end in ``.mp4`` (case counts: the clip
    ids, and the file names on other systems, must not change with it)."""
    ext = name.rpartition(".")[2] if "." in name else ""
    if ext.lower() == "mp4":
        return f"extension '.{ext}' is not '.mp4' (rename it)"
    return "not an .mp4 file"


LINKS: tuple[str, ...] = get_args(LinkPolicy)


class TreeWalker:
    """Lists folders under one raw root with ``os.scandir``; symbolic links are followed
    (``links="follow"``) or, with ``links="inside"``, refused where they leave the root.

    Plain entries cost no ``stat`` call (the kind comes from the directory listing); only
    symbolic links are resolved. Problems found while listing are collected in ``problems``.
    The recipes walk a fixed depth, so a link back up the tree cannot loop.
    """

    def __init__(self, root: str | Path, links: str = "follow") -> None:
        self.links = links  # one of LINKS, checked by the recipe (``check_choices``)
        given = Path(root)
        if not given.exists():
            raise EammError(f"{root}: raw folder does not exist")
        if not given.is_dir():
            raise EammError(f"{root}: raw root is not a folder")
        self.given = given.absolute()
        self.root = given.resolve()
        self._root_str = str(self.root)
        self._prefix = self._root_str.rstrip(os.sep) + os.sep
        self.problems: list[IndexProblem] = []

    def problem(self, rel: str, reason: str) -> None:
        self.problems.append(IndexProblem(rel, reason))

    def os_path(self, rel: str) -> str:
        return os.path.join(self._root_str, rel) if rel else self._root_str

    def inside(self, real: str) -> bool:
        return real == self._root_str or real.startswith(self._prefix)

    def scan(self, rel: str) -> list[tuple[str, Kind | None]]:
        """(name, kind) of the non-hidden entries of a folder; kind None means refused/reported."""
        try:
            with os.scandir(self.os_path(rel)) as it:
                listing = [e for e in it if not e.name.startswith(".")]
        except OSError as err:
            self.problem(rel, f"cannot list folder ({err.strerror or err})")
            return []
        return [(e.name, self._checked_kind(e, rel)) for e in listing]

    def _checked_kind(self, entry: os.DirEntry, rel: str) -> Kind | None:
        """The entry's kind; a name that is not UTF-8 is reported (printable) and refused: no
        manifest, report or later stage could store it."""
        path = join(rel, entry.name)
        try:
            entry.name.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(path).decode("utf-8", "backslashreplace")
            self.problem(shown, "name is not valid UTF-8 (rename it)")
            return None
        return self._kind(entry, path)

    def folders(
        self,
        rel: str,
        label: str,
        valid: Callable[[str], bool],
        expected: str | None = None,
        hint: str = "",
    ) -> Iterator[tuple[str, str]]:
        """(name, path) of the sub-folders of ``rel`` whose name is ``valid``; files and
        unknown names at this level are reported as layout problems, never guessed at."""
        for name, kind in self.scan(rel):
            path = join(rel, name)
            if kind is None:
                continue
            if kind == "file":
                self.problem(path, f"unexpected file (expected {expected or label} folders)")
            elif not valid(name):
                self.problem(path, f"unknown {label} folder '{name}'{hint}")
            else:
                yield name, path

    def kind_of(self, rel: str) -> Kind | None:
        """Kind of one root-relative path that exists (same checks as :meth:`scan`)."""
        path = self.os_path(rel)
        if os.path.islink(path):
            return self._link_kind(path, rel)
        return self._mode_kind(os.stat(path).st_mode, rel)

    def _kind(self, entry: os.DirEntry[str], rel: str) -> Kind | None:
        if entry.is_symlink():
            return self._link_kind(entry.path, rel)
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
        self.problem(rel, "not a regular file or folder")
        return None

    def _link_kind(self, path: str, rel: str) -> Kind | None:
        if self.links == "inside" and not self.inside(os.path.realpath(path)):
            self.problem(rel, OUTSIDE_ROOT)
            return None
        try:
            mode = os.stat(path).st_mode
        except OSError as err:
            loop = err.errno == errno.ELOOP
            self.problem(rel, "symbolic link loop" if loop else "broken symbolic link")
            return None
        return self._mode_kind(mode, rel)

    def _mode_kind(self, mode: int, rel: str) -> Kind | None:
        if stat.S_ISDIR(mode):
            return "dir"
        if stat.S_ISREG(mode):
            return "file"
        self.problem(rel, "not a regular file or folder")
        return None

    def finish(self, dataset: str, entries: list[ClipEntry]) -> DatasetIndex:
        """The index with entries sorted by clip_id and problems by path."""
        return DatasetIndex(
            dataset=dataset,
            root=self._root_str,
            entries=sorted(entries, key=lambda e: e.clip_id),
            problems=sorted(self.problems, key=lambda p: (p.path, p.reason)),
        )


class Requested:
    """One selection list of a params section (``datasets.lrw.words``) and the folder names a
    walk met at its level: :meth:`report` lists each selected value met nowhere as a layout
    problem, so a typo or a speaker never downloaded is said rather than indexed as fewer clips.

    Only a narrowing selection is checked: ``None``, or a list naming every value there is
    (``every``), selects whatever is there. Nothing is said with no ``source`` (a recipe built
    in code, not from params) or when no folder of that level was listed (its parent is missing,
    refused or deselected: a problem of its own, if any).
    """

    def __init__(
        self,
        source: str | None,
        option: str,
        values: tuple[str, ...] | None,
        every: tuple[str, ...] | None = None,
    ) -> None:
        narrows = values is not None and (every is None or set(values) != set(every))
        self.key = f"{source}.{option}"
        self.values = values if source is not None and narrows else ()
        self.seen: set[str] | None = None

    def met(self, folders: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        """The (name, path) pairs of :meth:`TreeWalker.folders`, passed on, their names noted."""
        if self.seen is None:
            self.seen = set()
        for name, path in folders:
            self.seen.add(name)
            yield name, path

    def report(self, walker: TreeWalker, path_of: Callable[[str], str], where: str) -> None:
        """A problem at ``path_of(value)`` for each selected value no listed folder was named."""
        if self.seen is None:
            return
        for value in self.values:
            if value not in self.seen:
                walker.problem(
                    path_of(value), f"'{value}' requested in {self.key}, not found under {where}"
                )


def check_choices(
    option: str,
    values: Iterable[str] | None,
    allowed: tuple[str, ...] | None = None,
    pattern: re.Pattern[str] | None = None,
) -> tuple[str, ...] | None:
    """Validated tuple of option values (None stays None); one-line EammError otherwise."""
    if values is None:
        return None
    values = (values,) if isinstance(values, str) else tuple(values)
    if not values:
        raise EammError(f"{option}: empty selection (use None for all)")
    for value in values:
        ok = isinstance(value, str) and (
            (allowed is not None and value in allowed)
            or (pattern is not None and pattern.fullmatch(value) is not None)
        )
        if not ok:
            raise EammError(f"{option}: unknown value {value!r}")
    return values
