"""The ingest job: public manifests → segment-only fetch → normalized clip cache, with status.

    ListSources → SpillManifests ─→ GroupBatches ─→ FetchBatches ─→ WriteStatus
                  (records → spill files;  (one shuffle   (per batch: its records read back;
                   (batch, SpillRef) out)   of refs)       rejected rows, duplicates, exclusions, fetches)

Every manifest row ends as one status row: `rejected_row`, `duplicate`, `excluded`, or the outcome
of its fetch (`ok`, `cached`, `failed_permanent`, `failed_retryable`). Elements carry ids and paths,
never media bytes. Run with `t2a ingest --config … --corpus … [-- Beam options]`; without `--runner`
it runs on the FnApiRunner.

One shuffle does both jobs: every record of a clip id lands in the same batch (clip id → one of
~records / 512, so duplicates meet), and a batch is the unit a worker fetches concurrently. The
records themselves go through spill files (pipelines/ingest/spill.py): the runner shuffles one
small reference per file and batch, so memory stays flat and no row pays a coder round trip.
Each DoFn has one output and emits from `process`, so the job runs on runners that support no
more than that (Beam's DaskRunner, see docs/runners.md).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from tqdm import tqdm

from pipelines.core.beam import (
    T2aOptions,
    WorkerSetupError,
    find_worker_setup_error,
    pipeline_options,
    side_inputs_in_this_task,
)
from pipelines.core.config import ConfigError
from pipelines.core.io import StorageFull, find_storage_full, prepare_output
from pipelines.core.records import Clip, RejectedRow, StatusRow
from pipelines.core.redact import redact_text
from pipelines.core.secrets import WorkerSecrets
from pipelines.core.storage import ObjectPath, is_remote
from pipelines.core.tools import tool_versions
from pipelines.ingest.cache import ClipCache, Failures
from pipelines.ingest.config import IdList
from pipelines.ingest.fetch.configs import secret_params
from pipelines.ingest.manifests.base import FORMATS
from pipelines.ingest.spill import SpillRef, SpillWriter, read_spilled, remove_spill, spill_folder
from pipelines.ingest.status import WriteStatus, latest_run, summary_path
from pipelines.ingest.worker import ClipWorker

if TYPE_CHECKING:
    from pipelines.datasets import Corpus

log = logging.getLogger(__name__)
NAMESPACE = "ingest"


@functools.lru_cache(maxsize=4096)
def _counter(name: str) -> Any:
    return Metrics.counter(NAMESPACE, name)


def _count(name: str, n: int = 1) -> None:
    _counter(name).inc(n)


def read_records(source: Any) -> Iterator[Clip | RejectedRow]:
    """A source config → its Clips and RejectedRows, in manifest order. A source that cannot be
    read (an API down, bad credentials) ends as one RejectedRow saying so, not as a failed job."""
    rows = 0
    secrets = secret_params(source.fetch)
    _check_manifest(source)
    try:
        for record in FORMATS.get(source.format).read(source):
            rows += 1
            if isinstance(record, RejectedRow):  # counted with every status, in FetchBatches
                yield replace(record, reason=redact_text(record.reason, secrets))
            else:
                yield record
    except Exception as error:  # an unreadable source is recorded, not fatal
        reason = redact_text(f"source could not be read past row {rows}: {error}", secrets)
        log.error("source %s: %s", source.name, reason)
        _count("unreadable_source")
        yield RejectedRow(source.name, _manifest_of(source), rows, reason)
        return
    if rows == 0:  # said in the run's summary too (build_summary: `warnings`)
        log.warning("source %s: no rows in %s (an empty manifest?)", source.name, _manifest_of(source))


class SpillManifest(beam.DoFn):
    """A source config → (partition, SpillRef) pairs: its records, partitioned by `partition_of`
    and written through spill files (pipelines/ingest/spill.py), so the runner shuffles one small
    reference per file and partition instead of every record. One output, emitted from `process`
    (some runners support no other). `worker_secrets`: the launcher's credentials
    (pipelines/core/secrets.py), set in this worker's environment."""

    def __init__(
        self, output: Path | ObjectPath, run_id: str, partitions: int, worker_secrets: WorkerSecrets | None = None
    ):
        self.output = output
        self.run_id = run_id
        self.partitions = partitions
        self.worker_secrets = worker_secrets or WorkerSecrets()

    def setup(self) -> None:
        self.worker_secrets.install()

    def process(self, source: Any) -> Iterator[tuple[int, SpillRef]]:
        writer = SpillWriter(spill_folder(self.output, self.run_id))
        partitions = self.partitions
        for record in read_records(source):
            yield from writer.add(partition_of(record, partitions), record)
        yield from writer.close()


