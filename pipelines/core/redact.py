"""Credentials out of everything t2a writes or logs: URL userinfo and secret query parameters.

    redact_url("https://user:pw@cdn/x.wav?token=abc&t=3")  →  "https://REDACTED@cdn/x.wav?token=REDACTED&t=3"
    redact_text("HTTP 403 for https://cdn/x.wav?sig=abc")  →  every URL in a message redacted the same way

A parameter is secret when its name matches one of the patterns (case-insensitive, `*` globs):
`SECRET_PARAMS` by default, or a source's `fetch.secret_params`. Status rows, failure records,
clip.json, the resolved config and log lines go through these functions (docs/reliability.md);
the URL itself, with its credentials, is only ever handed to the tool that fetches it.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

SECRET_PARAMS: tuple[str, ...] = (
    "token",
    "key",
    "sig",
    "signature",
    "X-Amz-*",  # S3 presigned URLs (X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token)
    "X-Goog-*",  # GCS signed URLs, which the http backend makes for gs:// sources
    "access_token",
    "api_key",
    "password",
)
REDACTED = "REDACTED"
# A URL inside free text: scheme://… up to whitespace or a quote/bracket that ends it.
_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# A query parameter: `?name=value` or `&name=value`, the value up to the next separator.
_PARAM_RE = re.compile(r"(?<=[?&])([A-Za-z0-9_.%+-]+)=([^&#\s'\"<>`]*)")


def _is_secret(name: str, params: Iterable[str]) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in params)


def redact_url(url: str, params: Iterable[str] = SECRET_PARAMS) -> str:
    """`url` without userinfo and with the values of secret query parameters replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _URL_RE.sub(REDACTED, url) if "@" in url else url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        params = tuple(params)
        items = []
        for item in query.split("&"):
            name, equals, _ = item.partition("=")
            items.append(f"{name}={REDACTED}" if equals and _is_secret(unquote_plus(name), params) else item)
        query = "&".join(items)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, params: Iterable[str] = SECRET_PARAMS) -> str:
    """Every URL in `text` redacted (error messages of ffmpeg, yt-dlp, requests quote URLs), and
    secret parameters of a query string quoted without its URL ("GET /x.wav?token=… HTTP/1.1")."""
    if "://" not in text and "=" not in text:
        return text
    params = tuple(params)
    text = _URL_RE.sub(lambda match: redact_url(match.group(0), params), text)

    def parameter(match: re.Match) -> str:
        name = match.group(1)
        return f"{name}={REDACTED}" if _is_secret(unquote_plus(name), params) else match.group(0)

    return _PARAM_RE.sub(parameter, text)


def redact_values(value: Any, params: Iterable[str] = SECRET_PARAMS) -> Any:
    """Every string inside nested dicts/lists redacted (the resolved config saved beside outputs)."""
    if isinstance(value, str):
        return redact_text(value, params)
    if isinstance(value, dict):
        return {key: redact_values(item, params) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(item, params) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """A handler filter: log lines (and their tracebacks) with URLs redacted."""

    def __init__(self, params: Iterable[str] = SECRET_PARAMS):
        super().__init__()
        self.params = tuple(params)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message, self.params)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.params)
        return True
