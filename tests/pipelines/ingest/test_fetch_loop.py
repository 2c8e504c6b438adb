"""FetchBatches' loop over its futures: every clip it is given comes out as exactly one status row."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from types import SimpleNamespace

from pipelines.core.records import Clip, StatusRow
from pipelines.ingest import job as ingest


class StubWorker:
    """A ClipWorker that answers at once: the loop, not the fetching, is under test."""

    concurrency = 8

    def __init__(self, *args, **kwargs):
        self.recorded: list[dict] = []

    def write_failures(self, prefix: str) -> None:
        pass

    def settled(self, clip: Clip) -> None:
        return None

    def close(self) -> None:
        pass

    def ingest(self, clip: Clip) -> StatusRow:
        return StatusRow(source=clip.source, manifest=clip.manifest, line=clip.line, status="ok", clip_id=clip.clip_id)


class RacingFuture(Future):
    """A future whose work finishes exactly while it is being looked at: the first `done()` sees it
    running, lets its thread go, and returns only once the result has landed — so a caller that
    looks twice (once to take the done ones, once to keep the rest) finds it in neither list."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def done(self) -> bool:
        answer = super().done()
        if not answer and not self.go.is_set():
            self.go.set()
            wait_for([self], timeout=5)
        return answer


class RacingPool:
    """Real threads; each task waits (up to 50 ms) until its future is first looked at."""

    def __init__(self, threads: int):
        self.threads = ThreadPoolExecutor(threads)

    def submit(self, fn, *args) -> RacingFuture:
        future = RacingFuture()

        def work() -> None:
            future.go.wait(0.05)
            try:
                future.set_result(fn(*args))
            except BaseException as error:  # handed to the caller, as an executor does
                future.set_exception(error)

        self.threads.submit(work)
        return future

    def shutdown(self, wait: bool = True) -> None:
        self.threads.shutdown(wait=wait)


def clip(i: int) -> Clip:
    return Clip(
        source="s", manifest="m.csv", line=i + 2, clip_id=f"c{i}", source_id=f"c{i}", format="table", media=None
    )


def test_one_status_row_per_clip_when_futures_finish_while_being_collected(monkeypatch):
    monkeypatch.setattr(ingest, "ClipWorker", StubWorker)
    corpus = SimpleNamespace(config=SimpleNamespace(sources=[], media=None), output="unused")
    n = 4000
    fn = ingest.FetchBatches(corpus, retry_failed=False)
    fn.order = {"s": 0}
    fn.setup()
    fn.pool.shutdown()
    fn.pool = RacingPool(StubWorker.concurrency)
    rows: list[StatusRow] = []
    try:
        for batch in range(2):
            fn.start_bundle()
            clips = [clip(i) for i in range(batch * n // 2, (batch + 1) * n // 2)]
            rows += fn.rows(clips, excluded={}, total=n)
            fn.finish_bundle()
    finally:
        fn.teardown()
    counts = Counter(row.clip_id for row in rows)
    assert len(counts) == n and set(counts.values()) == {1}