def _check_manifest(source: Any) -> None:
    """The launcher checked the config's files when it loaded it; a worker that does not see them
    does not share the launcher's files, which fails the run (not one row saying so, exit 0)."""
    for key in ("manifest", "vocabulary"):
        path = getattr(source, key, None)
        if isinstance(path, Path) and not path.exists():
            raise WorkerSetupError(
                f"source {source.name!r}: the workers cannot see its {key} {path} (the launcher can): the workers "
                "must read the config's files at the same paths, on a filesystem they share (docs/runners.md)"
            )


def secret_env_names(corpus: Corpus) -> list[str]:
    """The environment variables the corpus's sources and exclusion lists read credentials from."""
    names = set()
    for entry in (*corpus.config.sources, *corpus.config.exclude):
        fetch = getattr(entry, "fetch", None)
        names.update(name for name in (getattr(entry, "token_env", None), getattr(fetch, "auth_env", None)) if name)
    return sorted(names)


def _manifest_of(source: Any) -> str:
    return str(getattr(source, "manifest", None) or f"{source.format}:{source.name}")


def read_exclusions(entry: Any, worker_secrets: WorkerSecrets | None = None) -> Iterator[tuple[str, str]]:
    """(id, exclusion name) pairs: clip ids and source ids to keep out of the corpus."""
    if worker_secrets:
        worker_secrets.install()
    _check_manifest(SimpleNamespace(name=entry.ids.name, manifest=entry.ids) if isinstance(entry, IdList) else entry)
    if isinstance(entry, IdList):
        for line in entry.ids.read_text(encoding="utf-8").splitlines():
            value = line.split("#", 1)[0].strip()
            if value:
                yield value, entry.ids.name
        return
    for record in FORMATS.get(entry.format).read(entry):
        if isinstance(record, Clip):
            yield record.clip_id, entry.name
            yield record.source_id, entry.name


def collapse_duplicates(
    clip_id: str, records: list[Clip], excluded: dict[str, str], source_order: dict[str, int]
) -> tuple[Clip | None, list[StatusRow]]:
    """All records of one clip id → the clip to fetch (labels and captions merged; None when
    excluded) and the status rows of the others (`duplicate`, `excluded`).

    The record kept is the first by (source order in the config, manifest, line), so the choice
    does not depend on processing order.
    """
    ordered = sorted(records, key=lambda c: (source_order[c.source], c.manifest, c.line))
    keep, others = ordered[0], ordered[1:]
    why = excluded.get(clip_id) or excluded.get(keep.source_id)
    if why:
        return None, [_row(clip, "excluded", f"in exclusion list {why}") for clip in ordered]
    rows = [
        _row(clip, "duplicate", f"duplicate of {clip_id} kept from {keep.source} line {keep.line}") for clip in others
    ]
    return merge_duplicates(keep, others), rows


def merge_duplicates(keep: Clip, others: list[Clip]) -> Clip:
    """The kept record with what its duplicates add: labels, captions (AudioCaps on AudioSet) and
    metadata the kept one lacks (strong-label events). The kept record wins where both say."""
    if not others:
        return keep
    labels, captions, meta = list(keep.labels), list(keep.captions), {}
    for clip in others:
        labels += [label for label in clip.labels if label not in labels]
        captions += [caption for caption in clip.captions if caption not in captions]
        meta = {**clip.meta, **meta}
    meta = {**meta, **keep.meta, "duplicates": [f"{clip.source}:{clip.line}" for clip in others]}
    return replace(keep, labels=tuple(labels), captions=tuple(captions), meta=meta)


def _row(clip: Clip, status: str, reason: str) -> StatusRow:
    return StatusRow(
        source=clip.source,
        manifest=clip.manifest,
        line=clip.line,
        status=status,
        clip_id=clip.clip_id,
        source_id=clip.source_id,
        reason=reason,
        rows=clip.rows,
    )


def rejected_status(row: RejectedRow) -> StatusRow:
    return StatusRow(source=row.source, manifest=row.manifest, line=row.line, status="rejected_row", reason=row.reason)


BATCH_RECORDS = 512  # manifest records per batch, on average: the unit a worker fetches concurrently


MANIFEST_BYTES_PER_RECORD = 64  # an AudioSet segments row is ~50 bytes, a caption row ~100


