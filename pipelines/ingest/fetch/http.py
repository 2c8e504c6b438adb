"""http(s) URLs read by ffmpeg itself, and s3:// / gs:// through fsspec.

ffmpeg reads an http(s) input with range requests: it fetches the container index, then seeks to
the segment, so only the segment's bytes (plus the index) cross the network where the container
allows it (MP4 with the index first, Matroska/WebM with cues, WAV, FLAC). Object-store URLs are
signed by fsspec into https URLs that ffmpeg reads the same way; a store that cannot sign is
copied whole into the work folder. Sources that need a token (Freesound originals) are downloaded
with `requests` so the token stays out of ffmpeg's command line.

When ffmpeg fails on a URL, one small ranged GET explains why (status code, Retry-After, a page
of HTML instead of media, a redirect loop), so the failure is classified exactly as permanent or
retryable. The same GET finds servers that ignore Range (a 200 to a ranged request, no
`Accept-Ranges`: Python's http.server, some CDNs' origins): ffmpeg cannot seek there (an MP4 with
its index at the end fails), so the file is downloaded whole into the work folder, up to
`max_download_bytes`, and read from there.

URLs are recorded (clip.json `media_url`, status, failure reasons) without userinfo or the values
of `secret_params` (pipelines/core/redact.py).
"""

from __future__ import annotations

import email.utils
import os
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from pipelines.core.io import StorageFull, storage_problem
from pipelines.core.records import Clip, ClipFailure
from pipelines.core.redact import redact_text
from pipelines.ingest.fetch.base import BACKENDS, FetchBackend
from pipelines.ingest.fetch.configs import HttpFetch
from pipelines.ingest.fetch.templates import fill_url
from pipelines.ingest.media import NETWORK_PROTOCOLS, MediaInput

USER_AGENT = "t2a-ingest/0.1 (+https://github.com/t2a)"
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
NOT_MEDIA_TYPES = ("text/", "application/json", "application/xml", "application/xhtml")


@BACKENDS.register("http")
class HttpBackend(FetchBackend):
    config: HttpFetch

    def url_for(self, clip: Clip) -> str:
        if clip.media:
            return clip.media
        if not self.config.url_template:
            raise ClipFailure("the manifest gives no URL and fetch.url_template is not set", retryable=False)
        return fill_url(self.config.url_template, clip.source_id)

    def open(self, clip: Clip, workdir: Path, want_video: bool) -> MediaInput:
        url = self.url_for(clip)
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("s3", "gs"):
            return self._object_store(clip, url, workdir)
        if scheme in ("", "file"):
            raise ClipFailure(
                f"{self._redact(url)!r} is a local path: local files are read by the local backend "
                "(fetch: {backend: local, root: <folder>})",
                retryable=False,
            )
        if scheme not in ("http", "https"):
            raise ClipFailure(f"unsupported URL scheme {scheme!r} in {self._redact(url)}", retryable=False)
        if self.config.auth_env:
            return self._download(clip, url, workdir)
        return self._media(clip, url, url, NETWORK_PROTOCOLS)

    def explain(self, media: MediaInput, failure: ClipFailure) -> ClipFailure:
        if media.protocols == "file" or not media.location.startswith(("http://", "https://")):
            return failure
        return probe(media.location, self.config.timeout).failure or failure

    def recover(self, media: MediaInput, failure: ClipFailure, workdir: Path) -> MediaInput:
        """A server that ignores Range: download the whole file (bounded) and read it locally."""
        if media.protocols == "file" or not media.location.startswith(("http://", "https://")):
            raise failure
        answer = probe(media.location, self.config.timeout)
        if answer.failure is not None:
            raise answer.failure
        if answer.ranges:
            raise failure
        headers = {"User-Agent": USER_AGENT}
        target, size = self._fetch_whole(media.location, workdir, headers, "the server ignores Range requests")
        return replace(media, location=str(target), protocols="file", fetched_bytes=size)

    def _redact(self, url: str) -> str:
        return redact_text(url, self.config.secret_params)

    def _media(self, clip: Clip, location: str, display: str, protocols: str, fetched: int = 0) -> MediaInput:
        return MediaInput(
            location=location,
            display=self._redact(display),
            start=clip.start,
            end=clip.end,
            protocols=protocols,
            media_duration=clip.meta.get("duration"),
            fetched_bytes=fetched,
            read_timeout=self.config.timeout,
        )

    def _download(self, clip: Clip, url: str, workdir: Path) -> MediaInput:
        token = os.environ.get(self.config.auth_env or "")
        if not token:
            raise ClipFailure(
                f"environment variable {self.config.auth_env} (fetch.auth_env) is not set", retryable=False
            )
        headers = {"Authorization": f"{self.config.auth_scheme} {token}", "User-Agent": USER_AGENT}
        target, size = self._fetch_whole(url, workdir, headers, "download")
        return self._media(clip, str(target), url, "file", size)

    def _fetch_whole(self, url: str, workdir: Path, headers: dict[str, str], why: str) -> tuple[Path, int]:
        """GET `url` into the work folder, at most `max_download_bytes`; (file, bytes)."""
        cap = self.config.max_download_bytes
        target = workdir / ("download" + Path(urlsplit(url).path).suffix[:8])
        too_big = ClipFailure(
            f"{why}: the file is over fetch.max_download_bytes ({cap} bytes), so it is not downloaded whole",
            retryable=False,
        )
        size = 0
        try:
            with requests.get(url, headers=headers, stream=True, timeout=self.config.timeout) as response:
                raise_for_status(response)
                length = response.headers.get("Content-Length", "")
                if length.isascii() and length.isdigit() and int(length) > cap:
                    raise too_big
                with target.open("wb") as handle:
                    # iter_content turns a stalled read (urllib3's ReadTimeoutError) into a requests error.
                    for block in response.iter_content(1 << 20):
                        size += len(block)
                        if size > cap:
                            raise too_big
                        handle.write(block)
        except requests.RequestException as error:
            raise request_failure(error, self.config.timeout, f"{why} failed") from None
        return target, size

    def _object_store(self, clip: Clip, url: str, workdir: Path) -> MediaInput:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(url)
        except ImportError as error:
            raise ClipFailure(f"{url.split(':')[0]}:// needs an fsspec driver: {error}", retryable=False) from None
        try:
            return self._media(clip, fs.sign(path, expiration=3600), url, NETWORK_PROTOCOLS)
        except NotImplementedError:
            target = workdir / ("download" + Path(path).suffix[:8])
            try:
                fs.get(path, str(target))
            except FileNotFoundError:
                raise ClipFailure(f"object not found: {url}", retryable=False) from None
            except OSError as error:
                problem = storage_problem(error)
                if problem:
                    raise StorageFull(workdir, problem) from None
                raise ClipFailure(f"object store read failed: {error}", retryable=True) from None
            return self._media(clip, str(target), url, "file", target.stat().st_size)


