"""datasets.yaml: the typed, validated definition of every corpus, assembled from each stage's block
(ingest: sources, media, exclude; annotate: annotate; shard: shards).

    corpora:
      <name>:
        output: data/<name>            # clips/, failures/, status/ (later shards/, report/); or s3://…, gs://…
        sources: [<source>, ...]       # each: name, format (+ its files), fetch: {backend, ...}
        media: {sample_rate, frames, frame_size, max_duration, timeout}
        exclude: [<source without fetch> | {ids: file}, ...]
        annotate: {device, clap, clip, prompts, captioning, retrieval, selection, silence_db}
        shards: {profiles, audio, frames, max_samples, max_bytes, default_split}
        quality: {min_bandwidth_hz, max_clipping, …, drop_near_duplicates, leakage_reference}   (t2a qc)
        licences: {allow: [CC0-1.0, CC-BY-4.0, …]}

Validation happens at start-up and fails with one message listing every problem by key path
(`corpora.demo.sources[0].fetch.backend: ...`) — never a traceback. The resolved configuration
(absolute paths, defaults filled in) is saved next to the outputs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from pipelines.annotate.config import AnnotateConfig
from pipelines.core.config import (
    ConfigError,
    MediaConfig,
    Name,
    OutputDir,
    StrictModel,
    format_validation_error,
    load_yaml,
)
from pipelines.core.io import write_json_atomic
from pipelines.core.licences import LicencePolicy
from pipelines.core.redact import redact_values
from pipelines.core.storage import ObjectPath, is_remote
from pipelines.ingest.config import Exclusion
from pipelines.ingest.fetch import BACKENDS
from pipelines.ingest.fetch.configs import secret_params
from pipelines.ingest.manifests import FORMATS, SourceConfig
from pipelines.qc.config import QualityConfig
from pipelines.shard.config import ShardConfig

DEFAULT_CORPUS = "demo"


class CorpusConfig(StrictModel):
    output: OutputDir
    sources: list[SourceConfig] = Field(min_length=1)
    media: MediaConfig = MediaConfig()
    annotate: AnnotateConfig | None = None  # no block: `t2a annotate` refuses, shards carry no annotations
    shards: ShardConfig = ShardConfig()
    quality: QualityConfig = QualityConfig()  # `t2a qc`'s settings and the policy shard applies to its measures
    licences: LicencePolicy = LicencePolicy()  # which licence ids may go into the shards (all, by default)
    # Clips whose clip id or source id appears here are kept out (AudioCaps/Clotho evaluation
    # sets out of a training corpus). A manifest excludes whole source ids: every segment of a
    # YouTube video whose one segment is an evaluation clip.
    exclude: list[Exclusion] = []

    @model_validator(mode="after")
    def _sources_are_fetchable(self) -> CorpusConfig:
        names = [source.name for source in self.sources]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicated)}")
        missing = [f"sources[{i}] ({s.name})" for i, s in enumerate(self.sources) if s.fetch is None]
        if missing:
            raise ValueError(f"{', '.join(missing)}: a `fetch:` block is required (backend: youtube | http | local)")
        return self


class DatasetsConfig(StrictModel):
    corpora: dict[Name, CorpusConfig] = Field(min_length=1)


@dataclass(frozen=True)
class Corpus:
    """One corpus of a loaded config, with what its outputs record about where it came from."""

    name: str
    config: CorpusConfig
    config_path: Path
    config_hash: str  # sha256 of the corpus block as written: the same on every machine

    @property
    def output(self) -> Path | ObjectPath:
        """A local folder, or an object store location (s3://, gs://, any fsspec URL: pipelines.core.storage)."""
        return self.config.output

    def local_output(self, command: str) -> Path:
        """The output of a command that works on local disk only; an object store is one ConfigError."""
        if is_remote(self.output):
            raise ConfigError(
                f"{command} works on a local corpus only, and corpus {self.name!r} is at {self.output}: "
                "copy it to a local folder (e.g. `aws s3 sync`) and point `output` at that copy"
            )
        return self.output

    def save_resolved(self, stage: str) -> Path:
        """Write the resolved configuration next to the outputs: `<output>/<stage>.config.json`."""
        path = self.output / f"{stage}.config.json"
        secrets = {name for source in self.config.sources for name in secret_params(source.fetch)}
        payload = {
            "corpus": self.name,
            "config_file": str(self.config_path),
            "config_hash": self.config_hash,
            # A url_template may carry a signature: the saved copy does not.
            "resolved": redact_values(self.config.model_dump(mode="json"), sorted(secrets)),
        }
        write_json_atomic(path, payload)
        return path


def load_config(path: str | Path) -> tuple[DatasetsConfig, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = load_yaml(path)  # a corpus (or any key) given twice is an error, not last-one-wins
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a `corpora:` key")
    try:
        config = DatasetsConfig.model_validate(raw, context={"base_dir": path.parent.absolute()})
    except ValidationError as error:
        choices = {"format": FORMATS.names(), "backend": BACKENDS.names()}
        raise ConfigError(format_validation_error(error, raw, str(path), choices)) from None
    return config, raw


def load_corpus(path: str | Path, name: str = DEFAULT_CORPUS) -> Corpus:
    config, raw = load_config(path)
    if name not in config.corpora:
        raise ConfigError(f"{path}: unknown corpus {name!r}; valid corpora: {', '.join(sorted(config.corpora))}")
    block = json.dumps(raw["corpora"][name], sort_keys=True, default=str)
    digest = hashlib.sha256(block.encode()).hexdigest()
    return Corpus(name, config.corpora[name], Path(path).absolute(), digest)
