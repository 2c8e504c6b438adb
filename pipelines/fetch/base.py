"""What every fetch backend gives the media step, and the backend registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.records import Clip, ClipFailure
from pipelines.registry import Registry


NETWORK_PROTOCOLS = "http,https,tcp,tls"  # ffmpeg protocol whitelist for remote inputs


@dataclass(frozen=True)
class MediaInput:
    """A media location ffmpeg can read, and what the backend already knows about it."""

    location: str  # local path or URL handed to ffmpeg (never logged when it carries a secret)
    display: str  # the location as recorded in clip.json and status (no credentials)
    start: float | None  # seek position inside `location`, seconds
    end: float | None
    protocols: str = "file"  # ffmpeg protocol whitelist for this input
    media_duration: float | None = None  # whole-media length where the catalogue says it
    has_video: bool | None = None  # None: unknown, let ffmpeg find out
    fetched_bytes: int = 0  # bytes the backend itself downloaded
    read_timeout: float = 30.0  # seconds without network progress before ffmpeg gives up


class FetchBackend(ABC):
    """Turns a clip into a `MediaInput`; raises `ClipFailure` (permanent or retryable)."""

    def __init__(self, config: Any):
        self.config = config

    @abstractmethod
    def open(self, clip: Clip, workdir: Path, want_video: bool) -> MediaInput:
        """Locate (and, where needed, download the segment of) the clip's media into `workdir`."""

    def explain(self, media: MediaInput, failure: ClipFailure) -> ClipFailure:
        """A more exact failure for media that ffmpeg could not read (e.g. the HTTP status)."""
        return failure


BACKENDS: Registry[type[FetchBackend]] = Registry("fetch backend")
