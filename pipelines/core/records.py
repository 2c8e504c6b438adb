"""The records of one clip, stage by stage, and the rules for clip ids.

    manifest row ──ingest──► Clip (or RejectedRow) ──fetch──► ClipRecord (clip.json) + StatusRow
    ClipRecord ──annotate──► AnnotationRow (annotations/…/row.json, annotations.parquet)
    ClipRecord + AnnotationRow ──shard──► SampleMeta (the sample's JSON, pipelines/shard/contract.py)

`Clip`, `RejectedRow` and `StatusRow` are plain dataclasses: cheap to pickle between Beam workers,
carrying paths and ids, never media bytes. `ClipRecord` is the typed clip.json, validated when read;
its `Segment`, `LabelRef` and `CaptionRef` are the very models the sample JSON embeds, so a field
travels from the cache into the shard without being mapped by name. `AnnotationRow` types the
annotation store's rows (dicts on the wire: they round-trip through JSON and parquet).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# docs/ARCHITECTURE.md, "Contracts": keys are [A-Za-z0-9_-]+ with no dots (WebDataset splits keys at the
# first dot). At most 64 characters: a shard member `<key>.mel.<profile>.npy` must fit the 100-byte
# name field of a plain ustar header, the only one wids reads (pipelines/shard/contract.py).
CLIP_ID_MAX = 64
CLIP_ID_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{CLIP_ID_MAX}}}")  # always used with fullmatch
YOUTUBE_ID_RE = re.compile(r"[A-Za-z0-9_-]{11}")
_ASCII_INT_RE = re.compile(r"[0-9]{1,18}")
# The latest time t2a seeks to in a media item: ~116 days. Manifest times past it are typos or
# attacks (ffmpeg's int64 microseconds overflow near 9.2e12 s); they are rejected with the row.
MAX_SECONDS = 1e7
_SLUG_RE = re.compile(r"[^A-Za-z0-9]+")


class InvalidId(ValueError):
    """An upstream id that cannot be used safely (wrong shape, path traversal, control characters)."""


@dataclass(frozen=True)
class Label:
    name: str
    mid: str | None = None  # AudioSet machine id ("/m/09x0r") where the source has one


@dataclass(frozen=True)
class Caption:
    text: str
    origin: str  # the manifest format it came from: "audiocaps", "clotho", "table", "freesound"
    kind: str = "human"  # "human" (written for the clip) or "source_text" (uploader title/description)


@dataclass(frozen=True)
class Clip:
    """One segment of one media item, normalized from any manifest format."""

    clip_id: str
    source: str  # the config source name
    format: str  # the manifest format name
    source_id: str  # identity in the upstream catalogue: YouTube id, Freesound id, file name, URL
    media: str | None  # location from the manifest (URL or path); None: the backend builds it from source_id
    start: float | None = None  # seconds; None = from the beginning
    end: float | None = None  # seconds; None = to the end of the media
    labels: tuple[Label, ...] = ()
    captions: tuple[Caption, ...] = ()
    split: str | None = None
    licence: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    manifest: str = ""  # file (or API query) the record came from
    line: int = 0  # first 1-based line of the row(s) in `manifest`
    rows: int = 1  # manifest rows this record stands for (AudioCaps val/test: 5 rows, one clip)

    @property
    def duration(self) -> float | None:
        if self.end is None:
            return None
        return self.end - (self.start or 0.0)


@dataclass(frozen=True)
class RejectedRow:
    """A manifest row that could not become a clip; it becomes a `rejected_row` status."""

    source: str
    manifest: str
    line: int
    reason: str


STATUSES = (
    "ok",
    "cached",
    "rejected_row",
    "duplicate",
    "excluded",
    "failed_permanent",
    "failed_retryable",
)


@dataclass(frozen=True)
class StatusRow:
    source: str
    manifest: str
    line: int
    status: str
    clip_id: str | None = None
    source_id: str | None = None
    reason: str = ""
    attempts: int = 0
    bytes: int = 0  # bytes of the finished cache entry
    seconds: float = 0.0  # wall time spent on this clip in this run
    rows: int = 1

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; valid: {', '.join(STATUSES)}")


class ClipFailure(Exception):
    """A clip that could not be fetched or normalized. `retryable` decides --retry-failed;
    `retry_after` is the server's own wait hint (HTTP Retry-After), in seconds."""

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