def batch_count(sources: Sequence[Any]) -> int:
    """⌈estimated records / BATCH_RECORDS⌉, estimated on the driver from the manifests' sizes (a
    source without a local file counts its `limit`, else one batch): a small corpus is one batch,
    fetched all at once. Known before the job reads anything, so records are keyed as they are read
    (a count taken in the job would hold every record until it is known)."""
    records = 0
    for source in sources:
        try:
            records += os.path.getsize(source.manifest) // MANIFEST_BYTES_PER_RECORD
        except (AttributeError, TypeError, OSError, ValueError):
            records += getattr(source, "limit", None) or BATCH_RECORDS
    return max(1, -(-records // BATCH_RECORDS))


def partition_of(record: Clip | RejectedRow, batches: int) -> int:
    """The batch of a record: every record of a clip id in the same batch."""
    key = record.clip_id if isinstance(record, Clip) else f"{record.manifest}\0{record.line}"
    return zlib.crc32(key.encode()) % batches


class FetchBatches(beam.DoFn):
    """A batch of manifest records → the list of their StatusRows: rejected rows, duplicates and
    exclusions at once, and the clips fetched several at a time (fetching is mostly waiting on
    I/O), all emitted from `process`. Metrics are counted here, in the DoFn's own thread, where
    Beam attributes them. The failures recorded are written as one file of the failure table
    (`cache.Failures`) every `FAILURES_PER_FILE` failures and at the end of the bundle.
    """

    FAILURES_PER_FILE = 20_000

    def __init__(
        self,
        corpus: Corpus,
        retry_failed: bool,
        run_id: str | None = None,
        worker_secrets: WorkerSecrets | None = None,
    ):
        self.sources = {source.name: source for source in corpus.config.sources}
        self.order = {source.name: i for i, source in enumerate(corpus.config.sources)}
        self.media = corpus.config.media
        self.output = corpus.output
        self.retry_failed = retry_failed
        self.run_id = run_id
        self.worker_secrets = worker_secrets or WorkerSecrets()

    def setup(self) -> None:
        side_inputs_in_this_task()  # this DoFn reads side inputs (on Dask: computed in its task)
        self.worker_secrets.install()  # fetch.auth_env tokens, from the launcher
        self.worker = ClipWorker(self.sources, self.media, self.output, self.retry_failed)
        self.pool = ThreadPoolExecutor(self.worker.concurrency, thread_name_prefix="ingest")
        self.progress: _Progress | None = None
        self.prefix = self.run_id or new_run_id()
        self.spill = spill_folder(self.output, self.prefix)

    def process(
        self, batch: tuple[int, Iterable[SpillRef]], excluded: dict[str, str], total: int
    ) -> Iterator[list[StatusRow]]:
        yield self.rows(read_spilled(self.spill, batch[1]), excluded, total)

    def rows(self, records: Iterable[Clip | RejectedRow], excluded: dict[str, str], total: int) -> list[StatusRow]:
        """The status rows of one batch's records (every record of a clip id among them)."""
        if self.progress is None:
            self.progress = _Progress(total)
        rows: list[StatusRow] = []
        by_clip: dict[str, list[Clip]] = {}
        for record in records:
            if isinstance(record, RejectedRow):
                rows.append(self._counted(rejected_status(record)))
            else:
                by_clip.setdefault(record.clip_id, []).append(record)
        self.pending: list[Future] = []
        for clip_id in sorted(by_clip):
            clip, others = collapse_duplicates(clip_id, by_clip[clip_id], excluded, self.order)
            rows += map(self._counted, others)
            if clip is None:
                continue
            settled = self.worker.settled(clip)  # a failure final for this run: no thread needed
            if settled is not None:
                rows.append(self._counted(settled))
                continue
            self.pending.append(self.pool.submit(self.worker.ingest, clip))
            rows += self._collect(block=len(self.pending) >= 2 * self.worker.concurrency)
        rows += self._collect(everything=True)
        if len(self.worker.recorded) >= self.FAILURES_PER_FILE:
            self.worker.write_failures(f"{self.prefix}-b")
        return rows

    def finish_bundle(self) -> None:
        self.worker.write_failures(f"{self.prefix}-b")  # a file write: emits nothing

    def teardown(self) -> None:
        self.pool.shutdown(wait=True)
        self.worker.close()
        if self.progress:
            self.progress.close()

    def _collect(self, block: bool = False, everything: bool = False) -> list[StatusRow]:
        if everything:
            done, self.pending = self.pending, []
        else:
            if block:
                wait(self.pending, return_when=FIRST_COMPLETED)
            # One look at each future: a future that finishes while the list is being read is
            # either done (collected now) or pending (collected later), never neither.
            done, pending = [], []
            for future in self.pending:
                (done if future.done() else pending).append(future)
            self.pending = pending
        return [self._counted(future.result()) for future in done]

    def _counted(self, row: StatusRow) -> StatusRow:
        _count(row.status, row.rows)
        _count(f"{row.source}/{row.status}", row.rows)
        if self.progress:
            self.progress.update(row)
        return row


class _Progress:
    """A live bar on a terminal; elsewhere a log line every 30 s. One per worker process."""

    def __init__(self, total: int):
        self.bar = tqdm(total=total, desc="ingest", unit="clip", disable=not sys.stderr.isatty(), dynamic_ncols=True)
        self.counts: Counter = Counter()
        self.total = total
        self.last_log = time.monotonic()

    def update(self, row: StatusRow) -> None:
        self.counts[row.status] += 1
        if not self.bar.disable:
            self.bar.update(1)
            self.bar.set_postfix(dict(self.counts), refresh=False)
        elif time.monotonic() - self.last_log > 30:
            self.last_log = time.monotonic()
            log.info("ingest: %d of %d clips done here: %s", sum(self.counts.values()), self.total, dict(self.counts))

    def close(self) -> None:
        self.bar.close()


class IngestBatches(beam.PTransform):
    """A corpus config → lists of StatusRows, one list per batch, together one row per manifest
    row (clips land in the cache)."""

    def __init__(
        self,
        corpus: Corpus,
        retry_failed: bool = False,
        run_id: str | None = None,
        worker_secrets: WorkerSecrets | None = None,
    ):
        super().__init__()
        self.corpus = corpus
        self.retry_failed = retry_failed
        self.run_id = run_id or new_run_id()  # names the run's spill folder (`run` removes it at the end)
        self.worker_secrets = worker_secrets or WorkerSecrets()

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        config = self.corpus.config
        spilled = (
            pbegin
            | "ListSources" >> beam.Create(config.sources)
            | "SpillManifests"
            >> beam.ParDo(
                SpillManifest(self.corpus.output, self.run_id, batch_count(config.sources), self.worker_secrets)
            )
        )
        excluded = (
            pbegin
            | "ListExclusions" >> beam.Create(config.exclude)
            | "ReadExclusions" >> beam.FlatMap(read_exclusions, self.worker_secrets)
            | "DistinctExcluded" >> beam.CombinePerKey(min)
        )
        total = (
            spilled
            | "RecordsPerSlice" >> beam.Map(lambda item: item[1][3])
            | "CountRecords" >> beam.CombineGlobally(sum)
        )
        return (
            spilled
            | "GroupBatches" >> beam.GroupByKey()
            | "FetchBatches"
            >> beam.ParDo(
                FetchBatches(self.corpus, self.retry_failed, self.run_id, self.worker_secrets),
                excluded=beam.pvalue.AsDict(excluded),
                total=beam.pvalue.AsSingleton(total),
            )
        )


class Ingest(beam.PTransform):
    """A corpus config → the StatusRows of every manifest row (clips land in the cache)."""

    def __init__(
        self,
        corpus: Corpus,
        retry_failed: bool = False,
        run_id: str | None = None,
        worker_secrets: WorkerSecrets | None = None,
    ):
        super().__init__()
        self.batches = IngestBatches(corpus, retry_failed, run_id, worker_secrets)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return pbegin | "Batches" >> self.batches | "Rows" >> beam.FlatMap(lambda rows: rows)


def run(corpus: Corpus, *, retry_failed: bool = False, beam_args: Sequence[str] = ()) -> dict[str, Any]:
    """Run the ingest job; returns the run's status summary. `retry_failed`: retry clips whose last
    failure was retryable; `beam_args`: Beam pipeline options (`core.beam.pipeline_options`).

    Raises ConfigError for an `output` that cannot be a folder t2a writes, and `StorageFull` when
    the output's disk is full (or read-only): the run stops, no clip is marked failed for it, and
    the same command completes the rest once there is space."""
    try:
        return _run(corpus, retry_failed, beam_args)
    except Exception as error:
        setup = find_worker_setup_error(error)
        if setup is not None:
            log.debug("worker setup error, as the runner reported it", exc_info=True)
            raise setup from None
        if isinstance(error, ConfigError):
            raise
        full = find_storage_full(error, corpus.output)
        if full is None:
            raise
        log.debug("storage error, as the runner reported it", exc_info=True)
        raise StorageFull(corpus.output, full.problem) from None


def _run(corpus: Corpus, retry_failed: bool, beam_args: Sequence[str]) -> dict[str, Any]:
    prepare_output(corpus.output)
    cache = ClipCache(corpus.output)
    cache.create()
    removed = cache.clean_staging()
    if removed:
        log.info("removed %d half-written entries left by an earlier run", removed)
    stale = remove_beam_temps(corpus.output / "status")
    if stale:
        log.info("removed %d temporary folder(s) of an earlier run's status writer", stale)
    stale = remove_spill(corpus.output)
    if stale:
        log.info("removed the spilled manifest records of %d earlier run(s)", stale)
    corpus.save_resolved("ingest")
    tools = tool_versions()
    ffmpeg = ffmpeg_check(corpus.output, tools)
    run_id = new_run_id()
    merged = Failures(corpus.output).compact(f"{run_id}-a", done=cache.done_ids())
    if merged:
        log.info("folded %d failure file(s) into one", merged)
    run_info = {
        "run_id": run_id,
        "corpus": corpus.name,
        "config_file": str(corpus.config_path),
        "config_hash": corpus.config_hash,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "retry_failed": retry_failed,
        "tools": tools,
        "ffmpeg": ffmpeg,
        "sources": [source.name for source in corpus.config.sources],
        "warnings": [ffmpeg["warning"]] if ffmpeg.get("warning") else [],
    }
    options = pipeline_options(beam_args)
    forward = options.view_as(T2aOptions).forward_secrets
    worker_secrets = WorkerSecrets.from_environment(secret_env_names(corpus), forward=forward)
    try:
        with beam.Pipeline(options=options) as pipeline:
            batches = pipeline | "Ingest" >> IngestBatches(
                corpus, retry_failed=retry_failed, run_id=run_id, worker_secrets=worker_secrets
            )
            _ = batches | "WriteStatus" >> WriteStatus(corpus.output, run_info)
    finally:
        remove_spill(corpus.output, run_id)
    summary = summary_path(corpus.output, run_id)
    if not summary.is_file():  # the workers wrote it (even for no row at all), to an `output` not seen here
        raise ConfigError(
            f"the run finished but its summary {summary} is not on this machine: the workers wrote `output` "
            "somewhere the launcher cannot see. On a cluster, `output` must be a folder the launcher and every "
            "worker share (docs/runners.md)"
        )
    return read_summary(corpus.output, run_id)


def ffmpeg_check(output: Path, tools: dict[str, str]) -> dict[str, Any]:
    """This run's ffmpeg against the one(s) the clip cache was built with (docs/ingest.md, "ffmpeg").

    The versions come from the earlier runs' summaries (else from one clip.json). A different
    version is said (a warning in the log and the summary, and `differs` here) but cached entries
    are kept: they are valid clips, and re-encoding them would mean fetching every source again.
    Only new clips get the new ffmpeg's bytes, so a byte-identical rebuild needs the same ffmpeg
    (the pinned one by default, T2A_FFMPEG otherwise)."""
    now = tools["ffmpeg"]
    before: set[str] = set()
    for path in sorted((output / "status").glob("*.summary.json")):
        try:
            version = json.loads(path.read_text()).get("tools", {}).get("ffmpeg")
        except (OSError, ValueError):
            continue
        if version:
            before.add(version)
    if not before:
        cache = ClipCache(output)
        first = next(cache.entries(), None)
        if first is not None:
            try:
                version = cache.read_entry(first).tools.get("ffmpeg")
            except ValueError:
                version = None
            before.update([version] if version else [])
    check: dict[str, Any] = {
        "version": now,
        "origin": tools.get("ffmpeg_origin", ""),
        "cache_built_with": sorted(before),
        "differs": bool(before - {now}),
    }
    if check["differs"]:
        check["warning"] = (
            f"ffmpeg {now} ({check['origin']}) differs from the ffmpeg the clip cache was built with "
            f"({', '.join(sorted(before - {now}))}): cached clips are kept, new clips get this ffmpeg's bytes; "
            "unset T2A_FFMPEG (or set it to that build) for byte-identical regeneration"
        )
        log.warning("%s", check["warning"])
    return check


def remove_beam_temps(folder: Path | ObjectPath) -> int:
    """Delete the status parts (`.<run>.parts`) and `beam-temp-*` folders (Beam's file sinks, in
    earlier versions) a run killed mid-write leaves (call before the pipeline starts: a running
    writer's own folder must not go). On an object store: the parts' prefixes, from one listing."""
    if is_remote(folder):
        stale = [path for path in folder.iterdir() if path.name.startswith(".") and path.name.endswith(".parts")]
        for path in stale:
            path.rmtree()
        return len(stale)
    found = [*folder.glob("beam-temp-*"), *folder.glob(".*.parts")]
    stale = [path for path in found if path.is_dir() and not path.is_symlink()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def read_summary(output: Path, run_id: str | None = None) -> dict[str, Any]:
    run_id = run_id or latest_run(output)
    return json.loads(summary_path(output, run_id).read_text()) if run_id else {}
