"""The figures of the caption-quality report (report.json, schema t2a.report/1), streamed from disk.

    <output>/status/<run_id>.parquet              availability, and clip id → source (latest run)
    <output>/annotations/annotations.parquet      scores, selection, captions (read in batches, twice)
    <output>/clips/<bb>/<clip_id>/clip.json       labels (and the source where the status lacks it)
    <output>/{ingest,annotate}.config.json, shards/index.json, status summary    provenance

The annotations are read in two passes of `batch_rows` rows: the first aggregates every figure, the
second fetches what only the first could decide (the listening sample's quantile strata, the texts of
the most repeated captions). Memory holds histograms, small heaps and 8-byte hashes (per caption and
per distinct n-gram; per status row for the source lookup), never the rows. The result is exact for
any batch size except the percentiles, which are read off histograms (see stats.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pipelines.annotate.prompts.config import SelectionConfig
from pipelines.annotate.store import TABLE, AnnotationStore
from pipelines.core.licences import clip_licence
from pipelines.core.ontology import load_ontology
from pipelines.core.records import ClipRecord
from pipelines.ingest.cache import ClipCache
from pipelines.ingest.status import latest_run, reason_key, status_path
from pipelines.qc.config import QualityConfig
from pipelines.report import verdict
from pipelines.report.distillation import counterfactual_selection, judge_keys, without_keep_human
from pipelines.report.listening import Listening
from pipelines.report.provenance import annotate_provenance, clean, provenance, shards_index
from pipelines.report.section import ClipFacts, Section
from pipelines.report.text import (
    ClassNames,
    artefacts,
    hash8,
    mentions,
    near_key,
    ngram_hashes,
    sort_key,
    word_hash,
    words,
)

SCHEMA = "t2a.report/1"
DEFAULT_MASK = "[MASK]"  # pipelines.annotate.prompts.config.PromptConfig's default, when no row records its prompts
_STATUS_COLUMNS = ["source", "manifest", "clip_id", "source_id", "status", "reason", "rows"]


class ReportError(ValueError):
    """An output folder the report cannot be built from; the message says which stage to run."""


def collect(
    output: Path,
    corpus_name: str,
    config_hash: str,
    threshold: float,
    listening_per_stratum: int = 2,
    quantiles: int = 4,
    batch_rows: int = 8192,
    quality: QualityConfig | None = None,
) -> dict[str, Any]:
    """report.json's dict for the corpus whose outputs are in `output`."""
    output = Path(output)
    table = AnnotationStore(output).root / TABLE
    if not table.is_file():
        raise ReportError(f"{table} not found: run `t2a annotate` for corpus {corpus_name!r} before `t2a report`")
    run_id = latest_run(output)
    totals, sources = Section(threshold), {}

    def section(source: str) -> Section:
        if source not in sources:
            sources[source] = Section(threshold)
        return sources[source]

    lookup, manifests = _read_status(output, run_id, totals, section, batch_rows)
    parquet = pq.ParquetFile(table)
    annotate = annotate_provenance(parquet, batch_rows)
    rows = Annotations(
        output, parquet, lookup, (annotate.get("prompts") or {}).get("mask_token") or DEFAULT_MASK, batch_rows
    )
    rows.selection = counterfactual_selection(annotate.get("selection"), threshold)
    listening = Listening(listening_per_stratum, quantiles)
    for source, clip, _ in rows.read(full=True):
        totals.add(clip)
        section(source).add(clip)
        if clip.status == "ok":
            listening.observe(source, clip)
    listening.plan([h for h, _ in totals.exact.most_repeated(3)])
    wanted = totals.wanted_texts().union(*(s.wanted_texts() for s in sources.values()))
    texts = {}
    for source, clip, row in rows.read(full=False):
        if clip.status == "ok":
            listening.offer(source, clip, row)
            if clip.exact in wanted:
                texts.setdefault(clip.exact, clip.caption)
    for part in (totals, *sources.values()):
        part.texts = texts
    report = {
        "schema": SCHEMA,
        "corpus": corpus_name,
        "generated_from": {
            "annotations_rows": rows.count,
            "status_run": run_id,
            "shards_index": shards_index(output) is not None,
        },
        "provenance": provenance(output, config_hash, run_id, manifests, annotate, threshold),
        "totals": totals.summary(),
        "sources": {name: sources[name].summary() for name in sorted(sources)},
        "listening": listening.rows(rows.describe),
    }
    report["quality"] = verdict.quality(output, quality or QualityConfig())
    report["licences"] = verdict.licences(totals.licences, totals.unread_licences, output)
    report["review"] = verdict.review(output)
    report["verdict"] = verdict.verdict(clean(report), threshold)
    return clean(report)