def raise_for_status(response: requests.Response) -> None:
    failure = classify_response(response)
    if failure is not None:
        raise failure


def classify_response(response: requests.Response, body: bytes = b"") -> ClipFailure | None:
    status = response.status_code
    if status >= 400:
        retry_after = _retry_after(response.headers.get("Retry-After"))
        reason = f"HTTP {status} {response.reason or ''}".strip()
        return ClipFailure(reason, retryable=status in RETRYABLE_STATUS, retry_after=retry_after)
    content_type = response.headers.get("Content-Type", "").lower()
    looks_like_html = body.lstrip()[:15].lower().startswith((b"<!doctype", b"<html"))
    if content_type.startswith(NOT_MEDIA_TYPES) and (looks_like_html or not body):
        return ClipFailure(f"not media: the server answered {content_type.split(';')[0]}", retryable=False)
    if looks_like_html:
        return ClipFailure("not media: the server answered an HTML page", retryable=False)
    return None


@dataclass(frozen=True)
class Probe:
    failure: ClipFailure | None  # why the URL cannot be read; None when it looks like media
    ranges: bool  # whether the server answered the ranged request with a range (206)


def probe(url: str, timeout: float) -> Probe:
    """Why a URL failed in ffmpeg, from the first KiB of a fresh ranged GET, and whether the
    server honours Range."""
    headers = {"Range": "bytes=0-1023", "User-Agent": USER_AGENT}
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
            body = response.raw.read(1024, decode_content=True) if response.status_code < 400 else b""
            ranges = response.status_code == 206 or "bytes" in response.headers.get("Accept-Ranges", "").lower()
            return Probe(classify_response(response, body), ranges)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
        return Probe(request_failure(error, timeout), True)


def diagnose(url: str, timeout: float) -> ClipFailure | None:
    """Why a URL failed in ffmpeg; None if it looks fine."""
    return probe(url, timeout).failure


def request_failure(error: Exception, timeout: float, what: str = "") -> ClipFailure:
    """A requests/urllib3 error as a clear, classified failure (never a traceback)."""
    prefix = f"{what}: " if what else ""
    if isinstance(error, requests.TooManyRedirects):
        return ClipFailure(
            f"{prefix}redirect loop (more than {requests.models.DEFAULT_REDIRECT_LIMIT} redirects)", retryable=False
        )
    if isinstance(
        error, (requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema, requests.exceptions.InvalidURL)
    ):
        return ClipFailure(
            f"{prefix}redirected to a URL t2a does not fetch ({redact_text(str(error))[:200]})", retryable=False
        )
    if isinstance(error, (requests.Timeout, urllib3.exceptions.TimeoutError)) or "timed out" in str(error).lower():
        return ClipFailure(f"{prefix}timed out after {timeout:.0f} s without progress", retryable=True)
    if isinstance(error, (requests.ConnectionError, urllib3.exceptions.HTTPError)):
        return ClipFailure(f"{prefix}cannot connect: {type(error).__name__}", retryable=True)
    return ClipFailure(f"{prefix}{type(error).__name__}: {redact_text(str(error))[:200]}", retryable=True)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds (plain digits) or an HTTP date."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(min(int(text), 10**9))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None  # unreadable: the policy's own backoff applies
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
