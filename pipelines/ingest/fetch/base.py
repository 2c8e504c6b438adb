"""The fetch backend interface (a clip → a `MediaInput` for the media step) and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from pipelines.core.records import Clip, ClipFailure
from pipelines.core.registry import Registry
from pipelines.ingest.media import MediaInput


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

    def recover(self, media: MediaInput, failure: ClipFailure, workdir: Path) -> MediaInput:
        """Another way to the media after ffmpeg failed on `media` (a whole-file download from a
        server that ignores Range); raises the explained failure when there is none."""
        raise self.explain(media, failure)


BACKENDS: Registry[type[FetchBackend]] = Registry("fetch backend")
