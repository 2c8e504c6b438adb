"""A mirror folder: the media of a clip is `path_template` with `{id}` = the clip's source id."""

from __future__ import annotations

from pathlib import Path

from pipelines.core.records import Clip, ClipFailure
from pipelines.ingest.fetch.base import BACKENDS, FetchBackend
from pipelines.ingest.fetch.configs import LocalFetch
from pipelines.ingest.fetch.templates import fill_path
from pipelines.ingest.media import MediaInput


@BACKENDS.register("local")
class LocalBackend(FetchBackend):
    config: LocalFetch

    def open(self, clip: Clip, workdir: Path, want_video: bool) -> MediaInput:
        path = fill_path(self.config.path_template, clip.source_id)
        if not path.is_file():
            raise ClipFailure(f"file not found in the mirror: {path}", retryable=False)
        return MediaInput(
            location=str(path),
            display=str(path),
            start=clip.start,
            end=clip.end,
            protocols="file",
            media_duration=clip.meta.get("duration"),
        )
