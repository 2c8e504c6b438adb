"""Fetch backends: youtube (yt-dlp), http/s3/gs (ffmpeg range reads, fsspec), local mirror.

Importing the package registers every backend; `make_backend` picks one by the config's name.
"""

from pipelines.ingest.fetch import http, local, youtube  # noqa: F401  (registration)
from pipelines.ingest.fetch.base import BACKENDS, FetchBackend
from pipelines.ingest.fetch.configs import FetchConfig


def make_backend(config: FetchConfig) -> FetchBackend:
    return BACKENDS.get(config.backend)(config)


__all__ = ["BACKENDS", "FetchBackend", "FetchConfig", "make_backend"]
