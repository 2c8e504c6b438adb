"""Steps every job that reads the clip cache starts with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam

from pipelines.ingest.cache import ClipCache

BUCKETS = [f"{i:02x}" for i in range(256)]  # the clip cache's `<bb>` folders (pipelines.ingest.cache.bucket)


class ListClips(beam.DoFn):
    """A bucket of the clip cache → the ids of its complete entries."""

    def __init__(self, output: Path):
        self.output = output

    def process(self, name: str) -> Iterator[str]:
        yield from ClipCache(self.output).bucket_entries(name)


class ListCachedClips(beam.PTransform):
    """PBegin → the ids of every complete clip cache entry, listed bucket by bucket in parallel."""

    def __init__(self, output: Path):
        super().__init__()
        self.output = output

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return pbegin | "ListBuckets" >> beam.Create(BUCKETS) | "ListClips" >> beam.ParDo(ListClips(self.output))
