"""Typed settings of each fetch backend: the `fetch:` block of a source in datasets.yaml."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from pipelines.core.config import InputDir, LocalFile, PathTemplate, RetryPolicy, StrictModel
from pipelines.core.redact import SECRET_PARAMS
from pipelines.ingest.fetch.templates import check_template

# "{id}" and no other placeholder: checked when the config loads, not when a worker starts.
UrlTemplate = Annotated[str, AfterValidator(check_template)]


class YoutubeFetch(StrictModel):
    """yt-dlp, segment only. `url_template` points at a mirror (tests, demo): "http://host/yt/{id}.mp4"."""

    backend: Literal["youtube"]
    url_template: UrlTemplate | None = None
    cookies: LocalFile | None = None  # a Netscape cookie file, as yt-dlp's --cookies (a local path)
    proxy: str | None = None
    rate_limit: int | None = Field(None, gt=0)  # bytes/s per download
    sleep_interval: float = Field(0.0, ge=0)  # seconds before each download (yt-dlp --sleep-interval)
    max_sleep_interval: float | None = Field(None, ge=0)
    concurrency: int = Field(2, ge=1, le=64)  # downloads at once per worker process
    socket_timeout: float = Field(30.0, gt=0)
    max_height: int = Field(360, ge=144)  # video resolution cap when frames are wanted
    retry: RetryPolicy = RetryPolicy()


class HttpFetch(StrictModel):
    """http(s) URLs, and s3:// or gs:// through fsspec. `url_template` builds URLs from source ids."""

    backend: Literal["http"]
    url_template: UrlTemplate | None = None
    timeout: float = Field(30.0, gt=0)  # seconds without progress before a read fails
    concurrency: int | None = Field(None, ge=1, le=256)  # default: 2 per CPU core (see slots)
    auth_env: str | None = None  # environment variable holding a token (never written anywhere)
    auth_scheme: Literal["Bearer", "Token"] = "Bearer"
    # Whole-file downloads (a server that ignores Range, a token download) stop at this size.
    max_download_bytes: int = Field(2 * 1024**3, gt=0)
    # Query parameters whose values are secrets (case-insensitive, `*` globs): redacted wherever a
    # URL is written or logged (pipelines/core/redact.py).
    secret_params: list[str] = list(SECRET_PARAMS)
    retry: RetryPolicy = RetryPolicy()


class LocalFetch(StrictModel):
    """Files on this machine: a mirror folder (`path_template`, `{id}` = the source id: file name,
    YouTube id, ...), and/or paths and file:// URLs named by a table's `url` column, which must
    resolve inside `root` (symlinks followed)."""

    backend: Literal["local"]
    path_template: Annotated[PathTemplate, AfterValidator(check_template)] | None = None
    root: InputDir | None = None
    concurrency: int | None = Field(None, ge=1, le=256)  # default: 1 per CPU core
    retry: RetryPolicy = RetryPolicy(attempts=1)

    @model_validator(mode="after")
    def _one_way_in(self) -> LocalFetch:
        if self.path_template is None and self.root is None:
            raise ValueError("give path_template (files named by id) or root (the folder a table's paths lie in)")
        return self


def secret_params(config: YoutubeFetch | HttpFetch | LocalFetch | None) -> tuple[str, ...]:
    """The query parameters to redact for a source: its http fetch's list, else the defaults."""
    return tuple(getattr(config, "secret_params", SECRET_PARAMS))


# How hard and how fast to try, not what to fetch: changing these does not make a failure worth retrying.
_NOT_WHAT = {"retry", "concurrency", "sleep_interval", "max_sleep_interval", "rate_limit"}


def fetch_digest(config: YoutubeFetch | HttpFetch | LocalFetch) -> str:
    """A digest of the settings that decide what a source's fetch gets (backend, templates, root,
    auth, limits): a failure recorded under one digest is not final under another, so fixing a
    wrong `path_template` retries the clips it failed. Holds names of secrets, never their values."""
    settings = config.model_dump(mode="json", exclude=_NOT_WHAT)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def slots(config: YoutubeFetch | HttpFetch | LocalFetch) -> int:
    """Clips a worker process fetches at once. ffmpeg does the decoding, so a local mirror is
    CPU-bound (one per core); URLs also wait on the network (two per core measured best on the
    ingest benchmark, docs/BENCHMARKS.md); YouTube's cap is a politeness setting, never derived."""
    if config.concurrency is not None:
        return config.concurrency
    per_core = 2 if config.backend == "http" else 1
    return per_core * (os.cpu_count() or 1)


FetchConfig = Annotated[YoutubeFetch | HttpFetch | LocalFetch, Field(discriminator="backend")]
