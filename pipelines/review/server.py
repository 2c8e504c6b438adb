"""`t2a review`'s web server: the report, and a review page whose judgments go into the database.

Bound to 127.0.0.1 only (standard library `ThreadingHTTPServer`):

    GET  /                          → /review
    GET  /report/<file>             the corpus's report folder, as `t2a report` wrote it
    GET  /review                    the review page (one card per sampled clip)
    GET  /api/sample                the sample: caption, its sha256, candidates, labels, latest judgment
    GET  /api/estimate              precision per stratum and overall, with Wilson intervals
    GET  /media/<clip>/audio.flac   a sampled clip's audio, frames (frame_NN.jpg) and spectrogram (spec.png)
    POST /api/judgments             {clip_id, caption_sha256, judgment, reviewer, better_caption?}
    POST /api/export                judgments.parquet, overrides.json, estimate.json, audit.json

Only sampled clips are served; a file is read from the clip cache and checked against its sha256.
The page builds every element with textContent (captions are untrusted), and its CSP lets only its
own script run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import mimetypes
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pipelines.core.features import MelExtractor, get_profile
from pipelines.review.media import SPECTROGRAM_PROFILE, spectrogram_png
from pipelines.review.page import PAGE_JS, page_html
from pipelines.review.session import Review, ReviewError

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
_MEDIA = re.compile(r"/media/([A-Za-z0-9_-]{1,64})/(audio\.flac|spec\.png|frame_\d{2}\.jpg)")


class ReviewServer:
    """The server and its thread; `url` is where it listens. Use as a context manager or call close()."""

    def __init__(self, review: Review, report_dir: Path, *, port: int = 0, reviewer: str = ""):
        self.review, self.report_dir, self.reviewer = review, Path(report_dir).resolve(), reviewer
        self.lock = threading.Lock()  # one judgment or export at a time: SQLite takes one writer anyway
        self.extractor = MelExtractor(get_profile(SPECTROGRAM_PROFILE))
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="t2a-review", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ReviewServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.close()

    # --- what the routes do ---------------------------------------------------------------------

    def media(self, clip_id: str, name: str) -> tuple[bytes, str]:
        clip = self.review.clip(clip_id)  # ReviewError unless the clip is in the sample
        cache = self.review.cache
        entry = cache.read_entry(clip_id)
        if name == "spec.png":
            target = self.review.folder / "spec" / f"{clip_id}.png"
            if not target.is_file():
                spectrogram_png(cache.entry_dir(clip_id) / "audio.flac", target, self.extractor)
            return target.read_bytes(), "image/png"
        if name != "audio.flac" and name not in clip["frames"]:
            raise ReviewError(f"clip {clip_id} has no {name}")
        return cache.read_file(entry, name), mimetypes.guess_type(name)[0] or "application/octet-stream"


class _Handler(BaseHTTPRequestHandler):
    app: ReviewServer
    server_version = "t2a-review"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = unquote(urlsplit(self.path).path)
        try:
            if path in ("/", "/index.html"):
                self._redirect("/review")
            elif path == "/favicon.ico":
                self._send(b"", "image/x-icon", HTTPStatus.NO_CONTENT)
            elif path == "/review":
                self._send(page_html(self.app.reviewer).encode(), "text/html; charset=utf-8", csp=_csp())
            elif path == "/api/sample":
                self._json({"clips": self.app.review.sample(), "strata": self.app.review.strata})
            elif path == "/api/estimate":
                self._json(self.app.review.estimate())
            elif path.startswith("/report"):
                self._report(path.removeprefix("/report").lstrip("/") or "index.html")
            elif _MEDIA.fullmatch(path):
                clip_id, name = _MEDIA.fullmatch(path).groups()
                self._send(*self.app.media(clip_id, name))
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        except ReviewError as error:
            self._error(HTTPStatus.NOT_FOUND, str(error))
        except (OSError, ValueError) as error:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(error).__name__}: {error}")

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        try:
            body = self._body()
            with self.app.lock:
                if path == "/api/judgments":
                    saved = self.app.review.judge(
                        str(body.get("clip_id", "")),
                        str(body.get("caption_sha256", "")),
                        str(body.get("judgment", "")),
                        str(body.get("reviewer", "")),
                        body.get("better_caption") or None,
                    )
                    self._json({"saved": saved, "estimate": self.app.review.estimate()["overall"]})
                elif path == "/api/export":
                    self._json(self.app.review.export())
                else:
                    self._error(HTTPStatus.NOT_FOUND, f"no such action: {path}")
        except ReviewError as error:
            self._error(HTTPStatus.BAD_REQUEST, str(error))

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ReviewError(f"request body over {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise ReviewError("request body is not JSON") from None
        if not isinstance(body, dict):
            raise ReviewError("request body must be a JSON object")
        return body

    def _report(self, relative: str) -> None:
        target = (self.app.report_dir / relative).resolve()
        if not target.is_relative_to(self.app.report_dir) or not target.is_file():
            self._error(HTTPStatus.NOT_FOUND, f"no such report file: {relative} (run `t2a report` first)")
            return
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(target.read_bytes(), kind + ("; charset=utf-8" if kind.startswith("text/") else ""))

    def _redirect(self, where: str) -> None:
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _json(self, payload: Any) -> None:
        self._send(json.dumps(payload, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(json.dumps({"error": message}).encode(), "application/json; charset=utf-8", status)

    def _send(self, data: bytes, kind: str, status: HTTPStatus = HTTPStatus.OK, csp: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if csp:
            self.send_header("Content-Security-Policy", csp)
        self.end_headers()
        self.wfile.write(data)


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(PAGE_JS.encode()).digest()).decode()
    return (
        "default-src 'none'; img-src 'self'; media-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
