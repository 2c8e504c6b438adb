"""Freesound APIv2 (https://freesound.org/docs/api/): a text search or a list of sound ids.

The reader only lists sounds: each becomes a `Clip` whose media is a preview URL (no OAuth2
needed) or the API's `download` URL of the original, which the http fetch backend opens later
with `auth_env` (OAuth2 Bearer). The API key travels only in the `Authorization: Token <key>`
header (docs, "Token authentication"), never as the documented `token=` URL parameter, so it
cannot end up in a URL, a log line, a record or an error message.

Search endpoint: `/apiv2/search/` replaced `/apiv2/search/text/` in November 2025 (the old one
redirects); `search_endpoint` keeps the old path selectable for mirrors that only have it.
"""

from __future__ import annotations

import email.utils
import logging
import os
import time
from collections.abc import Iterator
from itertools import count, islice
from typing import Any, Literal

import requests
from pydantic import Field, model_validator

from pipelines.core.config import ConfigError, InputFile, RetryPolicy
from pipelines.core.records import Caption, Clip, InvalidId, RejectedRow, freesound_clip_id
from pipelines.core.storage import location
from pipelines.ingest.manifests.base import Record, SourceBase, register_format

log = logging.getLogger(__name__)

FORMAT = "freesound"
Preview = Literal["preview-hq-ogg", "preview-hq-mp3", "preview-lq-ogg", "preview-lq-mp3"]
# One search request returns everything a Clip needs (docs: "make sure to include the fields
# parameter"), so no per-sound request is made in query mode.
FIELDS = "id,name,description,tags,license,username,duration,url,type,samplerate,channels,previews,download"
MAX_PAGE_SIZE = 150  # the API's own cap on page_size


class FreesoundCredentialsError(ConfigError):
    """The API key is missing or refused; the message names the environment variable."""


class FreesoundError(RuntimeError):
    """The API could not be used (unreachable, failing after retries, unexpected answers)."""


