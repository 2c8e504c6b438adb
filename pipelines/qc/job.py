"""`t2a qc`: clip cache (+ CLAP audio embeddings) → per-clip quality measures, near-duplicate groups,
evaluation leakage → <output>/quality/ (docs/qc.md).

    ListCachedClips → MeasureClips (Beam: decode, measure, write one JSON per clip; skip current ones)
    then, on the driver: the near-duplicate search over every clip's CLAP audio embedding
    (annotation store) and the leakage search against `quality.leakage_reference` → quality.parquet

Audio never leaves the worker that decoded it; only small dicts are collected.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import numpy as np
import soundfile as sf
from apache_beam.metrics import Metrics

from pipelines.annotate.store import AnnotationStore, clip_digest
from pipelines.core.beam import pipeline_options
from pipelines.core.config import ConfigError
from pipelines.core.features import to_mono
from pipelines.ingest.cache import ClipCache
from pipelines.ingest.listing import ListCachedClips
from pipelines.qc import duplicates
from pipelines.qc.config import QualityConfig
from pipelines.qc.measures import MEASURES, MEASURES_VERSION, measure
from pipelines.qc.store import QualityStore

if TYPE_CHECKING:
    from pipelines.datasets import Corpus

log = logging.getLogger(__name__)
NAMESPACE = "qc"


class MeasureClips(beam.DoFn):
    """A clip id → its quality row (measured now, or read when current); failures are rows too."""

    def __init__(self, output: Path, speech: bool):
        self.output, self.speech = output, speech

    def setup(self) -> None:
        self.cache = ClipCache(self.output)
        self.store = QualityStore(self.output)
        self.detector = None
        if self.speech:
            from pipelines.qc.vad import SpeechDetector

            self.detector = SpeechDetector()

    def process(self, clip_id: str) -> Iterator[dict[str, Any]]:
        digest = clip_digest(self.cache.entry_dir(clip_id))
        done = self.store.read(clip_id)
        wanted = {"clip_digest": digest, "version": MEASURES_VERSION, "speech_measured": self.speech}
        if done and all(done.get(k) == v for k, v in wanted.items()):
            Metrics.counter(NAMESPACE, "clips_skipped").inc()
            yield done
            return
        row = {"clip_id": clip_id, **wanted, **self._measure(clip_id)}
        self.store.write(row)
        Metrics.counter(NAMESPACE, "clips_measured").inc()
        yield row

    def _measure(self, clip_id: str) -> dict[str, Any]:
        try:
            entry = self.cache.read_entry(clip_id)
            audio, rate = sf.read(io.BytesIO(self.cache.read_file(entry, "audio.flac")), dtype="float32")
            audio = to_mono(audio)
            # The padding ingest adds to a short clip is not the recording's: measure the true duration.
            audio = audio[: max(int(round(entry.duration * rate)), 1)]
            values = measure(audio, rate, self.detector)
            return {"source": entry.source, "status": "ok", "reason": None, "duration": entry.duration, **values}
        except (OSError, ValueError, RuntimeError, KeyError, sf.LibsndfileError) as error:
            Metrics.counter(NAMESPACE, "clips_failed").inc()
            return {"source": None, "status": "failed", "reason": f"{type(error).__name__}: {error}"}


def load_embeddings(output: Path, clip_ids: Sequence[str]) -> tuple[list[str], np.ndarray, str | None]:
    """(ids that have one, [N, D] CLAP audio embeddings, the CLAP's sha256) from an annotation store."""
    store = AnnotationStore(output)
    ids, vectors, model = [], [], None
    for clip_id in clip_ids:
        row = store.read(clip_id)
        if not row or "clap_audio" not in row.get("embeddings", {}):
            continue
        try:
            vectors.append(np.asarray(store.arrays(clip_id, row)["clap_audio"], dtype=np.float32).reshape(-1))
        except (OSError, ValueError) as error:
            log.warning("%s: no CLAP embedding for the near-duplicate search: %s", clip_id, error)
            continue
        ids.append(clip_id)
        model = model or ((row.get("provenance") or {}).get("clap") or {}).get("sha256")
    dim = vectors[0].shape[0] if vectors else 0
    return ids, (np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)), model


