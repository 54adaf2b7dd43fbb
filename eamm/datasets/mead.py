"""MEAD recipe: index ``<speaker>/video/<view>/<emotion>/level_<n>/<utt>.mp4`` clips.

Audio lives per clip (not per view) in ``<speaker>/audio/<emotion>/level_<n>/<utt>.m4a``; some
MEAD videos have no audio track, so the separate file is used when it exists (or, where a user
converted the audio, ``<utt>`` in another format ffmpeg reads: ``AUDIO_SUFFIXES``; the .m4a
first). The audio tree is only read to find those files: its own oddities are not reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from eamm.config import MEAD_EMOTIONS, MeadDatasetParams
from eamm.datasets.base import (
    LINKS,
    ClipEntry,
    DatasetIndex,
    Kind,
    Requested,
    TreeWalker,
    check_choices,
    entry_with_split,
    join,
    not_mp4,
)
from eamm.errors import EammError

VIEWS = ("down", "front", "left_30", "left_60", "right_30", "right_60", "top")
EMOTIONS = MEAD_EMOTIONS
LEVELS = {"level_1": 1, "level_2": 2, "level_3": 3}
# The test identities EAT and EDTalk use; every other speaker is train (splits/mead_v1.yaml).
DEFAULT_TEST_SPEAKERS = ("M003", "M030", "W009", "W015")
SPEAKER_RE = re.compile(r"[MW][0-9]{3}")
UTTERANCE_RE = re.compile(r"[0-9]{3}")


def load_test_speakers(path: str | Path) -> tuple[str, ...]:
    """Test speaker ids of a versioned split file (``splits/mead_v1.yaml``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        reason = err.strerror if isinstance(err, OSError) else type(err).__name__
        where = "" if path.is_absolute() else f", relative to {Path.cwd()}"
        raise EammError(
            f"{path}: cannot read split file ({reason}{where}; datasets.mead.split_file)"
        ) from None
    if not isinstance(data, dict):
        raise EammError(f"{path}: split file must be a mapping with version and test_speakers")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise EammError(f"{path}: 'version' must be a positive integer, got {version!r}")
    speakers = data.get("test_speakers")
    if not isinstance(speakers, list) or not speakers:
        raise EammError(f"{path}: 'test_speakers' must be a non-empty list of speaker ids")
    for speaker in speakers:
        if not isinstance(speaker, str) or not SPEAKER_RE.fullmatch(speaker):
            raise EammError(
                f"{path}: bad speaker id {speaker!r} in test_speakers (want M/W + 3 digits)"
            )
    if len(set(speakers)) != len(speakers):
        raise EammError(f"{path}: duplicate speaker ids in test_speakers")
    return tuple(speakers)


class MeadRecipe:
    """Indexes a MEAD raw folder; split by speaker identity (test speakers vs the rest)."""

    name = "mead"

    def __init__(
        self,
        views: Iterable[str] = ("front",),
        speakers: Iterable[str] | None = None,
        emotions: Iterable[str] | None = None,
        test_speakers: Iterable[str] = DEFAULT_TEST_SPEAKERS,
        links: str = "follow",
        requested_in: str | None = None,
    ) -> None:
        """``requested_in`` names the params section the selections came from
        (``datasets.mead``): a selected speaker, view or emotion found nowhere is then a
        layout problem."""
        self.links = check_choices("mead links", links, LINKS)[0]
        self.views = check_choices("mead views", views, VIEWS)
        self.speakers = check_choices("mead speakers", speakers, pattern=SPEAKER_RE)
        self.emotions = check_choices("mead emotions", emotions, EMOTIONS)
        self.test_speakers = frozenset(
            check_choices("mead test_speakers", test_speakers, pattern=SPEAKER_RE) or ()
        )
        self.requested_in = requested_in

    @classmethod
    def from_params(cls, section: MeadDatasetParams) -> MeadRecipe:
        """Views, speakers, emotions from ``datasets.mead``; test speakers from its split file."""
        return cls(
            views=tuple(section.views),
            speakers=tuple(section.speakers) if section.speakers else None,
            emotions=tuple(section.emotions) if section.emotions else None,
            test_speakers=load_test_speakers(section.split_file),
            links=section.links,
            requested_in=f"datasets.{cls.name}",
        )

    def split_of(self, entry: ClipEntry) -> str:
        """By identity: a test speaker's clips are test, every other speaker's train."""
        return "test" if entry.speaker in self.test_speakers else "train"

    def index(self, root: Path) -> DatasetIndex:
        walker = TreeWalker(root, self.links)
        entries: list[ClipEntry] = []
        speakers = Requested(self.requested_in, "speakers", self.speakers)
        views = Requested(self.requested_in, "views", self.views, VIEWS)
        emotions = Requested(self.requested_in, "emotions", self.emotions, EMOTIONS)
        for speaker, _ in speakers.met(walker.folders("", "speaker", SPEAKER_RE.fullmatch)):
            if self.speakers is None or speaker in self.speakers:
                entries.extend(self._speaker(walker, speaker, views, emotions))
        speakers.report(walker, str, "the raw folder")
        views.report(walker, lambda v: f"*/video/{v}", "any <speaker>/video folder")
        emotions.report(walker, lambda e: f"*/video/*/{e}", "any <speaker>/video/<view> folder")
        return walker.finish(self.name, entries)

    def _speaker(
        self, walker: TreeWalker, speaker: str, views: Requested, emotions: Requested
    ) -> list[ClipEntry]:
        kinds: dict[str, str | None] = {}
        for name, kind in walker.scan(speaker):
            rel = join(speaker, name)
            if name in ("video", "audio"):
                kinds[name] = kind
                if kind == "file":
                    walker.problem(rel, "unexpected file (expected a folder)")
            elif kind == "dir":
                walker.problem(rel, f"unknown folder '{name}' (expected video and audio)")
            elif kind == "file" and name in ("video.tar", "audio.tar"):
                walker.problem(rel, f"MEAD's archive, not extracted (tar -xf {rel} -C {speaker})")
            elif kind == "file":
                walker.problem(rel, "unexpected file (expected video and audio folders)")
        if "video" not in kinds:
            walker.problem(speaker, "no video folder")
        if kinds.get("video") != "dir":
            return []
        audio = _AudioFinder(walker, speaker, enabled=kinds.get("audio") == "dir")
        entries: list[ClipEntry] = []
        video = join(speaker, "video")
        for view, rel in views.met(walker.folders(video, "view", VIEWS.__contains__)):
            if self.views is None or view in self.views:
                for emotion, level, utt, path in self._clips(walker, rel, emotions):
                    entries.append(
                        entry_with_split(
                            self,
                            clip_id=f"{speaker}/{view}/{emotion}/level_{level}/{utt}",
                            dataset=self.name,
                            speaker=speaker,
                            emotion=emotion,
                            level=level,
                            view=view,
                            word=None,
                            utterance=utt,
                            video=path,
                            audio=audio.find(emotion, level, utt),
                        )
                    )
        return entries

    def _clips(
        self, walker: TreeWalker, view_rel: str, emotions: Requested
    ) -> Iterable[tuple[str, int, str, str]]:
        """(emotion, level, utterance, video path) of the valid clips of one view folder."""
        found = walker.folders(view_rel, "emotion", EMOTIONS.__contains__)
        for emotion, emotion_rel in emotions.met(found):
            if self.emotions is not None and emotion not in self.emotions:
                continue
            levels = walker.folders(emotion_rel, "level", LEVELS.__contains__, "level_<n>")
            for level_name, level_rel in levels:
                level = LEVELS[level_name]
                if emotion == "neutral" and level != 1:
                    walker.problem(
                        level_rel, f"'{level_name}' under neutral (neutral has only level_1)"
                    )
                else:
                    for utt, path in _videos(walker, level_rel):
                        yield emotion, level, utt, path


def _videos(walker: TreeWalker, level_rel: str) -> Iterable[tuple[str, str]]:
    """(utterance, path) of the ``<nnn>.mp4`` files of a level folder; the rest is reported."""
    for name, kind in walker.scan(level_rel):
        rel = join(level_rel, name)
        if kind is None:
            continue
        if kind == "dir":
            walker.problem(rel, "unexpected folder (expected <nnn>.mp4 files)")
        elif not name.endswith(".mp4"):
            walker.problem(rel, not_mp4(name))
        elif not UTTERANCE_RE.fullmatch(name[:-4]):
            walker.problem(rel, f"file name '{name}' is not <3 digits>.mp4")
        else:
            yield name[:-4], rel


# MEAD's own audio first, then formats a converted copy may be in (a .wav went unnoticed: the
# clip took the video's own audio, or failed "no audio stream")
AUDIO_SUFFIXES = (".m4a", ".wav", ".flac", ".mp3", ".aac", ".ogg", ".opus")


class _AudioFinder:
    """Finds ``<speaker>/audio/<emotion>/level_<n>/<utt>.m4a`` (or another ``AUDIO_SUFFIXES``
    file), listing each folder once."""

    def __init__(self, walker: TreeWalker, speaker: str, enabled: bool) -> None:
        self.walker = walker
        self.base = join(speaker, "audio")
        self.enabled = enabled
        self._dirs: dict[str, set[str]] = {}

    def _listing(self, rel: str, want: Kind) -> set[str]:
        if rel not in self._dirs:
            self._dirs[rel] = {n for n, k in self.walker.scan(rel) if k == want}
        return self._dirs[rel]

    def find(self, emotion: str, level: int, utt: str) -> str | None:
        if not self.enabled or emotion not in self._listing(self.base, "dir"):
            return None
        emotion_rel = join(self.base, emotion)
        level_name = f"level_{level}"
        if level_name not in self._listing(emotion_rel, "dir"):
            return None
        level_rel = join(emotion_rel, level_name)
        files = self._listing(level_rel, "file")
        for suffix in AUDIO_SUFFIXES:
            for name in (f"{utt}{suffix}", f"{utt}{suffix.upper()}"):
                if name in files:
                    return join(level_rel, name)
        return None
