"""What ingest adds to a corpus in datasets.yaml besides its sources: exclusion lists (docs/configuration.md)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag

from pipelines.core.config import InputFile, StrictModel
from pipelines.ingest.manifests import SourceConfig


class IdList(StrictModel):
    """A text file of ids to exclude, one per line ('#' starts a comment): YouTube ids, Freesound
    ids, catalogue file names or clip ids."""

    ids: InputFile


def _exclusion_kind(value: Any) -> str:
    return "id-list" if isinstance(value, IdList) or (isinstance(value, dict) and "ids" in value) else "source-manifest"


Exclusion = Annotated[
    Annotated[IdList, Tag("id-list")] | Annotated[SourceConfig, Tag("source-manifest")],
    Discriminator(_exclusion_kind),
]
