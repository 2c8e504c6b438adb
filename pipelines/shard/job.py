"""The shard job: clip cache → deterministic WebDataset shards, per-shard stats, index.json.

    ListBuckets → ListClips → PlanEntries → KeyBySplit → GroupBySplit → PlanShards → Reshuffle
        → WriteShards → CollectStats → WriteIndex

Clips are assigned to shards by `pipelines.shard.plan` (same inputs and config → same membership
and order); each shard is built by one call, samples streamed in key order through mel extraction
into the deterministic, atomic writer of `pipelines.shard.writer`; `<shard>.stats.json` is written
last. A re-run keeps the committed layout (stats' `clip_ids`; new clips go to few shards), skips
every complete shard whose stats record the planned digest (trusting an untouched tar's size and
mtime, not re-hashing it) and rewrites the rest; a clip whose cache entry is corrupt or missing is a recorded failure and its shard is written
without it. Run with `t2a shard` or `python -m pipelines.shard.job --config … --corpus … [Beam options]`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import numpy as np
import soundfile as sf
from apache_beam.metrics import Metrics

from pipelines.annotate.prompts.labels import label_text
from pipelines.annotate.store import ROW, AnnotationStore
from pipelines.core.beam import pipeline_options
from pipelines.core.config import ConfigError
from pipelines.core.io import StorageFull, find_storage_full, prepare_output, write_json_atomic
from pipelines.core.labels import event_count
from pipelines.core.licences import attribution, clip_licence
from pipelines.core.ontology import load_ontology
from pipelines.core.records import ClipRecord
from pipelines.core.storage import is_remote, location
from pipelines.core.tools import package_version
from pipelines.ingest.cache import ClipCache
from pipelines.ingest.listing import ListCachedClips
from pipelines.qc.policy import quality_reason
from pipelines.qc.store import read_quality
from pipelines.shard import contract
from pipelines.shard.config import ShardConfig
from pipelines.shard.index import read_index, write_indexes
from pipelines.shard.overrides import HUMAN_REVIEW, apply_override, read_overrides
from pipelines.shard.plan import ShardPlan, plan_item, plan_shards
from pipelines.shard.policy import left_out, write_attribution, write_left_out
from pipelines.shard.writer import (
    is_committed,
    is_complete,
    read_stats,
    remove_stale_temps,
    stamp,
    stats_path,
    write_shard,
    write_stats,
)

if TYPE_CHECKING:
    from pipelines.datasets import Corpus

log = logging.getLogger(__name__)
NAMESPACE = "shard"


class SampleError(Exception):
    """A cache entry that cannot become a sample (missing, corrupt, hash mismatch)."""


def settings_hash(config: ShardConfig, audio_only: bool = False) -> str:
    """What, besides the clips, decides a shard's bytes: the shard settings and the code's version."""
    payload = {"shards": config.model_dump(mode="json"), "schema": contract.SCHEMA, "t2a": package_version("t2a")}
    if audio_only:
        payload["annotations"] = False
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


AUDIO_ONLY_DIR = "shards-audio"


def shards_root(corpus: Corpus, audio_only: bool = False) -> Path:
    """`<output>/shards`, or `<output>/shards-audio` for the set written before annotation."""
    return corpus.output / (AUDIO_ONLY_DIR if audio_only else "shards")


def annotated(corpus: Corpus, audio_only: bool) -> bool:
    return corpus.config.annotate is not None and not audio_only


class PlanEntries(beam.DoFn):
    """A clip id → (split, PlanItem) and its attribution, or why it stays out on the `failed` output
    (pipelines/shard/policy.py: annotation, licence, quality, review)."""

    def __init__(self, corpus: Corpus, audio_only: bool = False):
        self.output = corpus.output
        self.config = corpus.config.shards
        self.annotated = annotated(corpus, audio_only)
        self.licences = corpus.config.licences
        self.quality = corpus.config.quality
        self.selection = corpus.config.annotate.selection if corpus.config.annotate else None

    def setup(self) -> None:
        from pipelines.core.features import get_profile

        self.cache = ClipCache(self.output)
        self.store = AnnotationStore(self.output)
        profiles = [get_profile(name) for name in self.config.profiles]
        self.mel_bytes = sum(contract.npy_size((p.n_mels, p.frames), np.float16) for p in profiles)
        # Audio-only shards come before annotate and qc: the quality policy applies once its table exists.
        self.measures = read_quality(self.output) if self.quality.drops() else None
        self.overrides = read_overrides(self.output) if self.annotated else {}

    def process(self, clip_id: str) -> Iterator[Any]:
        try:
            entry = self.cache.read_entry(clip_id)
        except (OSError, ValueError) as error:
            yield self.failed(left_out(clip_id, "clip", f"unreadable clip.json: {error}"))
            return
        split = entry.split or self.config.default_split
        cfg = self.config
        licence = clip_licence(entry)
        annotation = self.annotation(clip_id)
        if isinstance(annotation, dict):
            Metrics.counter(NAMESPACE, "clips_not_annotated").inc()
            yield self.failed({**annotation, "source": entry.source, "licence": licence})
            return
        refused = self.licences.refuses(licence)
        if refused:
            yield self.failed(left_out(clip_id, "licence", refused, source=entry.source, licence=licence))
            return
        if self.measures is not None:
            reason = quality_reason(self.measures.get(clip_id), self.quality)
            if reason:
                yield self.failed(left_out(clip_id, "quality", reason, source=entry.source, licence=licence))
                return
        item = plan_item(entry, split, self.mel_bytes, len(cfg.profiles), cfg.audio, cfg.frames, annotation)
        yield beam.pvalue.TaggedOutput("attribution", {**attribution(entry), "split": split})
        yield split, item

    @staticmethod
    def failed(record: dict[str, Any]) -> beam.pvalue.TaggedOutput:
        Metrics.counter(NAMESPACE, f"left_out_{record['stage']}").inc()
        return beam.pvalue.TaggedOutput("failed", record)

    def annotation(self, clip_id: str) -> tuple[str, int] | dict[str, Any] | None:
        """(sha256, bytes) of the clip's annotation row (and review override); why it stays out when the
        corpus is annotated and this clip is not usable (failed, dropped, missing, rejected by a
        reviewer); None for a corpus without annotations."""
        if not self.annotated:
            return None
        path = self.store.entry_dir(clip_id) / ROW
        row = self.store.read(clip_id)
        if row is None:
            return left_out(clip_id, "annotation", "not annotated (run `t2a annotate` first)")
        if row["status"] != "ok":
            return left_out(clip_id, "annotation", f"annotation {row['status']}: {row.get('reason')}")
        data = path.read_bytes()
        override = self.overrides.get(clip_id)
        if override:
            applied = apply_override(row, override, self.selection)
            if isinstance(applied, str):
                return left_out(clip_id, "review", applied)
            if applied[1] is not None:  # the override (and the policy reselecting) change the sample
                decided = [override, self.selection.model_dump(mode="json")]
                data += json.dumps(decided, sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest(), len(data) + sum(8 * 1024 for _ in row.get("embeddings", {}))


SHARD_NAME = re.compile(r"shard-(\d{6})\.tar")


def committed_layout(folder: Path, settings: str) -> dict[int, list[str]]:
    """Shard number → clip ids, from the stats of one split's committed shards written with these
    settings: the layout a re-run keeps (pipelines/shard/plan.py). Stats of other settings or
    unreadable are no layout: their clips are placed as new. Stats written before they recorded
    `clip_ids` give the tar's keys and the recorded failures instead (read once: the re-run adds them)."""
    layout: dict[int, list[str]] = {}
    folder = location(folder)  # a local folder or an object store's prefix
    for path in sorted(folder.glob(f"shard-*{contract.STATS_SUFFIX}")):
        try:
            stats = contract.decode_json(path.read_bytes())
            match = SHARD_NAME.fullmatch(str(stats.get("shard")))
            if stats.get("settings_hash") != settings or not match or contract.stats_name(match[0]) != path.name:
                continue
            ids = stats.get("clip_ids")
            if not isinstance(ids, list):
                tar = path.with_name(match[0])
                if not is_complete(tar, verify=False):
                    continue
                with tar.open("rb") as handle, tarfile.open(fileobj=handle) as archive:
                    ids = {contract.split_name(name)[0] for name in archive.getnames()}
                ids = sorted(ids | {failure["clip_id"] for failure in stats.get("failures", [])})
        except (OSError, tarfile.TarError, KeyError, TypeError, contract.ContractError):
            continue
        layout[int(match[1])] = [str(clip_id) for clip_id in ids]
    return layout