# --- clip ids -------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> int:
    return int(round((seconds or 0.0) * 1000))


def youtube_clip_id(youtube_id: str, start: float | None) -> str:
    """`yt_<YouTube id>_<start ms>`, the AudioSet strong-label segment id with a namespace prefix."""
    if not YOUTUBE_ID_RE.fullmatch(youtube_id):
        raise InvalidId(f"bad YouTube id {youtube_id!r} (expected 11 characters of [A-Za-z0-9_-])")
    if start is not None and not 0 <= start <= MAX_SECONDS:
        raise InvalidId(f"bad start {start:g} s (expected 0 to {MAX_SECONDS:g} s)")
    return check_clip_id(f"yt_{youtube_id}_{_ms(start)}")


def freesound_clip_id(sound_id: str | int) -> str:
    text = str(sound_id).strip()
    # ASCII digits only: str.isdigit() and int() also take "٣" and "²" (issue 14, item 10).
    if not _ASCII_INT_RE.fullmatch(text) or int(text) <= 0:
        raise InvalidId(f"bad Freesound id {sound_id!r} (expected a positive integer)")
    return check_clip_id(f"fs_{int(text)}")


def name_clip_id(namespace: str, name: str) -> str:
    """A readable id for a catalogue file name: slug of the name plus a short hash for uniqueness."""
    check_file_name(name)
    slug = _SLUG_RE.sub("-", name.rsplit(".", 1)[0]).strip("-")[:40] or "x"
    return f"{namespace}_{slug}_{short_hash(name, 10)}"


def url_clip_id(url: str, start: float | None = None, end: float | None = None) -> str:
    """`url_<hash>`: a hash of the URL and the segment, so two segments of one file differ."""
    return f"url_{short_hash(f'{url}#{start}-{end}', 20)}"


def keyed_clip_id(namespace: str, key: str) -> str:
    """`<namespace>_<key>` for catalogues whose own ids are already safe keys; hashed when that
    would be longer than a key may be."""
    clip_id = f"{namespace}_{key}"
    if len(clip_id) > CLIP_ID_MAX:
        clip_id = f"{namespace[:20]}_{short_hash(key, 24)}"
    check_clip_id(clip_id)
    return clip_id


def short_hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def check_clip_id(clip_id: str) -> str:
    if not CLIP_ID_RE.fullmatch(clip_id):
        raise InvalidId(f"bad clip id {clip_id!r} (expected 1-{CLIP_ID_MAX} characters of [A-Za-z0-9_-])")
    return clip_id


def check_file_name(name: str) -> str:
    """A catalogue file name that is safe to put into a path template (no traversal, no controls).

    A leading "-" is allowed: about one YouTube id in 64 starts with it (AudioSet's
    balanced_train_segments.csv starts with such rows), and t2a hands tools argument lists with
    absolute paths, so such a name is never read as an option."""
    problem = _file_name_problem(name)
    if problem:
        raise InvalidId(f"bad file name {name!r} ({problem})")
    return name


def _file_name_problem(name: str) -> str:
    if not name:
        return "empty"
    if len(name) > 255:
        return "longer than 255 characters"
    if name.startswith("."):
        return "starts with a dot: a hidden file or a parent folder"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "contains control characters"
    return ""


# --- clip.json ------------------------------------------------------------------------------------

CLIP_SCHEMA = "t2a.clip/1"
Text = Annotated[str, Field(min_length=1)]
Seconds = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]


