"""A loopback HTTP server for the demo corpus, tests and benchmarks.

It serves a folder with byte-range support (so ffmpeg and yt-dlp seek inside media as they do on
real CDNs), logs every request, and injects faults per path: an HTTP status for the first N
requests, a slow response, a truncated body, a wrong content type. API emulators (the Freesound
APIv2 one in `demo.freesound_api`) plug in as routes.
"""

from __future__ import annotations

import fnmatch
import logging
import mimetypes
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024


@dataclass
class Fault:
    """One injected misbehaviour for the requests whose path matches a pattern.

    `times` is how many matching requests it affects (None: all of them); `status` answers with that
    HTTP status instead of the file; `delay` sleeps before answering; `truncate` sends only that
    fraction of the body after announcing the full length; `stall` then waits that many seconds
    before closing (a transfer that stops making progress); `content_type` replaces the real one;
    `ignore_range` answers every request with the whole file, 200 and no `Accept-Ranges`, as
    Python's http.server and some origins do.
    """

    status: int | None = None
    times: int | None = None
    delay: float = 0.0
    truncate: float | None = None
    stall: float = 0.0
    content_type: str | None = None
    ignore_range: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Response]


@dataclass
class LoggedRequest:
    """Logged before the body goes out (so a client never outruns the log); `bytes_sent` is
    filled in once the body has been written."""

    method: str
    path: str
    range: str | None
    status: int
    bytes_sent: int = 0


class LoopbackServer:
    """`with LoopbackServer(root) as server: server.url` — a threaded server on 127.0.0.1."""

    def __init__(
        self,
        root: str | Path | None,
        port: int = 0,
        faults: dict[str, list[Fault]] | None = None,
        routes: dict[str, Route] | None = None,
    ):
        self.root = Path(root).resolve() if root is not None else None
        self.faults = {pattern: list(items) for pattern, items in (faults or {}).items()}
        self.routes = dict(routes or {})
        self.log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", port), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_fault(self, pattern: str, fault: Fault) -> None:
        with self._lock:
            self.faults.setdefault(pattern, []).append(fault)

    def requests_for(self, pattern: str, method: str | None = "GET") -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.log if fnmatch.fnmatchcase(r.path, pattern) and method in (None, r.method)]

    def bytes_sent(self, pattern: str = "*") -> int:
        return sum(r.bytes_sent for r in self.requests_for(pattern, method=None))

    def _take_fault(self, path: str) -> Fault | None:
        """The first matching fault that still has uses left; using it spends one."""
        with self._lock:
            for pattern, items in self.faults.items():
                if not fnmatch.fnmatchcase(path, pattern):
                    continue
                for fault in items:
                    if fault.times is None or fault.times > 0:
                        if fault.times is not None:
                            fault.times -= 1
                        return fault
        return None

    def _record(self, entry: LoggedRequest) -> LoggedRequest:
        with self._lock:
            self.log.append(entry)
        return entry


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # clients (ffmpeg, yt-dlp) drop keep-alive connections as they please
        super().handle_error(request, client_address)


def _make_handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            log.debug("loopback: " + format, *args)

        def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
            self._serve(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            split = urlsplit(self.path)
            path = unquote(split.path)
            fault = server._take_fault(path)
            if fault and fault.delay:
                time.sleep(fault.delay)
            if fault and fault.status:
                self._send_status(path, fault.status, fault.headers)
                return
            for prefix, route in server.routes.items():
                if path.startswith(prefix):
                    request = Request(self.command, path, parse_qs(split.query), dict(self.headers.items()))
                    self._send_response(path, route(request), body)
                    return
            self._send_file(path, fault, body)

        def _send_status(self, path: str, status: int, headers: dict[str, str] | None = None) -> None:
            payload = f"{status} {HTTPStatus(status).phrase}\n".encode()
            entry = server._record(LoggedRequest(self.command, path, self.headers.get("Range"), status))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
                entry.bytes_sent = len(payload)

        def _send_response(self, path: str, response: Response, body: bool) -> None:
            entry = server._record(LoggedRequest(self.command, path, None, response.status))
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(response.body)
                entry.bytes_sent = len(response.body)

        def _send_file(self, path: str, fault: Fault | None, body: bool) -> None:
            file = _safe_join(server.root, path) if server.root else None
            if file is None or not file.is_file():
                self._send_status(path, 404)
                return
            size = file.stat().st_size
            first, last, status = 0, size - 1, 200
            requested = self.headers.get("Range")
            ranges = not (fault and fault.ignore_range)
            if requested and ranges:
                bounds = _parse_range(requested, size)
                if bounds is None:
                    self._send_status(path, 416, {"Content-Range": f"bytes */{size}"})
                    return
                (first, last), status = bounds, 206
            length = max(0, last - first + 1)
            content_type = (fault and fault.content_type) or mimetypes.guess_type(file.name)[0]
            entry = server._record(LoggedRequest(self.command, path, requested, status))
            self.send_response(status)
            self.send_header("Content-Type", content_type or "application/octet-stream")
            self.send_header("Content-Length", str(length))
            if ranges:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.end_headers()
            if body:
                entry.bytes_sent = self._copy(file, first, length, fault)

        def _copy(self, file: Path, first: int, length: int, fault: Fault | None) -> int:
            limit = length if not (fault and fault.truncate is not None) else int(length * fault.truncate)
            sent = 0
            try:
                with file.open("rb") as handle:
                    handle.seek(first)
                    while sent < limit:
                        chunk = handle.read(min(_CHUNK, limit - sent))
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client closed early (ffmpeg stops reading at the end of its segment)
            if fault and fault.stall:
                time.sleep(fault.stall)
            if limit < length:
                self.close_connection = True  # a truncated body: the length promised was not sent
            return sent

    return Handler


def _safe_join(root: Path, url_path: str) -> Path | None:
    candidate = (root / url_path.lstrip("/")).resolve()
    return candidate if candidate.is_relative_to(root) else None


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    match = _RANGE_RE.match(header.strip())
    if not match or size == 0:
        return None
    start, end = match.groups()
    if start == "":  # suffix range: the last N bytes
        if not end:
            return None
        return max(0, size - int(end)), size - 1
    first = int(start)
    last = min(int(end), size - 1) if end else size - 1
    if first >= size or last < first:
        return None
    return first, last