class SourceLookup:
    """clip id → source of the clips the ingest run kept, as sorted 8-byte hashes (10 bytes a clip)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.hashes: list[int] = []
        self.index: list[int] = []

    def add(self, clip_id: str, source: str) -> None:
        if source not in self.names:
            self.names.append(source)
        self.hashes.append(hash8(clip_id))
        self.index.append(self.names.index(source))

    def freeze(self) -> SourceLookup:
        order = np.argsort(np.asarray(self.hashes, dtype=np.uint64), kind="stable")
        self.keys = np.asarray(self.hashes, dtype=np.uint64)[order]
        self.values = np.asarray(self.index, dtype=np.uint16)[order]
        self.hashes, self.index = [], []
        return self

    def get(self, clip_ids: list[str]) -> list[str | None]:
        if not len(self.keys):
            return [None] * len(clip_ids)
        wanted = np.asarray([hash8(c) for c in clip_ids], dtype=np.uint64)
        at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        found = self.keys[at] == wanted
        return [self.names[v] if ok else None for v, ok in zip(self.values[at], found)]


def _read_status(
    output: Path, run_id: str | None, totals: Section, section: Any, batch_rows: int
) -> tuple[SourceLookup, list[str]]:
    """Availability into the sections; the clip id → source lookup; the manifests the run read."""
    lookup, manifests = SourceLookup(), set()
    path = status_path(output, run_id) if run_id else None
    if path is None or not path.is_file():
        return lookup.freeze(), []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=_STATUS_COLUMNS):
        for row in batch.to_pylist():
            status, rows = row["status"], int(row["rows"] or 1)
            reason = (
                reason_key(row["reason"] or "", row["clip_id"], row["source_id"])
                if status not in ("ok", "cached")
                else ""
            )
            totals.add_status(status, reason, rows)
            section(row["source"]).add_status(status, reason, rows)
            manifests.add(row["manifest"] or "")
            if row["clip_id"] and status in ("ok", "cached"):
                lookup.add(row["clip_id"], row["source"])
    return lookup.freeze(), sorted(m for m in manifests if m)


class Annotations:
    """The annotation table's rows, streamed, each with its source and its ClipFacts."""

    def __init__(self, output: Path, parquet: pq.ParquetFile, lookup: SourceLookup, mask_token: str, batch_rows: int):
        self.cache = ClipCache(output)
        self.parquet, self.lookup, self.mask_token, self.batch_rows = parquet, lookup, mask_token, batch_rows
        ontology = load_ontology()
        self.class_names = ClassNames(ontology, _all_mids(ontology))
        self.has_chance = "chance_score" in parquet.schema_arrow.names
        self.selection: SelectionConfig | None = None  # keep_human off: the distillation counterfactual
        self.count = 0

    def read(self, full: bool) -> Iterator[tuple[str, ClipFacts, dict[str, Any]]]:
        """(source, facts, row) per row; `full` adds what reading clip.json and the text analysis give."""
        self.count = 0
        columns = [c for c in self.parquet.schema_arrow.names if c not in ("clip_digest", "settings_hash")]
        for batch in self.parquet.iter_batches(batch_size=self.batch_rows, columns=columns):
            has_provenance = "provenance" in batch.schema.names
            judges = judge_keys(batch.column("provenance")) if has_provenance else ["unknown"] * batch.num_rows
            rows = batch.select([c for c in batch.schema.names if c != "provenance"]).to_pylist()
            self.count += len(rows)
            for row, source, judge in zip(rows, self.lookup.get([r["clip_id"] for r in rows]), judges):
                entry = self.entry(row["clip_id"]) if (full and row["status"] == "ok") or source is None else None
                source = source or (entry.source if entry else None) or "unknown"
                yield source, self.facts(row, entry, full, judge), row

    def entry(self, clip_id: str) -> ClipRecord | None:
        try:
            return self.cache.read_entry(clip_id)
        except (OSError, ValueError):
            return None  # a clip annotated but since removed from the cache: no labels to check

    def facts(self, row: dict[str, Any], entry: ClipRecord | None, full: bool, judge: str = "unknown") -> ClipFacts:
        status, reason = row["status"], row["reason"] or ""
        plain = status == "ok" and not reason.startswith("fallback")
        candidates = [(c["expert"], c["clap_score"]) for c in row["candidates"] or []]
        finite = [score for _, score in candidates if score is not None and math.isfinite(score)]
        caption = row["selected_caption"] if status == "ok" else None
        clip = ClipFacts(
            clip_id=row["clip_id"],
            key=sort_key(row["clip_id"]),
            status=status,
            reason=None if plain else reason_key(reason, row["clip_id"]),
            candidates=candidates,
            best=max(finite) if finite else None,
            label_score=row["label_score"],
            chance_score=row.get("chance_score") if self.has_chance else None,
            event_count=row["event_count"],
            caption=caption,
            expert=row["selected_expert"],
            score=row["selected_score"],
            exact=hash8(caption) if caption is not None else 0,
            judge=judge,
            without_keep_human=without_keep_human(row, self.selection) if full and self.selection else None,
        )
        if full and caption is not None:
            self._analyse(clip, caption, [label.model_dump() for label in entry.labels] if entry else [])
        if entry is not None:
            clip.licence, clip.licence_raw = clip_licence(entry), entry.licence
        return clip

    def _analyse(self, clip: ClipFacts, caption: str, labels: list[dict]) -> None:
        clip.words = words(caption)
        clip.unigrams = [word_hash(w) for w in clip.words]
        clip.bigrams = ngram_hashes(clip.words, 2)
        clip.near = hash8(near_key(caption))
        clip.artefacts = artefacts(caption, self.mask_token)
        clip.labels = labels
        if labels:
            clip.mentions = mentions(caption, [label["name"] for label in labels])
            clip.named = self.class_names.unlabelled(caption, labels)

    def describe(self, row: dict[str, Any], flags: list[str]) -> dict[str, Any]:
        """A listening-table row (report.json ROW) with the clip cache's audio and frame paths."""
        folder = self.cache.entry_dir(row["clip_id"])
        entry = self.entry(row["clip_id"])
        frames = [str(folder / frame.file) for frame in entry.frames] if entry else []
        return {
            "clip_id": row["clip_id"],
            "source": row["source"],
            "stratum": row["stratum"],
            "selected_caption": row["selected_caption"],
            "selected_expert": row["selected_expert"],
            "selected_score": row["selected_score"],
            "label_text": row["label_text"],
            "labels": [label.name for label in entry.labels] if entry else [],
            "candidates": [
                {"text": c["text"], "expert": c["expert"], "clap_score": c["clap_score"]}
                for c in row["candidates"] or []
            ],
            "event_count": row["event_count"],
            "audio": str(folder / "audio.flac"),
            "frames": frames,
            "flags": flags,
        }


def _all_mids(ontology: Any) -> list[str]:
    return ontology.mids()
