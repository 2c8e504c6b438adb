"""The annotate job: clip cache → CLAP/CLIP embeddings, caption candidates, CLAP-selected captions.

    ListCachedClips → SkipAnnotated → ReadClips ─┬─ windows ─→ RunInference(CLAP audio) → PoolWindows ─┐
                                                 ├─ frames ──→ RunInference(CLIP image) → StackFrames ─┤
                                                 ├─ audio ───→ RunInference(captioner) ────────────────┤
                                                 └─ info ──────────────────────────────────────────────┤
    ListCachedClips → ReadBankCaptions → BuildCaptionBank (side input) ─→ ProposeCandidates ◄──────────┘
        → RunInference(CLAP text) → SelectCaptions → WriteAnnotations → WriteTable

Pseudo-prompts follow Make-An-Audio (§3.2.1, App. E.2): candidates from experts — the
captioning model, CLAP retrieval from a caption bank, the clip's human captions, its cleaned source
text and its label text — each scored by CLAP text-audio cosine; the best one above the threshold is
selected, else a fallback (label text, MBTG text (Diffsound §IV-C) or drop). Audio never
crosses a shuffle: every RunInference that takes media is fused with the step that decoded it, and
only embeddings and texts are grouped. Each clip ends as one row in `pipelines.annotate.store`; a re-run
skips clips whose row is current and retries failures. Run with `t2a annotate` or
`python -m pipelines.annotate.job --config … --corpus … [--device cuda] [Beam options]`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import numpy as np
import soundfile as sf
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference

from pipelines.annotate.config import AnnotateConfig
from pipelines.annotate.store import SCHEMA, AnnotationStore, clip_digest
from pipelines.core.beam import pipeline_options
from pipelines.core.config import ConfigError
from pipelines.core.records import ClipRecord
from pipelines.core.tools import package_version
from pipelines.ingest.cache import ClipCache
from pipelines.ingest.listing import ListCachedClips

if TYPE_CHECKING:
    from pipelines.datasets import Corpus

log = logging.getLogger(__name__)
NAMESPACE = "annotate"
CLAP_RATE = 48000  # both CLAP backends take 48 kHz (docs/ARCHITECTURE.md, "Contracts": the clip cache's rate)


def settings_hash(config: AnnotateConfig, provenance: dict[str, Any]) -> str:
    """What, besides the clip, decides an annotation: the settings, the models' checksums, the code's version."""
    payload = {
        "annotate": config.model_dump(mode="json", exclude={"device"}),
        "models": provenance,
        "schema": SCHEMA,
        "t2a": package_version("t2a"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def model_provenance(config: AnnotateConfig) -> dict[str, Any]:
    """Paths, checksums and versions of every configured model, without loading one."""
    from pipelines.annotate.encoders import clap_provenance, clip_provenance
    from pipelines.annotate.prompts.experts import captioner_provenance

    provenance: dict[str, Any] = {"clap": clap_provenance(config.clap)}
    if config.clip:
        provenance["clip"] = clip_provenance(config.clip)
    if config.captioning:
        provenance["captioning"] = captioner_provenance(config.captioning)
    return provenance


def retrieval_provenance(config: AnnotateConfig, models: dict[str, Any]) -> dict[str, Any] | None:
    """The retrieval expert's settings and which model ranked the bank by which score (Make-An-Audio §3.2.1:
    the paper's retrieval model is not the CLAP that judges). `judge` is true when the ranking is the judge's
    own CLAP audio–text score (`query: audio`); the report splits its retrieval figures by it."""
    if not config.retrieval:
        return None
    query = config.retrieval.query
    clap = models.get("clap") or {}
    return {
        **config.retrieval.model_dump(mode="json"),
        "model": clap.get("model"),
        "sha256": clap.get("sha256"),
        "score": "clap_audio_text" if query == "audio" else "clap_text_text",
        "judge": query == "audio",
    }


def run_provenance(config: AnnotateConfig, models: dict[str, Any] | None = None) -> dict[str, Any]:
    """What every row records beside the models: the selection rule, the seeds, the retrieval ranking, the tool
    versions."""
    captioning = config.captioning
    return {
        "selection": config.selection.model_dump(mode="json"),
        "prompts": config.prompts.model_dump(mode="json"),
        "seeds": {
            "mbtg": "sha256(clip_id)",
            "captioning": captioning.seed if captioning and captioning.do_sample else None,
        },
        "retrieval": retrieval_provenance(config, models or {}),
        "tools": {
            name: package_version(name) for name in ("t2a", "torch", "transformers", "laion-clap", "apache-beam")
        },
    }


class SkipAnnotated(beam.DoFn):
    """A clip id → itself when it needs annotating; on `done`, (id, status) of a current row."""

    def __init__(self, output: Path, settings: str):
        self.output = output
        self.settings = settings

    def setup(self) -> None:
        self.cache = ClipCache(self.output)
        self.store = AnnotationStore(self.output)

    def process(self, clip_id: str) -> Iterator[Any]:
        row = self.store.is_done(clip_id, self.settings, clip_digest(self.cache.entry_dir(clip_id)))
        if row:
            Metrics.counter(NAMESPACE, "clips_skipped").inc()
            yield beam.pvalue.TaggedOutput("done", (clip_id, row["status"]))
        else:
            yield clip_id


class ReadClips(beam.DoFn):
    """A clip id → its info, its CLAP windows, its frames and its audio for the captioner (tagged
    outputs, fused with the RunInference that consumes each), or a failure on `failed`."""

    def __init__(self, output: Path, config: AnnotateConfig):
        self.output = output
        self.config = config

    def setup(self) -> None:
        from pipelines.core.ontology import load_ontology

        self.cache = ClipCache(self.output)
        self.ontology = load_ontology()
        self.window = round(self.config.clap.window_seconds * CLAP_RATE)

    def process(self, clip_id: str) -> Iterator[Any]:
        try:
            entry, audio, rate, frames = self._read(clip_id)
        except ClipError as error:
            Metrics.counter(NAMESPACE, "clips_failed").inc()
            yield beam.pvalue.TaggedOutput("failed", (clip_id, str(error)))
        else:
            yield from self._parts(clip_id, entry, audio, rate, frames)

    def _parts(
        self, clip_id: str, entry: ClipRecord, audio: np.ndarray, rate: int, frames: list[bytes]
    ) -> Iterator[Any]:
        from pipelines.annotate.encoders import audio_windows
        from pipelines.annotate.prompts.candidates import clip_info
        from pipelines.core.labels import event_count

        windows = audio_windows(audio, rate, CLAP_RATE, self.window)
        digest = clip_digest(self.cache.entry_dir(clip_id))
        events = event_count(entry.labels, self.ontology)
        yield clip_info(entry, digest, events, len(windows), len(frames), self.config.prompts)
        for index, window in enumerate(windows):
            yield beam.pvalue.TaggedOutput("windows", ((clip_id, index), window))
        for index, jpeg in enumerate(frames):
            yield beam.pvalue.TaggedOutput("frames", ((clip_id, index), jpeg))
        if self.config.captioning:
            yield beam.pvalue.TaggedOutput("audio", (clip_id, (clip_id, _at_rate(audio, rate))))

    def _read(self, clip_id: str) -> tuple[ClipRecord, np.ndarray, int, list[bytes]]:
        try:
            entry = self.cache.read_entry(clip_id)
            audio, rate = sf.read(
                io.BytesIO(self.cache.read_file(entry, "audio.flac")), dtype="float32", always_2d=True
            )
            frames = [self.cache.read_file(entry, frame.file) for frame in entry.frames] if self.config.clip else []
        except (OSError, ValueError, sf.LibsndfileError) as error:
            raise ClipError(f"unreadable cache entry: {type(error).__name__}: {error}") from None
        audio = audio.mean(axis=1, dtype=np.float32)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        level = 20 * np.log10(peak) if peak > 0 else -np.inf
        if not audio.size or level < self.config.silence_db:
            raise ClipError(f"silent audio: peak {level:.1f} dBFS is below silence_db {self.config.silence_db:g} dBFS")
        return entry, audio, int(rate), frames


class ClipError(Exception):
    """A clip that cannot be annotated (corrupt, silent); it becomes a failed row."""


def _at_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    """The captioner's input: the clip at CLAP's rate (the handler resamples to its own)."""
    if rate == CLAP_RATE:
        return audio
    import soxr

    from pipelines.core.features import RESAMPLE_QUALITY

    return soxr.resample(audio, rate, CLAP_RATE, quality=RESAMPLE_QUALITY).astype(np.float32)


def _value(prediction: Any) -> Any:
    return prediction.inference if isinstance(prediction, PredictionResult) else prediction


def _by_clip(item: tuple[tuple[str, int], Any]) -> tuple[str, tuple[int, Any]]:
    (clip_id, index), prediction = item
    return clip_id, (index, np.asarray(_value(prediction), dtype=np.float32))


def _stack(item: tuple[str, Iterable[tuple[int, np.ndarray]]]) -> tuple[str, np.ndarray]:
    clip_id, parts = item
    return clip_id, np.stack([array for _, array in sorted(parts, key=lambda part: part[0])])


def _pool(item: tuple[str, Iterable[tuple[int, np.ndarray]]]) -> tuple[str, np.ndarray]:
    from pipelines.annotate.encoders import pool_windows

    clip_id, stacked = _stack(item)
    return clip_id, pool_windows(stacked)


def _bank_captions(clip_id: str, output: Path) -> Iterator[tuple[str, str]]:
    """("caption", human caption) for the bank; ("label", label text) for the label-text queries."""
    from pipelines.annotate.prompts.labels import label_text

    entry = ClipCache(output).read_entry(clip_id)
    yield from (("caption", c.text) for c in entry.captions if c.kind == "human")
    label = label_text(tuple(label.name for label in entry.labels))
    if label:
        yield "label", label


class BuildCaptionBank(beam.DoFn):
    """Every human caption of the corpus (+ bank files) → the retrieval expert's bank, cached by checksum.
    The CLAP text model is only loaded when the cache misses."""

    def __init__(self, output: Path, config: AnnotateConfig, device: str):
        self.output = output
        self.config = config
        self.device = device

    def process(self, items: list[tuple[str, str]]) -> Iterator[Any]:
        from pipelines.annotate.prompts.retrieval import bank_texts, load_or_build_bank

        assert self.config.retrieval is not None
        clap, cache = _LazyClap(self.config, self.device), AnnotationStore(self.output).banks
        texts = bank_texts([text for kind, text in items if kind == "caption"], self.config.retrieval.bank_files)
        bank = load_or_build_bank(texts, clap, cache)
        Metrics.counter(NAMESPACE, "bank_captions").inc(len(bank.texts))
        queries = None
        if self.config.retrieval.query == "labels":  # the label texts' embeddings, the text–text queries
            queries = load_or_build_bank([text for kind, text in items if kind == "label"], clap, cache)
        yield bank, queries


class _LazyClap:
    """A CLAP text encoder that loads on first use: a bank cache hit never loads the model."""

    def __init__(self, config: AnnotateConfig, device: str):
        from pipelines.annotate.encoders import clap_provenance

        self.config = config
        self.device = device
        self.provenance = clap_provenance(config.clap)
        self._encoder: Any = None

    def embed_text(self, texts: list[str]) -> np.ndarray:
        if self._encoder is None:
            from pipelines.annotate.encoders import load_clap

            self._encoder = load_clap(self.config.clap, self.device)
        return self._encoder.embed_text(texts)


class ProposeCandidates(beam.DoFn):
    """(clip id, {info, audio, captions}) → the clip's Proposal: every candidate with its expert."""

    def __init__(self, config: AnnotateConfig):
        self.config = config

    def process(self, item: tuple[str, dict[str, list[Any]]], banks: Any = None) -> Iterator[Any]:
        clip_id, joined = item
        if joined["info"] and joined["audio"]:  # else a failed clip: its failure row is written elsewhere
            yield self._propose(clip_id, joined, *(banks or (None, None)))

    def _propose(self, clip_id: str, joined: dict[str, list[Any]], bank: Any, queries: Any = None) -> Any:
        from pipelines.annotate.prompts.candidates import propose
        from pipelines.annotate.prompts.labels import label_text
        from pipelines.annotate.prompts.retrieval import chance_caption, normalise, retrieve

        info, audio = joined["info"][0], joined["audio"][0]
        generated = [text for texts in joined["captions"] for text in _value(texts)]
        retrieved, chance = [], None
        by_labels = bool(self.config.retrieval and self.config.retrieval.query == "labels")
        if bank is not None and self.config.retrieval:
            exclude = set(info.captions)
            if by_labels:  # text–text: the clip's label text against the bank (Make-An-Audio App. E.2)
                label = normalise(label_text(info.labels) or "")
                row = queries.texts.index(label) if queries is not None and label in queries.texts else None
                if row is not None and bank.texts:
                    retrieved = retrieve(bank, queries.embeddings[row], self.config.retrieval.top_k, exclude | {label})
            else:
                retrieved = retrieve(bank, audio, self.config.retrieval.top_k, exclude=exclude)
            chance = chance_caption(bank, clip_id, audio, exclude=exclude)
        checksum = getattr(bank, "checksum", None)
        proposal = propose(
            info,
            generated,
            retrieved,
            self.config.prompts,
            checksum,
            chance[1] if chance else None,
            retrieval_scored=not by_labels,
        )
        Metrics.counter(NAMESPACE, "candidates").inc(len(proposal.candidates))
        return proposal