def reference_embeddings(folders: Sequence[Path], model: str | None) -> tuple[list[str], np.ndarray]:
    """The leakage references' CLAP audio embeddings; they must come from the same CLAP as the corpus's."""
    ids: list[str] = []
    arrays = []
    for folder in folders:
        store = AnnotationStore(folder)
        listed = sorted(p.name for p in store.clips.glob("*/*") if p.is_dir() and len(p.parent.name) == 2)
        ref_ids, vectors, ref_model = load_embeddings(folder, listed)
        if not ref_ids:
            raise ConfigError(f"quality.leakage_reference {folder}: no annotated clips with CLAP audio embeddings")
        if model and ref_model and ref_model != model:
            raise ConfigError(
                f"quality.leakage_reference {folder}: its embeddings come from another CLAP "
                f"({ref_model[:12]} ≠ {model[:12]}); annotate it with the corpus's CLAP"
            )
        ids += [f"{folder.name}:{clip_id}" for clip_id in ref_ids]
        arrays.append(vectors)
    return ids, (np.concatenate(arrays) if arrays else np.zeros((0, 0), np.float32))


def search(output: Path, rows: list[dict[str, Any]], config: QualityConfig) -> dict[str, Any]:
    """Adds duplicate_of / duplicate_group_size / leaked_of / leak_score to the rows; returns counts."""
    by_id = {row["clip_id"]: row for row in rows}
    ids, vectors, model = load_embeddings(output, sorted(by_id))
    keepers = duplicates.groups(ids, duplicates.near_pairs(vectors, config.near_duplicate_threshold)) if ids else {}
    sizes = Counter(keepers.values())
    for clip_id, keeper in keepers.items():
        by_id[clip_id].update(duplicate_of=keeper, duplicate_group_size=sizes[keeper])
    leaked = {}
    if config.leakage_reference and ids:
        ref_ids, reference = reference_embeddings(config.leakage_reference, model)
        leaked = duplicates.leaks(vectors, reference, ref_ids, config.near_duplicate_threshold)
        for index, (ref_id, score) in leaked.items():
            by_id[ids[index]].update(leaked_of=ref_id, leak_score=score)
    return {
        "embedded_clips": len(ids),
        "clap_sha256": model,
        "near_duplicate_threshold": config.near_duplicate_threshold,
        "near_duplicate_groups": len(sizes),
        "near_duplicate_clips": len(keepers),
        "leakage_references": [str(p) for p in config.leakage_reference],
        "leaked_clips": len(leaked),
    }


def run(corpus: Corpus, *, beam_args: Sequence[str] = ()) -> dict[str, Any]:
    """Measure every cached clip, search near-duplicates and leakage; returns summary.json's dict."""
    config = corpus.config.quality
    cache = ClipCache(corpus.output)
    if not cache.clips.is_dir():
        raise ConfigError(f"no clip cache under {cache.clips}: run `t2a ingest` for corpus {corpus.name!r} first")
    corpus.save_resolved("qc")
    store = QualityStore(corpus.output)
    with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
        _ = (
            pipeline
            | "ListCachedClips" >> ListCachedClips(corpus.output)
            | "MeasureClips" >> beam.ParDo(MeasureClips(corpus.output, config.speech))
        )
    rows = [row for row in (store.read(clip_id) for clip_id in cache.entries()) if row]
    for row in rows:
        row.update(duplicate_of=None, duplicate_group_size=None, leaked_of=None, leak_score=None)
    found = search(corpus.output, [r for r in rows if r["status"] == "ok"], config)
    summary = {
        "clips": len(rows),
        "failed": sum(row["status"] != "ok" for row in rows),
        "measures": list(MEASURES),
        "measures_version": MEASURES_VERSION,
        "speech_measured": config.speech,
        **found,
    }
    summary["digest"] = hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()
    store.write_table(rows, summary)
    return summary
