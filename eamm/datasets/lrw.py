"""LRW recipe: index ``lipread_mp4/<WORD>/<split>/<WORD>_<nnnnn>.mp4`` clips.

The raw root is either the folder holding ``lipread_mp4/`` (other entries beside it are not
looked at) or ``lipread_mp4`` itself. Each clip may have a same-named ``.txt`` metadata file;
those are accepted, not indexed. Clip numbers repeat across splits, so the split is part of the id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from eamm.config import LRW_SPLITS, LrwDatasetParams
from eamm.datasets.base import (
    LINKS,
    ClipEntry,
    DatasetIndex,
    Requested,
    TreeWalker,
    check_choices,
    entry_with_split,
    join,
    not_mp4,
)
from eamm.errors import EammError

SPLITS = LRW_SPLITS
LRW_FOLDER = "lipread_mp4"
WORD_RE = re.compile(r"[A-Z]+")
STEM_RE = re.compile(r"([A-Z]+)_([0-9]{5})")


class LrwRecipe:
    """Indexes an LRW raw folder; the split is LRW's own (its folder name)."""

    name = "lrw"

    def __init__(
        self,
        words: Iterable[str] | None = None,
        splits: Iterable[str] = SPLITS,
        links: str = "follow",
        requested_in: str | None = None,
    ) -> None:
        """``requested_in`` names the params section the selections came from
        (``datasets.lrw``): a selected word or split found nowhere is then a layout problem."""
        self.links = check_choices("lrw links", links, LINKS)[0]
        self.words = check_choices("lrw words", words, pattern=WORD_RE)
        self.splits = check_choices("lrw splits", splits, SPLITS) or SPLITS
        self.requested_in = requested_in

    @classmethod
    def from_params(cls, section: LrwDatasetParams) -> LrwRecipe:
        return cls(
            words=tuple(section.words) if section.words else None,
            splits=section.splits,
            links=section.links,
            requested_in=f"datasets.{cls.name}",
        )

    def split_of(self, entry: ClipEntry) -> str:
        """LRW's own: the split folder the clip lies in (``<WORD>/<split>/<file>``)."""
        return PurePosixPath(entry.video).parts[-2]

    def index(self, root: Path) -> DatasetIndex:
        walker = TreeWalker(root, self.links)
        base = self._base(walker, root)
        entries: list[ClipEntry] = []
        words = Requested(self.requested_in, "words", self.words)
        splits = Requested(self.requested_in, "splits", self.splits, SPLITS)
        if base is not None:
            found = walker.folders(base, "word", WORD_RE.fullmatch, hint=" (LRW words are A-Z)")
            for word, rel in words.met(found):
                if self.words is None or word in self.words:
                    entries.extend(self._word(walker, rel, word, splits))
            words.report(walker, lambda w: join(base, w), base or "the raw folder")
            splits.report(
                walker, lambda s: join(base, f"*/{s}"), f"any {join(base, '<WORD>')} folder"
            )
        return walker.finish(self.name, entries)

    @staticmethod
    def _base(walker: TreeWalker, root: Path) -> str | None:
        """Root-relative ``lipread_mp4`` folder ("" when the root is it), None if refused."""
        if (walker.root / LRW_FOLDER).is_symlink() or (walker.root / LRW_FOLDER).exists():
            kind = walker.kind_of(LRW_FOLDER)
            if kind == "file":
                walker.problem(LRW_FOLDER, "unexpected file (expected a folder)")
            return LRW_FOLDER if kind == "dir" else None
        if LRW_FOLDER in (walker.given.name, walker.root.name):
            return ""
        raise EammError(f"{root}: no {LRW_FOLDER} folder in the LRW raw folder")

    def _word(
        self, walker: TreeWalker, word_rel: str, word: str, splits: Requested
    ) -> list[ClipEntry]:
        entries: list[ClipEntry] = []
        found = walker.folders(word_rel, "split", SPLITS.__contains__, "train/val/test")
        for split, split_rel in splits.met(found):
            if split in self.splits:
                for number, path in _clips(walker, split_rel, word):
                    entries.append(
                        entry_with_split(
                            self,
                            clip_id=f"{split}/{word}/{word}_{number}",
                            dataset=self.name,
                            speaker=None,
                            emotion=None,
                            level=None,
                            view=None,
                            word=word,
                            utterance=number,
                            video=path,
                            audio=None,
                        )
                    )
        return entries


def _clips(walker: TreeWalker, split_rel: str, word: str) -> Iterable[tuple[str, str]]:
    """(number, path) of the ``<WORD>_<nnnnn>.mp4`` files of a split folder; .txt is accepted."""
    for name, kind in walker.scan(split_rel):
        rel = join(split_rel, name)
        if kind is None:
            continue
        if kind == "dir":
            walker.problem(rel, f"unexpected folder (expected {word}_<nnnnn>.mp4 files)")
            continue
        stem, dot, ext = name.rpartition(".")
        if not dot or ext not in ("mp4", "txt"):
            walker.problem(rel, not_mp4(name))
            continue
        match = STEM_RE.fullmatch(stem)
        if match is None:
            walker.problem(rel, f"file name '{name}' is not {word}_<5 digits>.{ext}")
        elif match[1] != word:
            walker.problem(rel, f"file name '{name}' does not match its word folder '{word}'")
        elif ext == "mp4":
            yield match[2], rel


def require_layout(root: str | Path) -> None:
    """The top of an LRW raw folder (a ``lipread_mp4`` folder in it, or the folder itself),
    checked without walking the tree: before a run starts Prefect, not in its index task."""
    LrwRecipe._base(TreeWalker(root), Path(root))