def _texts_to_embed(proposal: Any) -> Iterator[tuple[tuple[str, int], str]]:
    for index, text in enumerate(proposal.texts):
        yield (proposal.clip_id, index), text


class SelectCaptions(beam.DoFn):
    """(clip id, {info, proposal, text, audio, frames}) → (annotation row, arrays): CLAP scores, then selection."""

    def __init__(self, config: AnnotateConfig, settings: str, provenance: dict[str, Any]):
        self.config = config
        self.settings = settings
        self.provenance = provenance

    def process(self, item: tuple[str, dict[str, list[Any]]]) -> Iterator[tuple[dict[str, Any], dict[str, np.ndarray]]]:
        clip_id, joined = item
        if joined["proposal"]:
            yield self._select(clip_id, joined)

    def _select(self, clip_id: str, joined: dict[str, list[Any]]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        from pipelines.annotate.prompts.candidates import select

        info, proposal, audio = joined["info"][0], joined["proposal"][0], joined["audio"][0]
        fields = select(proposal, dict(joined["text"]), audio, self.config.selection)
        Metrics.counter(NAMESPACE, f"clips_{fields['status']}").inc()
        row = {
            "clip_id": clip_id,
            **fields,
            "event_count": info.event_count,
            "windows": info.windows,
            "frames": info.frames,
            "clip_digest": info.digest,
            "settings_hash": self.settings,
            "provenance": {**self.provenance, "bank_checksum": proposal.bank_checksum},
        }
        arrays = {"clap_audio": audio}
        if joined["frames"]:
            from pipelines.annotate.encoders import pool_windows

            # per frame (CLIPSonic §2 conditions on one) and pooled (Make-An-Audio §4.3 pools 4)
            arrays["clip_image"] = joined["frames"][0]
            arrays["clip_image_mean"] = pool_windows(joined["frames"][0])
        return row, arrays


class WriteAnnotations(beam.DoFn):
    """(row, arrays) or a failure → the clip's folder in the annotation store; emits (clip id, status)."""

    def __init__(self, output: Path, settings: str, provenance: dict[str, Any]):
        self.output = output
        self.settings = settings
        self.provenance = provenance

    def setup(self) -> None:
        self.store = AnnotationStore(self.output)
        self.cache = ClipCache(self.output)

    def process(self, item: Any) -> Iterator[tuple[str, str]]:
        if isinstance(item[0], str):  # (clip id, reason): a failure
            clip_id, reason = item
            row, arrays = self._failure(clip_id, reason), {}
        else:
            row, arrays = item
        self.store.write(row, arrays)
        yield row["clip_id"], row["status"]

    def _failure(self, clip_id: str, reason: str) -> dict[str, Any]:
        log.warning("clip %s not annotated: %s", clip_id, reason)
        try:
            digest = clip_digest(self.cache.entry_dir(clip_id))
        except OSError:
            digest = None
        return {
            "clip_id": clip_id,
            "status": "failed",
            "reason": reason,
            "candidates": [],
            "clip_digest": digest,
            "settings_hash": self.settings,
            "provenance": self.provenance,
        }


class Annotate(beam.PTransform):
    """A corpus's clip cache → the annotation store; emits the run's summary."""

    def __init__(self, corpus: Corpus, config: AnnotateConfig, device: str):
        super().__init__()
        self.corpus = corpus
        self.config = config
        self.device = device
        models = model_provenance(config)
        self.settings = settings_hash(config, models)
        self.provenance = {**models, **run_provenance(config, models)}

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        output, config = self.corpus.output, self.config
        ids = pbegin | "ListCachedClips" >> ListCachedClips(output)
        todo = ids | "SkipAnnotated" >> beam.ParDo(SkipAnnotated(output, self.settings)).with_outputs(
            "done", main="todo"
        )
        read = todo.todo | "ReadClips" >> beam.ParDo(ReadClips(output, config)).with_outputs(
            "windows", "frames", "audio", "failed", main="info"
        )
        joined = {
            "info": read.info | "KeyInfo" >> beam.Map(lambda info: (info.clip_id, info)),
            "audio": self._audio_embeddings(read.windows),
            "captions": self._captions(read.audio),
        }
        bank = self._bank(ids)
        proposals = (
            joined
            | "JoinClipParts" >> beam.CoGroupByKey()
            | "ProposeCandidates" >> beam.ParDo(ProposeCandidates(config), banks=bank)
        )
        joined.update(
            proposal=proposals | "KeyProposals" >> beam.Map(lambda p: (p.clip_id, p)),
            text=self._text_embeddings(proposals),
            frames=self._frame_embeddings(read.frames),
        )
        rows = (
            joined
            | "JoinScores" >> beam.CoGroupByKey()
            | "SelectCaptions" >> beam.ParDo(SelectCaptions(config, self.settings, self.provenance))
        )
        written = (
            (rows, read.failed)
            | "RowsAndFailures" >> beam.Flatten()
            | "WriteAnnotations" >> beam.ParDo(WriteAnnotations(output, self.settings, self.provenance))
        )
        return (
            (written, todo.done)
            | "Outcomes" >> beam.Flatten()
            | "CollectOutcomes" >> beam.combiners.ToList()
            | "WriteTable" >> beam.Map(lambda outcomes: AnnotationStore(output).write_table(c for c, _ in outcomes))
        )

    def _audio_embeddings(self, windows: beam.PCollection) -> beam.PCollection:
        from pipelines.annotate.encoders.handlers import ClapAudioHandler

        return (
            windows
            | "EmbedAudio" >> RunInference(KeyedModelHandler(ClapAudioHandler(self.config.clap, self.device)))
            | "AudioByClip" >> beam.Map(_by_clip)
            | "GroupWindows" >> beam.GroupByKey()
            | "PoolWindows" >> beam.Map(_pool)
        )

    def _frame_embeddings(self, frames: beam.PCollection) -> beam.PCollection:
        if not self.config.clip:
            return frames | "NoFrames" >> beam.Filter(lambda _: False)
        from pipelines.annotate.encoders.handlers import ClipImageHandler

        return (
            frames
            | "EmbedFrames" >> RunInference(KeyedModelHandler(ClipImageHandler(self.config.clip, self.device)))
            | "FramesByClip" >> beam.Map(_by_clip)
            | "GroupFrames" >> beam.GroupByKey()
            | "StackFrames" >> beam.Map(_stack)
        )

    def _captions(self, audio: beam.PCollection) -> beam.PCollection:
        if not self.config.captioning:
            return audio | "NoCaptioner" >> beam.Filter(lambda _: False)
        from pipelines.annotate.prompts.experts import CaptionerHandler

        handler = KeyedModelHandler(CaptionerHandler(self.config.captioning, self.device))
        return audio | "GenerateCaptions" >> RunInference(handler)

    def _text_embeddings(self, proposals: beam.PCollection) -> beam.PCollection:
        from pipelines.annotate.encoders.handlers import ClapTextHandler

        return (
            proposals
            | "CandidateTexts" >> beam.FlatMap(_texts_to_embed)
            | "EmbedTexts" >> RunInference(KeyedModelHandler(ClapTextHandler(self.config.clap, self.device)))
            | "TextsByClip" >> beam.Map(_by_clip)
        )

    def _bank(self, ids: beam.PCollection) -> Any:
        if not self.config.retrieval:
            return None
        bank = (
            ids
            | "ReadBankCaptions" >> beam.FlatMap(_bank_captions, self.corpus.output)
            | "CollectBankCaptions" >> beam.combiners.ToList()
            | "BuildCaptionBank" >> beam.ParDo(BuildCaptionBank(self.corpus.output, self.config, self.device))
        )
        return beam.pvalue.AsSingleton(bank)


def checked(corpus: Corpus, config: AnnotateConfig, device: str) -> Annotate:
    """The job's transform, after the checks a user can fail before any worker starts: the device
    exists, every model path holds files (their checksums go into every row)."""
    from pipelines.annotate.encoders import ModelLoadError
    from pipelines.annotate.prompts.experts import ExpertLoadError

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for (annotate.device or --device) but torch sees no CUDA device")
    try:
        return Annotate(corpus, config, device)
    except (ModelLoadError, ExpertLoadError, OSError) as error:
        raise ConfigError(f"{corpus.config_path}: corpora.{corpus.name}.annotate: {error}") from None


def run(corpus: Corpus, *, device: str | None = None, beam_args: Sequence[str] = ()) -> dict[str, Any]:
    """Run the annotate job; returns the summary of the annotation table it wrote. `device` ("cpu" or
    "cuda") overrides `annotate.device`; `beam_args`: Beam pipeline options."""
    config = corpus.config.annotate
    if config is None:
        raise ConfigError(
            f"{corpus.config_path}: corpus {corpus.name!r} has no `annotate:` block (see docs/annotate.md)"
        )
    device = device or config.device
    annotate = checked(corpus, config, device)
    store = AnnotationStore(corpus.output)
    if store.clean_staging():
        log.info("removed half-written annotations left by an earlier run")
    corpus.save_resolved("annotate")
    with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
        _ = pipeline | "Annotate" >> annotate
    return json.loads((store.root / "summary.json").read_text())
