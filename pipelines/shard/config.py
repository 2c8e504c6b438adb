"""The `shards:` block of a corpus in datasets.yaml (docs/configuration.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from pipelines.core.config import StrictModel


def _known_profiles(names: list[str]) -> list[str]:
    from pipelines.core.features import PROFILES  # imported here: it brings torch, which ingest never needs

    for name in names:
        PROFILES.get(name)  # unknown name → an error listing the valid ones
    if len(set(names)) != len(names):
        raise ValueError(f"profiles are listed twice: {names}")
    return names


class ShardConfig(StrictModel):
    """The shard stage (pipelines/shard/job.py, docs/shards.md)."""

    profiles: Annotated[list[str], AfterValidator(_known_profiles)] = Field(["audioldm"], min_length=1)
    audio: bool = True  # put the cached FLAC into each sample (`flac` member)
    frames: bool = True  # put the clip's video frames into each sample (`frame_NN.jpg`)
    max_samples: int = Field(1000, ge=1)
    max_bytes: int = Field(1_000_000_000, ge=1_000_000)  # a shard never exceeds this
    default_split: Literal["train", "valid", "test"] = "train"  # for clips whose manifest names none
