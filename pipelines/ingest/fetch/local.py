"""Files on this machine: a mirror folder named by id, and the paths a table names.

- `path_template`: the media of a clip is the template with `{id}` = the clip's source id (a
  YouTube id, a Freesound id, a catalogue file name); the id may not leave the template's folder.
- `root`: a table's `url` column may hold a path (`/data/sounds/dog bark.wav`, or relative to the
  root: `dogs/bark.wav`) or a `file://` URL. The path, symlinks resolved, must lie inside `root`:
  a row of a shared spreadsheet cannot make t2a read `/etc/passwd`, a device or a FIFO.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipelines.core.records import Clip, ClipFailure
from pipelines.ingest.fetch.base import BACKENDS, FetchBackend
from pipelines.ingest.fetch.configs import LocalFetch
from pipelines.ingest.fetch.templates import fill_path
from pipelines.ingest.media import MediaInput


@BACKENDS.register("local")
class LocalBackend(FetchBackend):
    config: LocalFetch

    def open(self, clip: Clip, workdir: Path, want_video: bool) -> MediaInput:
        path = self._named(clip.media) if clip.media else self._by_id(clip.source_id)
        return MediaInput(
            location=str(path),
            display=str(path),
            start=clip.start,
            end=clip.end,
            protocols="file",
            media_duration=clip.meta.get("duration"),
        )

    def _by_id(self, source_id: str) -> Path:
        if self.config.path_template is None:
            raise ClipFailure(
                "the manifest gives no path and fetch.path_template is not set (give one, with {id})", retryable=False
            )
        path = fill_path(self.config.path_template, source_id)
        if self.config.root is not None:
            path = self._inside_root(path, source_id)
        if not path.is_file():
            raise ClipFailure(f"file not found in the mirror: {path}", retryable=False)
        return path

    def _named(self, location: str) -> Path:
        """A path or file:// URL from the manifest, resolved and confined to `root`."""
        path = local_path(location)
        if self.config.root is None:
            raise ClipFailure(
                f"{location!r} is a local path, but fetch.root is not set: local paths are read only inside a "
                "configured root folder",
                retryable=False,
            )
        resolved = self._inside_root(self.config.root / path, location)
        if not resolved.exists():
            raise ClipFailure(f"file not found: {location}", retryable=False)
        if not resolved.is_file():  # a folder, a FIFO (ffmpeg would wait on it for good), a device
            raise ClipFailure(f"not a regular file: {location}", retryable=False)
        return resolved

    def _inside_root(self, path: Path, named: str) -> Path:
        root = self.config.root.resolve()
        resolved = path.resolve()  # every symlink followed: a link inside the root may not point out
        if not resolved.is_relative_to(root):
            raise ClipFailure(f"{named!r} resolves outside fetch.root {root}", retryable=False)
        return resolved


def local_path(location: str) -> Path:
    """A manifest's path or file:// URL as a path (relative paths stay relative: to the root)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in location):
        raise ClipFailure(f"bad path {location!r} (control characters)", retryable=False)
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ClipFailure(f"file URL {location!r} names another host ({parts.netloc})", retryable=False)
        if parts.query or parts.fragment:
            raise ClipFailure(f"file URL {location!r} has a query or fragment", retryable=False)
        return Path(unquote(parts.path))
    if scheme and len(scheme) > 1:
        raise ClipFailure(
            f"the local backend reads paths and file:// URLs, not {scheme}:// ({location})", retryable=False
        )
    return Path(location)
