"""One corpus's review: its sample, judgments, estimate, exports and signatures (what `t2a review`
serves and `t2a audit sign` records).

    <output>/review/review.sqlite       judgments, the sample design, signatures (pipelines/review/db.py)
    <output>/review/judgments.parquet   every judgment (export)
    <output>/review/overrides.json      what the shard stage applies (pipelines/shard/overrides.py)
    <output>/review/estimate.json       the precision estimate at export time
    <output>/review/audit.json          every signature: who, when, corpus config hash, estimate
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.annotate.store import AnnotationStore
from pipelines.core.io import atomic_path, write_json_atomic
from pipelines.ingest.cache import ClipCache
from pipelines.review.db import ReviewDB, database_path
from pipelines.review.design import population, stratified_sample
from pipelines.review.estimate import estimate
from pipelines.shard.overrides import REVIEW_DIR, caption_hash, write_overrides

JUDGMENTS_TABLE = "judgments.parquet"
ESTIMATE = "estimate.json"
AUDIT = "audit.json"
JUDGMENT_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("clip_id", pa.string()),
        ("caption_sha256", pa.string()),
        ("caption", pa.string()),
        ("judgment", pa.string()),
        ("better_caption", pa.string()),
        ("reviewer", pa.string()),
        ("time", pa.string()),
        ("stratum", pa.string()),
    ]
)


class ReviewError(ValueError):
    """A request the review cannot take (unknown clip, stale caption, bad judgment): a 400, not a crash."""


class Review:
    def __init__(
        self,
        output: str | Path,
        corpus: str,
        config_hash: str,
        *,
        margin: float = 0.05,
        seed: int = 0,
        min_per_stratum: int = 2,
    ):
        self.output = Path(output)
        self.corpus, self.config_hash = corpus, config_hash
        self.db = ReviewDB(self.output)
        self.cache = ClipCache(self.output)
        self.store = AnnotationStore(self.output)
        params = {"margin": repr(margin), "seed": str(seed), "min_per_stratum": str(min_per_stratum)}
        clips, strata, meta = self.db.design()
        if not clips or meta != params:  # the first start, or other parameters: draw the sample again
            clips, strata = stratified_sample(population(self.output), margin, seed, min_per_stratum)
            self.db.save_design(clips, strata, params)
            clips, strata, meta = self.db.design()
        self.design, self.strata = clips, strata
        self.in_design = {c["clip_id"]: c for c in clips}

    @property
    def folder(self) -> Path:
        return self.output / REVIEW_DIR

    def clip(self, clip_id: str) -> dict[str, Any]:
        """What the page shows of a sampled clip: caption (and its hash), candidates, labels, frames, judgment."""
        if clip_id not in self.in_design:
            raise ReviewError(f"clip {clip_id!r} is not in the review sample")
        row = self.store.read(clip_id) or {}
        entry = self.cache.read_entry(clip_id)
        caption = row.get("selected_caption")
        return {
            **self.in_design[clip_id],
            "caption": caption,
            "caption_sha256": caption_hash(caption),
            "expert": row.get("selected_expert"),
            "score": row.get("selected_score"),
            "candidates": row.get("candidates") or [],
            "labels": [label.name for label in entry.labels],
            "frames": [frame.file for frame in entry.frames],
            "duration": entry.duration,
        }

    def sample(self) -> list[dict[str, Any]]:
        latest = self.db.latest()
        return [{**self.clip(c["clip_id"]), "judgment": latest.get(c["clip_id"])} for c in self.design]

    def judge(
        self, clip_id: str, caption_sha256: str, judgment: str, reviewer: str, better_caption: str | None = None
    ) -> dict[str, Any]:
        clip = self.clip(clip_id)
        if caption_sha256 != clip["caption_sha256"]:
            raise ReviewError(f"clip {clip_id}: its caption changed since the page loaded; reload and judge again")
        try:
            return self.db.judge(
                clip_id, caption_sha256, clip["caption"], judgment, reviewer, better_caption, clip["stratum"]
            )
        except ValueError as error:
            raise ReviewError(str(error)) from None

    def estimate(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus,
            "config_hash": self.config_hash,
            "sample_size": len(self.design),
            **estimate(self.db.latest(), self.design, self.strata),
        }

    def export(self) -> dict[str, Any]:
        """judgments.parquet, overrides.json, estimate.json and audit.json; returns what was written."""
        rows = self.db.all_judgments()
        with atomic_path(self.folder / JUDGMENTS_TABLE) as temp:
            pq.write_table(pa.Table.from_pylist(rows, schema=JUDGMENT_SCHEMA), temp)
        overrides = {
            clip_id: {key: j[key] for key in ("judgment", "caption_sha256", "reviewer", "time")}
            | {"caption": j["better_caption"]}
            for clip_id, j in self.db.latest().items()
            if j["judgment"] == "wrong" or j["better_caption"]
        }
        write_overrides(self.output, overrides)
        current = self.estimate()
        write_json_atomic(self.folder / ESTIMATE, current)
        write_json_atomic(self.folder / AUDIT, {"signatures": self.db.signatures()})
        return {
            "judgments": len(rows),
            "overrides": len(overrides),
            "files": [str(self.folder / name) for name in (JUDGMENTS_TABLE, "overrides.json", ESTIMATE, AUDIT)],
            "estimate": current["overall"],
        }

    def sign(self, reviewer: str) -> dict[str, Any]:
        """Record who vouches for the current estimate, for which corpus configuration; exports too."""
        current = self.estimate()
        if not current["overall"]["judged"]:
            raise ReviewError("nothing to sign: no clip of the sample has been judged yet (`t2a review`)")
        try:
            signed = self.db.sign(reviewer, self.corpus, self.config_hash, current)
        except ValueError as error:
            raise ReviewError(str(error)) from None
        self.export()
        return signed


def review_summary(output: str | Path) -> dict[str, Any] | None:
    """The estimate and signatures the report shows; None when nobody has reviewed this corpus."""
    if not database_path(output).is_file():
        return None
    db = ReviewDB(output, create=False)
    design, strata, _ = db.design()
    if not design:
        return None
    return {
        "sample_size": len(design),
        **estimate(db.latest(), design, strata),
        "signatures": db.signatures(),
    }