class FreesoundSource(SourceBase):
    format: Literal["freesound"]
    api_base: str = "https://freesound.org/apiv2"
    search_endpoint: Literal["search/", "search/text/"] = "search/"
    query: str | None = None  # "" searches everything (with `filter`, usually)
    filter: str | None = None  # Solr syntax: license:"Creative Commons 0" duration:[0 TO 30]
    sort: str | None = None  # score, duration_desc, created_asc, downloads_desc, ...
    ids: list[int] | None = None
    ids_file: InputFile | None = None  # one id per line; blank lines and "#" comments skipped
    max_results: int | None = Field(None, gt=0)
    page_size: int = Field(MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    token_env: str = Field("FREESOUND_API_KEY", min_length=1)  # variable holding the API key
    download: Literal["preview", "original"] = "preview"
    preview: Preview = "preview-hq-ogg"
    requests_per_minute: int = Field(60, gt=0)  # Freesound's standard limit is 60/minute
    retry: RetryPolicy = RetryPolicy()
    timeout: float = Field(30, gt=0)

    @model_validator(mode="after")
    def _one_selection(self) -> FreesoundSource:
        given = [key for key in ("query", "ids", "ids_file") if getattr(self, key) is not None]
        if len(given) != 1:
            found = f"got {', '.join(given)}" if given else "got none"
            raise ValueError(f"give exactly one of query, ids, ids_file ({found})")
        return self

    @property
    def cap(self) -> int | None:
        """Clips to read at most: the smaller of `limit` and `max_results`."""
        caps = [n for n in (self.limit, self.max_results) if n is not None]
        return min(caps) if caps else None


@register_format(FORMAT, FreesoundSource)
def read_freesound(source: FreesoundSource) -> Iterator[Record]:
    # Not a generator itself: a missing key fails here, at the call, before anything is read.
    key = os.environ.get(source.token_env, "").strip()
    if not key:
        raise FreesoundCredentialsError(
            f"source {source.name!r}: environment variable {source.token_env} is not set; "
            f"put a Freesound API key in it (https://freesound.org/apiv2/apply)"
        )
    return _read(source, key)


def _read(source: FreesoundSource, key: str) -> Iterator[Record]:
    client = _Client(source, key)
    records = _search(source, client) if source.query is not None else _read_ids(source, client)
    clips = 0
    try:
        for record in records:
            yield record
            clips += isinstance(record, Clip)
            if source.cap is not None and clips >= source.cap:
                return  # before asking for another page
    finally:
        client.close()


# --- query mode -----------------------------------------------------------------------------------


def search_manifest(source: FreesoundSource) -> str:
    """The query as it appears in status rows: `freesound:search?query=rain&filter=...`."""
    parts = [f"{key}={value}" for key in ("query", "filter", "sort") if (value := getattr(source, key)) is not None]
    return f"{FORMAT}:search?{'&'.join(parts)}"


def _search(source: FreesoundSource, client: _Client) -> Iterator[Record]:
    manifest = search_manifest(source)
    params = {key: getattr(source, key) for key in ("query", "filter", "sort") if getattr(source, key) is not None}
    params["page_size"] = min(source.page_size, source.cap or MAX_PAGE_SIZE)
    line = 0
    # Pages are asked for by number rather than by following `next`: the key is only ever sent
    # to `api_base`, whatever host a response names.
    for page in count(1):
        data = client.search({**params, "page": page})
        results = (data or {}).get("results") or []  # None: a 404 for a page past the end
        for sound in results:
            line += 1
            yield sound_record(source, sound, manifest, line)
        if not results or not data.get("next"):
            return


# --- ids mode -------------------------------------------------------------------------------------


def _id_entries(source: FreesoundSource) -> Iterator[tuple[str, int, str]]:
    """(manifest, line, raw id) for every requested id."""
    if source.ids is not None:
        for line, sound_id in enumerate(source.ids, start=1):
            yield f"{FORMAT}:ids", line, str(sound_id)
        return
    with location(source.ids_file).open("r", encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            text = text.strip()
            if text and not text.startswith("#"):
                yield str(source.ids_file), line, text


def _read_ids(source: FreesoundSource, client: _Client) -> Iterator[Record]:
    entries = _id_entries(source)
    while batch := list(islice(entries, source.page_size)):
        parsed: list[tuple[str, int, int | str]] = []
        for manifest, line, raw in batch:
            try:
                freesound_clip_id(raw)  # validates: a positive integer
                parsed.append((manifest, line, int(raw)))
            except InvalidId as exc:
                parsed.append((manifest, line, str(exc)))
        found = client.sounds_by_id([sid for _, _, sid in parsed if isinstance(sid, int)])
        for manifest, line, sid in parsed:
            if isinstance(sid, str):
                yield RejectedRow(source.name, manifest, line, sid)
                continue
            # The search index can lag behind the catalogue: ask for a missing sound directly.
            sound = found.get(sid) or client.get(f"sounds/{sid}/", {"fields": FIELDS})
            if sound is None:
                yield RejectedRow(source.name, manifest, line, f"Freesound id {sid} not found (HTTP 404)")
            else:
                yield sound_record(source, sound, manifest, line)


# --- records --------------------------------------------------------------------------------------


def sound_record(source: FreesoundSource, sound: Any, manifest: str, line: int) -> Record:
    """One API sound (search result or sound instance) as a Clip, or the reason it cannot be one;
    an answer of an unexpected shape rejects that sound alone."""
    try:
        return _sound_record(source, sound, manifest, line)
    except InvalidId as exc:
        return RejectedRow(source.name, manifest, line, str(exc))
    except Exception as exc:  # noqa: BLE001 - one odd sound never stops the source
        return RejectedRow(source.name, manifest, line, f"unreadable sound ({type(exc).__name__}: {str(exc)[:200]})")


def _sound_record(source: FreesoundSource, sound: dict[str, Any], manifest: str, line: int) -> Record:
    clip_id = freesound_clip_id(sound.get("id", ""))
    media = _media_url(source, sound)
    if not media:
        wanted = "download" if source.download == "original" else f"previews.{source.preview}"
        return RejectedRow(source.name, manifest, line, f"Freesound sound {sound['id']} has no {wanted} URL")
    text = str(sound.get("description") or "").strip() or str(sound.get("name") or "").strip()
    return Clip(
        clip_id=clip_id,
        source=source.name,
        format=FORMAT,
        source_id=str(sound["id"]),
        media=media,
        captions=(Caption(text=text, origin=FORMAT, kind="source_text"),) if text else (),
        split=source.split,
        licence=sound.get("license"),
        meta=_meta(sound),
        manifest=manifest,
        line=line,
    )


def _media_url(source: FreesoundSource, sound: dict[str, Any]) -> str | None:
    if source.download == "original":
        return sound.get("download")
    return (sound.get("previews") or {}).get(source.preview)


def _meta(sound: dict[str, Any]) -> dict[str, Any]:
    renamed = {"title": "name", "uploader": "username"}
    kept = ("description", "tags", "duration", "license", "url", "type", "samplerate", "channels")
    meta = {new: sound[old] for new, old in renamed.items() if old in sound}
    meta.update({key: sound[key] for key in kept if key in sound})
    return meta


# --- HTTP -----------------------------------------------------------------------------------------


class _TokenAuth(requests.auth.AuthBase):
    """Sets the key header on every request; as `Session.auth` it also keeps ~/.netrc out."""

    def __init__(self, key: str):
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Token {self._key}"
        return request

    def __repr__(self) -> str:
        return "_TokenAuth(<redacted>)"


class _Throttle:
    """At most `per_minute` requests a minute, evenly spaced."""

    def __init__(self, per_minute: float):
        self.interval = 60.0 / per_minute
        self._next = 0.0

    def wait(self) -> None:
        now = time.monotonic()
        if now < self._next:
            time.sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


class _Retry(Exception):
    """A failed try that may succeed later: 429, 5xx, timeouts, dropped connections."""

    def __init__(self, problem: str, wait: float | None = None):
        super().__init__(problem)
        self.problem = problem
        self.wait = wait


class _Client:
    def __init__(self, source: FreesoundSource, key: str):
        self.source = source
        self.base = source.api_base.rstrip("/")
        self.session = requests.Session()
        self.session.auth = _TokenAuth(key)
        self.session.headers["Accept"] = "application/json"
        self.throttle = _Throttle(source.requests_per_minute)
        self._key = key

    def close(self) -> None:
        self.session.close()

    def sounds_by_id(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """One search request for a batch of ids (`id:(1 OR 2 ...)`); unknown ids are absent."""
        if not ids:
            return {}
        filter_ = f"id:({' OR '.join(map(str, ids))})"
        data = self.search({"query": "", "filter": filter_, "page_size": len(ids)}) or {}
        return {sound["id"]: sound for sound in data.get("results") or [] if "id" in sound}

    def search(self, params: dict[str, Any]) -> dict[str, Any] | None:
        data = self.get(self.source.search_endpoint, {**params, "fields": FIELDS})
        if data is None and params.get("page", 1) == 1:
            raise FreesoundError(
                f"no Freesound search endpoint at {self.base}/{self.source.search_endpoint} (HTTP 404); "
                f"check api_base and search_endpoint of source {self.source.name!r}"
            )
        return data

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The JSON answer of `api_base/path`, None for 404; retries what the policy allows."""
        url = f"{self.base}/{path}"
        policy = self.source.retry
        for attempt in range(1, policy.attempts + 1):
            self.throttle.wait()
            try:
                return self._try(url, params)
            except _Retry as failure:
                problem = failure.problem
                if attempt < policy.attempts:
                    self._pause(url, failure, policy.delay(attempt))
        raise FreesoundError(
            f"Freesound API {url} still failing after {policy.attempts} tries (last: {problem}); "
            f"try again later or raise retry.attempts of source {self.source.name!r}"
        )

    def _try(self, url: str, params: dict[str, Any]) -> dict[str, Any] | None:
        log.debug("freesound: GET %s %s", url, params)
        try:
            response = self.session.get(url, params=params, timeout=self.source.timeout)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise _Retry(type(exc).__name__) from None
        status = response.status_code
        if status == 404:
            return None
        if status in (401, 403):
            raise FreesoundCredentialsError(
                f"Freesound API refused the key in environment variable {self.source.token_env} "
                f"(HTTP {status}: {self._detail(response)}); put a valid API key in it"
            )
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", _retry_after(response))
        if status >= 400:
            raise FreesoundError(f"Freesound API {url} answered HTTP {status}: {self._detail(response)}")
        try:
            return response.json()
        except ValueError:
            raise FreesoundError(f"Freesound API {url} answered HTTP {status} with a body that is not JSON") from None

    def _pause(self, url: str, failure: _Retry, backoff: float) -> None:
        delay = backoff if failure.wait is None else failure.wait
        if delay > self.source.retry.max_backoff:
            # Retrying sooner than asked only earns more 429s (a spent daily quota, usually).
            raise FreesoundError(
                f"Freesound API {url} asks to wait {delay:.0f} s ({failure.problem}), longer than "
                f"retry.max_backoff={self.source.retry.max_backoff:g}; try again later"
            )
        log.warning("freesound: %s from %s; retrying in %.2f s", failure.problem, url, delay)
        time.sleep(delay)

    def _detail(self, response: requests.Response) -> str:
        try:
            detail = str(response.json().get("detail", ""))
        except (ValueError, AttributeError):
            detail = response.reason or ""
        return detail[:200].replace(self._key, "<redacted>") or "no detail"


def _retry_after(response: requests.Response) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), None without one."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
