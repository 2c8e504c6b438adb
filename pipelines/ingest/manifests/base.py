"""The base of every source's configuration, and the manifest-format registry.

A format is one module in this package: a config model (a subclass of `SourceBase` with a
`format: Literal[...]` and its own files) and a reader registered with `@register_format`. The
reader yields a `Clip` per usable row and a `RejectedRow` (file, line, reason) per malformed one;
it never raises on bad rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from pipelines.core.config import Name, StrictModel
from pipelines.core.records import Clip, RejectedRow
from pipelines.core.registry import Registry
from pipelines.ingest.fetch.configs import FetchConfig

Record = Clip | RejectedRow


class SourceBase(StrictModel):
    name: Name
    format: str
    fetch: FetchConfig | None = None  # required for sources; absent for exclusion manifests
    split: Literal["train", "valid", "test"] | None = None  # for clips whose manifest says none
    limit: int | None = Field(None, gt=0)  # read only the first N clips (to try a corpus)


@dataclass(frozen=True)
class ManifestFormat:
    name: str
    config: type[SourceBase]
    read: Callable[[SourceBase], Iterator[Record]]


FORMATS: Registry[ManifestFormat] = Registry("manifest format")


def register_format(name: str, config: type[SourceBase]):
    def add(read: Callable[[SourceBase], Iterator[Record]]):
        FORMATS.register(name)(ManifestFormat(name, config, read))
        return read

    return add