class StrictRecord(BaseModel):
    """Unknown keys and coerced types are errors; records are values (frozen)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class Segment(StrictRecord):
    start: Seconds | None  # None: from the media's start
    end: Seconds | None  # None: to the media's end


class LabelRef(StrictRecord):
    mid: str | None  # AudioSet machine id where the source has one
    name: Text


class CaptionRef(StrictRecord):
    text: Text
    origin: Text  # manifest format: audiocaps, clotho, table, freesound
    kind: Text  # human | source_text


class ManifestRef(StrictRecord):
    file: str  # the manifest file (or API query) the row came from
    line: Count  # its first 1-based line
    rows: Count  # manifest rows this clip stands for


class FrameRef(StrictRecord):
    file: Text
    time: Seconds  # nominal time in the segment


class FileRef(StrictRecord):
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: Count


class ClipRecord(StrictRecord):
    """clip.json (schema `t2a.clip/1`): a clip cache entry's provenance, written last (docs/ingest.md)."""

    schema_: Literal["t2a.clip/1"] = Field(CLIP_SCHEMA, alias="schema")
    clip_id: str
    source: Text
    format: Text
    source_id: Text
    media_url: str | None
    manifest: ManifestRef
    segment: Segment
    duration: Seconds  # true seconds of audio before any padding
    audio_seconds: Seconds  # seconds in audio.flac (the requested segment when padded)
    padded: bool
    input_duration: float | None = None  # the container's duration, where it says one
    sample_rate: Annotated[int, Field(gt=0)]
    channels: Annotated[int, Field(gt=0)] = 1
    frames: list[FrameRef] = []  # the frames taken, each a real frame of the video
    # Fields with defaults, so that clip.json files written before them still validate:
    frames_wanted: Count | None = None  # media.frames when the clip was made
    frames_real: Count | None = None  # len(frames): fewer than wanted where the video is short or absent
    video_note: str = ""  # why, when the video is to blame ("the video track has 1 frame(s) in ...")
    labels: list[LabelRef] = []
    captions: list[CaptionRef] = []
    split: str | None = None
    licence: str | None = None
    meta: dict[str, Any] = {}
    files: dict[str, FileRef]
    fetched_bytes: Count = 0  # downloaded by the backend (yt-dlp, a token download)
    read_bytes: Count = 0  # read by ffmpeg from its input
    attempts: Count = 1
    tools: dict[str, str] = {}
    created: str = ""  # when the entry was written (UTC, ISO 8601); varies by run, never hashed into shards

    @model_validator(mode="after")
    def _frames_counted(self) -> ClipRecord:
        if self.frames_real is not None and self.frames_real != len(self.frames):
            raise ValueError(f"frames_real {self.frames_real} but {len(self.frames)} frame(s) listed")
        return self

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_json_dict(cls, data: Any) -> ClipRecord:
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in error.errors()[:5])
            raise ValueError(f"clip.json does not match {CLIP_SCHEMA}: {problems}") from None

    @property
    def total_bytes(self) -> int:
        return sum(item.bytes for item in self.files.values())


# --- annotation rows ------------------------------------------------------------------------------


class AnnotationRow(TypedDict, total=False):
    """A clip's row in the annotation store (schema `t2a.annotation/1`, pipelines/annotate/store.py).

    Failed rows carry clip_id, status "failed", reason, clip_digest, settings_hash, provenance and
    no candidates; the embeddings' files are listed under `embeddings` by the store."""

    clip_id: str
    status: str  # ok | dropped | failed
    reason: str
    candidates: list[dict[str, Any]]  # {text, expert, clap_score}, best first
    selected_caption: str | None
    selected_expert: str | None
    selected_score: float | None
    label_text: str | None
    label_score: float | None
    mbtg_text: str | None
    chance_score: float | None
    event_count: int
    windows: int
    frames: int
    clip_digest: str | None  # sha256 of clip.json: a changed entry is re-annotated
    settings_hash: str
    provenance: dict[str, Any]
    embeddings: dict[str, dict[str, Any]]
    schema: str
