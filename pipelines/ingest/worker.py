"""Ingest of one clip: cache check → fetch → one ffmpeg pass → atomic commit → a status row.

`ClipWorker.ingest` never raises: every outcome, good or bad, is a `StatusRow`. Finished clips are
`cached` on a re-run; a clip's last failure is kept in the failure table (`failures/`, cache.py) so
a re-run does not fetch it again unless `retry_failed` is set and the failure was retryable — or the
source's fetch settings changed since (`fetch_digest`): a failure is final only for the settings
that produced it. The finished clips and the failure table are read once per worker, not per clip.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.core.config import MediaConfig, RetryPolicy
from pipelines.core.io import StorageFull, find_storage_full, sha256_file
from pipelines.core.records import (
    CaptionRef,
    Clip,
    ClipFailure,
    ClipRecord,
    FileRef,
    FrameRef,
    LabelRef,
    ManifestRef,
    Segment,
    StatusRow,
)
from pipelines.core.redact import SECRET_PARAMS, redact_text
from pipelines.core.tools import tool_versions
from pipelines.ingest.cache import ClipCache, Failures
from pipelines.ingest.fetch import FetchBackend, make_backend
from pipelines.ingest.fetch.configs import fetch_digest, secret_params, slots
from pipelines.ingest.media import MediaInput, MediaResult, normalize

log = logging.getLogger(__name__)


class ClipWorker:
    """Ingests clips of one corpus; thread-safe, one per worker process (built in DoFn.setup)."""

    def __init__(self, sources: dict[str, Any], media: MediaConfig, output: Path, retry_failed: bool = False):
        self.cache = ClipCache(output)
        self.media = media
        self.retry_failed = retry_failed
        self.backends: dict[str, FetchBackend] = {name: make_backend(s.fetch) for name, s in sources.items()}
        self.retry: dict[str, RetryPolicy] = {name: s.fetch.retry for name, s in sources.items()}
        limits = {name: slots(s.fetch) for name, s in sources.items()}
        self.slots = {name: threading.BoundedSemaphore(n) for name, n in limits.items()}
        self.tools = tool_versions()
        self.concurrency = max(limits.values())
        self.secrets = {name: secret_params(s.fetch) for name, s in sources.items()}
        self.digests = {name: fetch_digest(s.fetch) for name, s in sources.items()}
        self.done = self.cache.done_ids()
        self.prior = Failures(output).load()
        self.recorded: list[dict[str, Any]] = []  # failures not yet written (`take_failures`)
        self.lock = threading.Lock()
        self.local = threading.local()
        self.workdirs: list[Path] = []

    def take_failures(self) -> list[dict[str, Any]]:
        """The failures recorded since the last call, for the caller to write as one table file."""
        with self.lock:
            taken, self.recorded = self.recorded, []
        return taken

    def write_failures(self, prefix: str) -> Path | None:
        """The failures recorded since the last call, as one file of the failure table."""
        rows = self.take_failures()
        try:
            return Failures(self.cache.root).write(rows, prefix)
        except OSError as error:
            full = find_storage_full(error, self.cache.root)
            raise (full or error) from None

    def settled(self, clip: Clip, started: float | None = None) -> StatusRow | None:
        """The clip's row when its recorded failure is final for this run (no fetch, no file read,
        so the caller answers it on its own thread); None when the clip is to be ingested."""
        if clip.clip_id in self.done:
            return None
        prior = self._prior_failure(clip)
        if prior is None or (prior["retryable"] and self.retry_failed):
            return None
        status = "failed_retryable" if prior["retryable"] else "failed_permanent"
        started = time.monotonic() if started is None else started
        return self._row(clip, status, started, prior["reason"], attempts=prior["attempts"])

    def _prior_failure(self, clip: Clip) -> dict[str, Any] | None:
        """The clip's last failure, if it was recorded under the source's current fetch settings
        (records of older versions carry no digest: taken as current)."""
        prior = self.prior.get(clip.clip_id)
        if prior is None or prior["fetch"] not in (None, self.digests[clip.source]):
            return None
        return prior

    def ingest(self, clip: Clip) -> StatusRow:
        """The clip's status row. Raises only `StorageFull`: a full (or read-only) output is the
        machine's fault, not the clip's, so nothing is recorded for it and the run stops."""
        started = time.monotonic()
        try:
            return self._ingest(clip, started)
        except StorageFull:
            raise
        except Exception as error:  # one broken clip must never kill the bundle (docs/ARCHITECTURE.md, "Rules")
            full = find_storage_full(error, self.cache.root)
            if full is not None:
                raise full from None
            log.exception("internal error on clip %s", clip.clip_id)
            # Recorded like any retryable failure: a plain re-run does not fetch it again, --retry-failed does.
            failure = ClipFailure(f"internal error: {type(error).__name__}: {error}", retryable=True)
            return self._failed(clip, failure, 1, started)

    def _ingest(self, clip: Clip, started: float) -> StatusRow:
        if clip.clip_id in self.done and self.cache.is_complete(clip.clip_id):
            entry = self.cache.read_entry(clip.clip_id)
            return self._row(clip, "cached", started, attempts=entry.attempts, size=entry.total_bytes)
        settled = self.settled(clip, started)
        if settled is not None:
            return settled
        prior = self._prior_failure(clip)
        attempts = prior["attempts"] if prior else 0
        policy = self.retry[clip.source]
        for attempt in range(1, policy.attempts + 1):
            try:
                with self.slots[clip.source]:
                    entry = self._fetch(clip, attempts + attempt)
            except ClipFailure as failure:
                if failure.retryable and attempt < policy.attempts:
                    wait = max(policy.delay(attempt), failure.retry_after or 0.0)
                    if wait <= policy.max_backoff:
                        time.sleep(wait)
                        continue
                    # Every wait is capped: a server asking for an hour gets its answer now, recorded.
                    failure = ClipFailure(
                        f"{failure.reason} (the server asks to wait {wait:.0f} s, "
                        f"over fetch.retry.max_backoff {policy.max_backoff:g} s; try again later with --retry-failed)",
                        retryable=True,
                    )
                return self._failed(clip, failure, attempts + attempt, started)
            return self._row(clip, "ok", started, attempts=attempts + attempt, size=entry.total_bytes)
        raise AssertionError("unreachable: the loop returns on its last attempt")

    def _fetch(self, clip: Clip, attempts: int) -> ClipRecord:
        backend = self.backends[clip.source]
        work = self._workdir()
        staging = None
        try:
            media = backend.open(clip, work, want_video=self.media.frames > 0)
            # Made only once there is media: a clip that fails at once (no such file, HTTP 404)
            # costs no folder (creating and removing one per clip dominated that cost).
            staging = self.cache.staging(clip.clip_id)
            try:
                result = normalize(media, staging, self.media)
            except ClipFailure as failure:
                # The backend's other way in (a whole-file download from a server that ignores
                # Range), or the exact reason ffmpeg failed.
                media = backend.recover(media, failure, work)
                try:
                    result = normalize(media, staging, self.media)
                except ClipFailure as again:
                    raise backend.explain(media, again) from None
            entry = clip_record(clip, media, result, self.media, self.tools, attempts, self.secrets[clip.source])
            self.cache.write_entry(staging, entry)  # last: the entry's completion marker
            self.cache.commit(staging, clip.clip_id)
            return entry
        finally:
            _empty(work)
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)  # gone after a commit; removed after a failure

    def _workdir(self) -> Path:
        """This thread's download folder (under the staging root, so a killed run's is removed at
        the next start), emptied after each clip and removed by `close`."""
        work = getattr(self.local, "work", None)
        if work is None:
            self.cache.staging_root.mkdir(parents=True, exist_ok=True)
            work = self.local.work = Path(tempfile.mkdtemp(prefix="fetch-", dir=self.cache.staging_root))
            with self.lock:
                self.workdirs.append(work)
        return work

    def close(self) -> None:
        with self.lock:
            workdirs, self.workdirs = self.workdirs, []
        for work in workdirs:
            shutil.rmtree(work, ignore_errors=True)

    def _redact(self, text: str, source: str | None = None) -> str:
        return redact_text(text, self.secrets.get(source or "", SECRET_PARAMS))

    def _failed(self, clip: Clip, failure: ClipFailure, attempts: int, started: float) -> StatusRow:
        reason = self._redact(failure.reason, clip.source)
        failure = ClipFailure(reason, retryable=failure.retryable)
        record = {
            "clip_id": clip.clip_id,
            "source": clip.source,
            "reason": reason,
            "retryable": failure.retryable,
            "attempts": attempts,
            "time": _now(),
            "fetch": self.digests[clip.source],
        }
        with self.lock:
            self.recorded.append(record)
        status = "failed_retryable" if failure.retryable else "failed_permanent"
        return self._row(clip, status, started, failure.reason, attempts=attempts)

    def _row(
        self, clip: Clip, status: str, started: float, reason: str = "", attempts: int = 0, size: int = 0
    ) -> StatusRow:
        return StatusRow(
            source=clip.source,
            manifest=clip.manifest,
            line=clip.line,
            status=status,
            clip_id=clip.clip_id,
            source_id=clip.source_id,
            reason=self._redact(reason, clip.source),
            attempts=attempts,
            bytes=size,
            seconds=round(time.monotonic() - started, 4),
            rows=clip.rows,
        )


def clip_record(
    clip: Clip,
    media: MediaInput,
    result: MediaResult,
    cfg: MediaConfig,
    tools: dict[str, str],
    attempts: int,
    secrets: tuple[str, ...] = SECRET_PARAMS,
) -> ClipRecord:
    """The clip.json provenance record (schema `t2a.clip/1`); URLs in it carry no credentials."""
    files = [result.audio, *result.frames]
    return ClipRecord(
        clip_id=clip.clip_id,
        source=clip.source,
        format=clip.format,
        source_id=redact_text(clip.source_id, secrets),
        media_url=redact_text(media.display, secrets),
        manifest=ManifestRef(file=clip.manifest, line=clip.line, rows=clip.rows),
        segment=Segment(start=_seconds(clip.start), end=_seconds(clip.end)),
        duration=round(result.duration, 6),
        audio_seconds=round(result.segment, 6),
        padded=result.padded,
        input_duration=result.input_duration,
        sample_rate=cfg.sample_rate,
        channels=1,
        frames=[FrameRef(file=f.name, time=round(t, 6)) for f, t in zip(result.frames, result.frame_times)],
        frames_wanted=cfg.frames,
        frames_real=len(result.frames),
        video_note=result.video_note,
        labels=[LabelRef(mid=label.mid, name=label.name) for label in clip.labels],
        captions=[CaptionRef(text=c.text, origin=c.origin, kind=c.kind) for c in clip.captions],
        split=clip.split,
        licence=clip.licence,
        meta=clip.meta,
        files={f.name: FileRef(sha256=sha256_file(f), bytes=f.stat().st_size) for f in files},
        fetched_bytes=media.fetched_bytes,
        read_bytes=result.read_bytes,
        attempts=attempts,
        tools=tools,
        created=_now(),
    )


def _empty(folder: Path) -> None:
    """Remove what a clip left in a work folder (usually nothing: one listing)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)


def _seconds(value: float | None) -> float | None:
    return None if value is None else float(value)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