@dataclass(frozen=True)
class _Split:
    max_samples: int
    max_bytes: int
    settings: str
    root: str

    def __call__(self, item: tuple[str, Any]) -> list[ShardPlan]:
        split, items = item
        previous = committed_layout(location(self.root) / split, self.settings)
        return plan_shards(split, items, self.max_samples, self.max_bytes, self.settings, previous)


class WriteShards(beam.DoFn):
    """A ShardPlan → the shard on disk and its stats (skipped when already complete)."""

    def __init__(self, corpus: Corpus, settings: str, audio_only: bool = False):
        self.output = corpus.output
        self.root = shards_root(corpus, audio_only)
        self.config = corpus.config.shards
        self.settings = settings
        self.corpus_hash = corpus.config_hash
        self.annotated = annotated(corpus, audio_only)
        self.selection = corpus.config.annotate.selection if corpus.config.annotate else None

    def setup(self) -> None:
        import torch

        from pipelines.core.features import MelExtractor, get_profile

        torch.set_num_threads(1)  # one core per worker process: bytes never depend on threading
        self.cache = ClipCache(self.output)
        self.store = AnnotationStore(self.output)
        self.extractors = {name: MelExtractor(get_profile(name)) for name in self.config.profiles}
        self.ontology = load_ontology()
        self.tools = {"t2a": package_version("t2a"), "numpy": np.__version__, "torch": torch.__version__}
        self.overrides = read_overrides(self.output) if self.annotated else {}

    def process(self, plan: ShardPlan) -> Iterator[dict[str, Any]]:
        path = self.root / plan.split / f"{plan.name}.tar"
        done = read_stats(path) if is_committed(path) else {}
        clip_ids = sorted(plan.clip_ids)
        if done.get("plan_digest") == plan.digest:
            Metrics.counter(NAMESPACE, "shards_skipped").inc()
            if done.get("clip_ids") != clip_ids:  # stats written before they recorded the layout
                done = {**done, "clip_ids": clip_ids}
                write_json_atomic(stats_path(path), done)
                stamp(path)
            yield done
            return
        failures: list[dict[str, str]] = []
        info = write_shard(path, self._samples(plan, failures))
        extra = {
            "split": plan.split,
            "plan_digest": plan.digest,
            "settings_hash": self.settings,
            "corpus_config_hash": self.corpus_hash,
            "failures": failures,
            "clip_ids": clip_ids,  # the layout the next run keeps
        }
        Metrics.counter(NAMESPACE, "shards_written").inc()
        Metrics.counter(NAMESPACE, "samples").inc(info.samples)
        yield write_stats(path, info, extra)

    def _samples(self, plan: ShardPlan, failures: list[dict[str, str]]) -> Iterator[tuple[str, dict[str, bytes]]]:
        for clip_id in sorted(plan.clip_ids):  # the writer streams: samples come in key order
            try:
                yield clip_id, self._sample(clip_id, plan.split)
            except SampleError as error:
                Metrics.counter(NAMESPACE, "failed_samples").inc()
                log.warning("clip %s left out of %s/%s: %s", clip_id, plan.split, plan.name, error)
                failures.append({"clip_id": clip_id, "reason": str(error)})

    def _sample(self, clip_id: str, split: str) -> dict[str, bytes]:
        """One sample's members; any problem with the cache entry is a SampleError naming it."""
        try:
            entry = self.cache.read_entry(clip_id)
            flac = self.cache.read_file(entry, "audio.flac")
            audio, rate = sf.read(io.BytesIO(flac), dtype="float32", always_2d=False)
            listed = entry.frames if self.config.frames else []
            frames = [self.cache.read_file(entry, frame.file) for frame in listed]
            mels = self._mels(audio, rate)
            events = event_count(entry.labels, self.ontology)
            kept = flac if self.config.audio else None
            meta = sample_meta(entry, split, mels, self.extractors, kept, len(frames), events, self.tools)
            row = self.store.read(clip_id) if self.annotated else None
            embeddings = self.store.arrays(clip_id, row) if row else {}
            if row:
                applied = apply_override(row, self.overrides.get(clip_id), self.selection)
                if isinstance(applied, str):  # the plan left such clips out; the file changed since
                    raise ValueError(applied)
                row, review = applied
                meta = with_annotation(meta, row, embeddings)
                if review:
                    meta = with_review(meta, review)
            else:  # no pseudo-prompts yet: the label text (AudioLDM §5) still gives label-only clips a caption
                meta = meta.model_copy(update={"label_text": label_text([label.name for label in entry.labels])})
            arrays = {name: mel.astype(np.float16) for name, (mel, _) in mels.items()}
            return contract.build_sample(meta, mels=arrays, audio=kept, frames=frames, arrays=embeddings)
        except (OSError, KeyError, TypeError, ValueError, RuntimeError, sf.LibsndfileError) as error:
            raise SampleError(f"{type(error).__name__}: {error}") from None

    def _mels(self, audio: np.ndarray, rate: int) -> dict[str, tuple[np.ndarray, int]]:
        """Every configured profile's mel; profiles sharing a sample rate share one resampling."""
        resampled: dict[int, np.ndarray] = {}
        mels = {}
        for name, extractor in self.extractors.items():
            target = extractor.profile.sample_rate
            if target not in resampled:
                resampled[target] = extractor.resample(audio, rate)
            mels[name] = extractor.mel(resampled[target])
        return mels


