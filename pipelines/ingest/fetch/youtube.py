"""YouTube through the yt-dlp library, downloading only the clip's segment.

yt-dlp cuts the section with ffmpeg (`download_ranges`), re-encoding at the cut points so the
section starts exactly where asked (`force_keyframes_at_cuts`). Best audio alone when no frames are
wanted; otherwise the best video up to `max_height` plus the best audio, merged into Matroska (any
codec pair fits). The media step then normalizes the downloaded section like any other input.

`url_template` points yt-dlp at a mirror ("http://127.0.0.1:8765/yt/{id}.mp4"): its generic
extractor takes the URL, so tests and the demo run the same code path as production.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import yt_dlp
from yt_dlp.utils import DownloadError, download_range_func

from pipelines.core.config import MediaConfig
from pipelines.core.io import StorageFull, storage_problem
from pipelines.core.records import YOUTUBE_ID_RE, Clip, ClipFailure
from pipelines.core.redact import redact_text
from pipelines.core.tools import ensure_ffmpeg_on_path
from pipelines.ingest.fetch.base import BACKENDS, FetchBackend
from pipelines.ingest.fetch.configs import YoutubeFetch
from pipelines.ingest.fetch.templates import fill_url
from pipelines.ingest.media import NETWORK_PROTOCOLS, MediaInput, inspect

log = logging.getLogger(__name__)

# yt-dlp's messages, matched case-insensitively. An HTTP status in the message decides first (403:
# YouTube's throttling of stream URLs, so retryable); then retryable patterns before permanent ones,
# since a bot check is not a permanent "sign in" failure. Both ' and ’ appear in YouTube's texts.
PERMANENT_HTTP = {400, 401, 404, 410, 451}
RETRYABLE_PATTERNS = (
    r"confirm you[’']re not a bot",
    r"Too Many Requests|rate[- ]limit",
    r"timed out|timeout",
    r"Connection (?:reset|refused|aborted)|Remote end closed|IncompleteRead|Temporary failure in name resolution",
    r"Unable to download (?:webpage|API page|video data)",
    r"giving up after \d+ fragment retries|fragment",
)
PERMANENT_PATTERNS = (
    r"Private video|This video is private",
    r"Video unavailable|This video is unavailable|This video is no longer available",
    r"has been removed|account associated with this video has been terminated",
    r"Sign in to confirm your age|age[- ]restricted|inappropriate for some users",
    r"copyright",
    r"not (?:made this video )?available in your country|blocked it in your country",
    r"members-only|Join this channel",
    r"This live event will begin|Premieres in",
    r"Unsupported URL|is not a valid URL|Requested format is not available",
)

_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def classify(message: str) -> ClipFailure:
    """A yt-dlp error message as a permanent or retryable failure, the message kept."""
    text = re.sub(r"^ERROR:\s*", "", message.strip())
    text = re.sub(r"^\[[^\]]+\] [A-Za-z0-9_-]+: ", "", text)[:400]
    status = re.search(r"HTTP Error (\d{3})", text)
    if status:
        return ClipFailure(f"youtube: {text}", retryable=int(status.group(1)) not in PERMANENT_HTTP)
    for pattern in RETRYABLE_PATTERNS:
        if re.search(pattern, text, re.IGNORECASE):
            return ClipFailure(f"youtube: {text}", retryable=True)
    for pattern in PERMANENT_PATTERNS:
        if re.search(pattern, text, re.IGNORECASE):
            return ClipFailure(f"youtube: {text}", retryable=False)
    return ClipFailure(f"youtube: {text}", retryable=True)  # unknown: let --retry-failed try again


class _Logger:
    """yt-dlp talks a lot; its lines go to DEBUG, its warnings and errors to WARNING."""

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    info = debug

    def warning(self, message: str) -> None:
        log.debug("yt-dlp warning: %s", message)

    def error(self, message: str) -> None:
        log.debug("yt-dlp error: %s", message)


@BACKENDS.register("youtube")
class YoutubeBackend(FetchBackend):
    config: YoutubeFetch

    def __init__(self, config: YoutubeFetch):
        super().__init__(config)
        ensure_ffmpeg_on_path()

    def url_for(self, clip: Clip) -> str:
        if not YOUTUBE_ID_RE.fullmatch(clip.source_id):
            raise ClipFailure(f"bad YouTube id {clip.source_id!r}", retryable=False)
        if self.config.url_template:
            return fill_url(self.config.url_template, clip.source_id)
        return f"https://www.youtube.com/watch?v={clip.source_id}"

    def open(self, clip: Clip, workdir: Path, want_video: bool) -> MediaInput:
        url = self.url_for(clip)
        start = clip.start or 0.0
        info: dict[str, Any] | None = None
        with _slot(self.config.concurrency):
            try:
                with yt_dlp.YoutubeDL(self.options(clip, workdir, want_video)) as ydl:
                    info = ydl.extract_info(url, download=False)
                    duration = info.get("duration")
                    if duration is not None and start >= duration:
                        raise ClipFailure(
                            f"segment starts at {start:.2f} s but the video lasts {duration:.2f} s", retryable=False
                        )
                    info = ydl.process_ie_result(info, download=True)
            except DownloadError as error:
                problem = storage_problem(str(error))
                if problem:  # the work folder's disk, not the video
                    raise StorageFull(workdir, problem) from None
                raise self._explain(classify(str(error)), info) from None
        path = _downloaded_file(info, workdir)
        end = None if clip.end is None else clip.end - start
        return MediaInput(
            location=str(path),
            display=redact_text(url),
            start=0.0,
            end=end,
            protocols="file",
            has_video=None if want_video and _may_have_video(info) else False,
            fetched_bytes=path.stat().st_size,
        )

    def _explain(self, failure: ClipFailure, info: dict[str, Any] | None) -> ClipFailure:
        """yt-dlp runs its ffmpeg quietly, so "ffmpeg exited with code 183" is all it says; ffmpeg
        itself, asked to read the stream, says why (corrupt or empty media, a network error)."""
        if info is None or "ffmpeg exited with code" not in failure.reason:
            return failure
        cfg = MediaConfig(timeout=self.config.socket_timeout * 2)
        for fmt in info.get("requested_formats") or [info]:
            location = fmt.get("url") or ""
            if location.startswith(("http://", "https://")):
                stream = MediaInput(
                    location, location, None, None, NETWORK_PROTOCOLS, read_timeout=self.config.socket_timeout
                )
                cause = inspect(stream, cfg)
                if cause is not None:
                    return ClipFailure(f"youtube: {cause.reason}", retryable=cause.retryable)
        return failure

    def options(self, clip: Clip, workdir: Path, want_video: bool) -> dict[str, Any]:
        cfg = self.config
        start = clip.start or 0.0
        end = clip.end if clip.end is not None else start + 600.0
        height = cfg.max_height
        options: dict[str, Any] = {
            "format": f"bv*[height<={height}]+ba/b[height<={height}]/b" if want_video else "ba/b",
            "outtmpl": {"default": str(workdir / "section.%(ext)s")},
            "download_ranges": download_range_func(None, [(start, end)]),
            "force_keyframes_at_cuts": True,
            "merge_output_format": "mkv",
            "noplaylist": True,
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "logger": _Logger(),
            "socket_timeout": cfg.socket_timeout,
            "retries": 1,  # t2a's retry policy decides, with backoff, after classifying the error
            "fragment_retries": 1,
            "fixup": "never",  # fixups need ffprobe; the media step rewrites the file anyway
            "cachedir": False,
            "overwrites": True,
            "sleep_interval": cfg.sleep_interval or None,
            "max_sleep_interval": cfg.max_sleep_interval,
        }
        extra = {"cookiefile": cfg.cookies and str(cfg.cookies), "proxy": cfg.proxy, "ratelimit": cfg.rate_limit}
        options.update({key: value for key, value in extra.items() if value is not None})
        return {key: value for key, value in options.items() if value is not None}


def _slot(concurrency: int) -> threading.BoundedSemaphore:
    """Downloads at once in this worker process, shared by every thread and DoFn instance."""
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(concurrency, threading.BoundedSemaphore(concurrency))


def _downloaded_file(info: dict[str, Any], workdir: Path) -> Path:
    for item in info.get("requested_downloads") or ():
        path = Path(item.get("filepath") or "")
        if path.is_file():
            return path
    found = sorted(p for p in workdir.glob("section.*") if p.is_file() and not p.name.endswith(".part"))
    if not found:
        raise ClipFailure("yt-dlp reported success but wrote no file", retryable=True)
    return found[0]


def _may_have_video(info: dict[str, Any]) -> bool:
    """False only when yt-dlp knows every format it fetched is audio-only (generic URLs: unknown)."""
    formats = info.get("requested_formats") or [info]
    return any(f.get("vcodec") != "none" for f in formats)
