"""One reader per public manifest format (see base.py). Importing the package registers them all
and builds `SourceConfig`, the tagged union of their config models (tag: `format`)."""

from typing import Annotated, Union

from pydantic import Field

from pipelines.ingest.manifests import audiocaps, audioset, clotho, freesound, fsd50k, table, vggsound  # noqa: F401
from pipelines.ingest.manifests.base import FORMATS, ManifestFormat, SourceBase

SourceConfig = Annotated[
    Union[tuple(spec.config for _, spec in FORMATS.items())],  # type: ignore[valid-type]  # noqa: UP007 (built at run time)
    Field(discriminator="format"),
]

__all__ = ["FORMATS", "ManifestFormat", "SourceBase", "SourceConfig"]