def sample_meta(
    entry: ClipRecord,
    split: str,
    mels: dict[str, tuple[np.ndarray, int]],
    extractors: dict[str, Any],
    flac: bytes | None,
    n_frames: int,
    events: int,
    tools: dict[str, str],
) -> contract.SampleMeta:
    """The sample's JSON (schema t2a.sample/1) from its clip.json record; nothing that varies by run.
    Segment, labels and captions are the record's own models (pipelines.core.records)."""
    profiles = {
        name: contract.MelMeta(
            member=contract.mel_member(name),
            shape=list(mel.shape),
            dtype=contract.MEL_DTYPE,
            sample_rate=extractors[name].profile.sample_rate,
            hop_length=extractors[name].profile.hop_length,
            n_mels=extractors[name].profile.n_mels,
            real_frames=real,
        )
        for name, (mel, real) in mels.items()
    }
    audio = (
        None
        if flac is None
        else contract.AudioMeta(member=contract.AUDIO, sha256=hashlib.sha256(flac).hexdigest(), bytes=len(flac))
    )
    return contract.SampleMeta(
        key=entry.clip_id,
        source=entry.source,
        format=entry.format,
        source_id=entry.source_id,
        segment=entry.segment,
        duration=entry.duration,
        audio_seconds=entry.audio_seconds,
        padded=entry.padded,
        sample_rate=entry.sample_rate,
        labels=entry.labels,
        captions=entry.captions,
        event_count=events,
        split=split,
        licence=entry.licence,
        licence_id=clip_licence(entry),
        meta=entry.meta,
        mels=profiles,
        frames=[contract.frame_member(i) for i in range(n_frames)],
        audio=audio,
        tools={**entry.tools, **tools},
    )


