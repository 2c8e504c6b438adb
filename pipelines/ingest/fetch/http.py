"""http(s) URLs read by ffmpeg itself, and s3:// / gs:// through fsspec.

ffmpeg reads an http(s) input with range requests: it fetches the container index, then seeks to
the segment, so only the segment's bytes (plus the index) cross the network where the container
allows it (MP4 with the index first, Matroska/WebM with cues, WAV, FLAC). Object-store URLs are
signed by fsspec into https URLs that ffmpeg reads the same way; a store that cannot sign is
copied whole into the work folder. Sources that need a token (Freesound originals) are downloaded
with `requests` so the token stays out of ffmpeg's command line.

When ffmpeg fails on a URL, one small ranged GET explains why (status code, Retry-After, a page
of HTML instead of media), so the failure is classified exactly as permanent or retryable.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import requests

from pipelines.core.records import Clip, ClipFailure
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
        if scheme not in ("http", "https"):
            raise ClipFailure(f"unsupported URL scheme {scheme!r} in {url}", retryable=False)
        if self.config.auth_env:
            return self._download(clip, url, workdir)
        return self._media(clip, url, url, NETWORK_PROTOCOLS)

    def explain(self, media: MediaInput, failure: ClipFailure) -> ClipFailure:
        if media.protocols == "file" or not media.location.startswith(("http://", "https://")):
            return failure
        return diagnose(media.location, self.config.timeout) or failure

    def _media(self, clip: Clip, location: str, display: str, protocols: str, fetched: int = 0) -> MediaInput:
        return MediaInput(
            location=location,
            display=display,
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
        target = workdir / ("download" + Path(urlsplit(url).path).suffix[:8])
        try:
            with requests.get(url, headers=headers, stream=True, timeout=self.config.timeout) as response:
                raise_for_status(response)
                with target.open("wb") as handle:
                    shutil.copyfileobj(response.raw, handle, 1 << 20)
        except requests.RequestException as error:
            raise ClipFailure(f"download failed: {type(error).__name__}", retryable=True) from None
        return self._media(clip, str(target), url, "file", target.stat().st_size)

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


def diagnose(url: str, timeout: float) -> ClipFailure | None:
    """Why a URL failed in ffmpeg, from the first KiB of a fresh GET; None if it looks fine."""
    headers = {"Range": "bytes=0-1023", "User-Agent": USER_AGENT}
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
            body = response.raw.read(1024, decode_content=True) if response.status_code < 400 else b""
            return classify_response(response, body)
    except requests.Timeout:
        return ClipFailure(f"timed out after {timeout:.0f} s", retryable=True)
    except requests.ConnectionError as error:
        return ClipFailure(f"cannot connect: {type(error).__name__}", retryable=True)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the policy's own backoff applies