def with_annotation(
    meta: contract.SampleMeta, row: dict[str, Any], embeddings: dict[str, np.ndarray]
) -> contract.SampleMeta:
    """The sample JSON with the clip's annotation row: candidates, selected caption, texts, embeddings."""
    provenance = row.get("provenance", {})
    clip = provenance.get("clip", {})
    models = {"clap_audio": provenance.get("clap", {}), "clip_image": clip, "clip_image_mean": clip}
    arrays = {
        name: contract.ArrayMeta(
            member=contract.embedding_member(name),
            shape=list(array.shape),
            dtype=str(array.dtype),
            model=f"{models[name].get('model', '?')}@{str(models[name].get('sha256', ''))[:12]}",
        )
        for name, array in embeddings.items()
    }
    return meta.model_copy(
        update={
            "candidates": [contract.CandidateMeta(**candidate) for candidate in row["candidates"]],
            "selected_caption": row["selected_caption"],
            "selected_expert": row["selected_expert"],
            "label_text": row["label_text"],
            "mbtg_text": row["mbtg_text"],
            "event_count": row["event_count"],
            "embeddings": arrays,
        }
    )


def with_review(meta: contract.SampleMeta, review: dict[str, Any]) -> contract.SampleMeta:
    """The sample JSON with the human review that changed its caption (pipelines/shard/overrides.py);
    a typed caption also joins the clip's captions, with origin `human-review`."""
    update: dict[str, Any] = {"review": contract.ReviewMeta(**review)}
    if review["action"] == "replaced":
        typed = contract.CaptionMeta(text=meta.selected_caption, origin=HUMAN_REVIEW, kind="human")
        update["captions"] = [*meta.captions, typed]
    return meta.model_copy(update=update)


def write_index(stats: list[dict[str, Any]], corpus: Corpus, settings: str, audio_only: bool = False) -> dict[str, Any]:
    """Remove shards the plan no longer has, then write the split and corpus indexes."""
    root = shards_root(corpus, audio_only)
    planned = {(s["split"], s["shard"]) for s in stats}
    for tar in sorted(root.glob("*/shard-*.tar")):
        if (tar.parent.name, tar.name) not in planned:
            log.info("removing %s: not in the current plan", tar.relative_to(root))
            stats_path(tar).unlink(missing_ok=True)
            tar.unlink()
    for orphan in sorted(root.glob(f"*/shard-*{contract.STATS_SUFFIX}")):  # stats whose tar is gone
        tar = orphan.with_name(orphan.name.removesuffix(contract.STATS_SUFFIX) + ".tar")
        if (tar.parent.name, tar.name) not in planned:
            orphan.unlink()
    return write_indexes(root, stats, corpus.config_hash, list(corpus.config.shards.profiles))


def _left_out(failure: dict[str, str]) -> None:
    """A clip the plan leaves out (unreadable clip.json, failed or dropped annotation): counted and logged."""
    Metrics.counter(NAMESPACE, "clips_left_out").inc()
    log.info("clip %s left out of the shards: %s", failure["clip_id"], failure["reason"])


class Shard(beam.PTransform):
    """A corpus's clip cache → shards on disk; emits the index it wrote.

    `audio_only`: shards without the annotation (no pseudo-prompts or embeddings; captions are the
    human ones and the label text) in `<output>/shards-audio`, for what must train before
    annotate runs: the demo's CLAP (`t2a train clap`), which annotate then scores captions with.
    """

    def __init__(self, corpus: Corpus, audio_only: bool = False):
        super().__init__()
        self.corpus, self.audio_only = corpus, audio_only

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        config = self.corpus.config.shards
        settings = settings_hash(config, self.audio_only)
        root = shards_root(self.corpus, self.audio_only)
        planned = (
            pbegin
            | "ListCachedClips" >> ListCachedClips(self.corpus.output)
            | "PlanEntries"
            >> beam.ParDo(PlanEntries(self.corpus, self.audio_only)).with_outputs("failed", "attribution", main="items")
        )
        _ = planned.failed | "ReportLeftOut" >> beam.Map(_left_out)
        _ = (
            planned.failed
            | "CollectLeftOut" >> beam.combiners.ToList()
            | "WriteLeftOut" >> beam.Map(write_left_out, root)
        )
        stats = (
            planned.items
            | "GroupBySplit" >> beam.GroupByKey()
            | "PlanShards" >> beam.FlatMap(_Split(config.max_samples, config.max_bytes, settings, str(root)))
            | "SpreadShards" >> beam.Reshuffle()
            | "WriteShards" >> beam.ParDo(WriteShards(self.corpus, settings, self.audio_only))
            | "CollectStats" >> beam.combiners.ToList()
        )
        _ = (
            planned.attribution
            | "CollectAttribution" >> beam.combiners.ToList()
            | "WriteAttribution" >> beam.Map(write_attribution, beam.pvalue.AsSingleton(stats), root)
        )
        return stats | "WriteIndex" >> beam.Map(write_index, self.corpus, settings, self.audio_only)


def run(corpus: Corpus, *, audio_only: bool = False, beam_args: Sequence[str] = ()) -> dict[str, Any]:
    """Run the shard job; returns the corpus index it wrote. `audio_only`: shards without annotations,
    in <output>/shards-audio; `beam_args`: Beam pipeline options.

    A full (or read-only) disk raises `StorageFull`: one message, the shards already committed are
    kept, and the same command writes the rest once there is space."""
    root = shards_root(corpus, audio_only)
    if not audio_only and corpus.config.quality.drops() and read_quality(corpus.output) is None:
        raise ConfigError(
            f"corpus {corpus.name!r} has a `quality:` policy but no measures under {corpus.output / 'quality'}: "
            "run `t2a qc` first"
        )
    try:
        read_overrides(corpus.output)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    try:
        return _run(corpus, audio_only, beam_args, root)
    except Exception as error:
        full = find_storage_full(error, root)
        if full is None:
            raise
        log.debug("storage error, as the runner reported it", exc_info=True)
        raise StorageFull(root, full.problem) from None


def _run(corpus: Corpus, audio_only: bool, beam_args: Sequence[str], root: Path) -> dict[str, Any]:
    prepare_output(root, "the shards folder")
    for folder in () if is_remote(root) else (root, *root.glob("*/")):
        if folder.is_dir():
            remove_stale_temps(folder)  # what a killed run left half-written (an object store has no temporaries)
    corpus.save_resolved("shard-audio" if audio_only else "shard")
    with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
        _ = pipeline | "Shard" >> Shard(corpus, audio_only)
    index = root / contract.INDEX_NAME
    if not index.is_file():  # a worker wrote it, to an `output` this machine does not see
        raise ConfigError(
            f"the run finished but its index {index} is not on this machine: the workers wrote `output` "
            "somewhere the launcher cannot see. On a cluster, `output` must be a folder the launcher and every "
            "worker share (docs/runners.md)"
        )
    return read_index(index)
