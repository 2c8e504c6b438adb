"""The judgments database: `<output>/review/review.sqlite` (SQLite, standard library).

    judgments(id, clip_id, caption_sha256, caption, judgment, better_caption, reviewer, time, stratum)
    design(clip_id, stratum, source, origin, position)         the stratified sample being reviewed
    strata(stratum, population, sample_size)                   its strata, for weighting back
    meta(key, value)                                           the design's parameters
    signatures(id, reviewer, time, corpus, config_hash, estimate)   `t2a audit sign` records

Every judgment is kept (a changed mind is a new row); the latest row of a clip is its judgment.
Each write is its own transaction, so a killed server loses at most the judgment being sent.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.shard.overrides import REVIEW_DIR

DATABASE = "review.sqlite"
JUDGMENTS = ("correct", "partly", "wrong")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    clip_id TEXT NOT NULL,
    caption_sha256 TEXT NOT NULL,
    caption TEXT,
    judgment TEXT NOT NULL CHECK (judgment IN ('correct', 'partly', 'wrong')),
    better_caption TEXT,
    reviewer TEXT NOT NULL,
    time TEXT NOT NULL,
    stratum TEXT
);
CREATE INDEX IF NOT EXISTS judgments_clip ON judgments (clip_id, id);
CREATE TABLE IF NOT EXISTS design (
    clip_id TEXT PRIMARY KEY, stratum TEXT NOT NULL, source TEXT NOT NULL, origin TEXT NOT NULL,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS strata (stratum TEXT PRIMARY KEY, population INTEGER NOT NULL, sample_size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signatures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, reviewer TEXT NOT NULL, time TEXT NOT NULL, corpus TEXT NOT NULL,
    config_hash TEXT NOT NULL, estimate TEXT NOT NULL
);
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def database_path(output: str | Path) -> Path:
    return Path(output) / REVIEW_DIR / DATABASE


class ReviewDB:
    def __init__(self, output: str | Path, *, create: bool = True):
        self.path = database_path(output)
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"no review database at {self.path}: run `t2a review` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per use (the server's threads each open their own), committed on success."""
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:
                yield db
        finally:
            db.close()

    # --- the design -------------------------------------------------------------------------------

    def design(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]], dict[str, str]]:
        with self.connect() as db:
            clips = [dict(r) for r in db.execute("SELECT * FROM design ORDER BY position")]
            strata = {
                r["stratum"]: {"population": r["population"], "sample_size": r["sample_size"]}
                for r in db.execute("SELECT * FROM strata ORDER BY stratum")
            }
            meta = {r["key"]: r["value"] for r in db.execute("SELECT * FROM meta")}
        return clips, strata, meta

    def save_design(self, clips: list[dict[str, Any]], strata: dict[str, dict[str, int]], meta: dict[str, str]) -> None:
        with self.connect() as db:
            db.execute("DELETE FROM design")
            db.execute("DELETE FROM strata")
            db.execute("DELETE FROM meta")
            db.executemany(
                "INSERT INTO design (clip_id, stratum, source, origin, position) VALUES (?, ?, ?, ?, ?)",
                [(c["clip_id"], c["stratum"], c["source"], c["origin"], i) for i, c in enumerate(clips)],
            )
            db.executemany(
                "INSERT INTO strata (stratum, population, sample_size) VALUES (?, ?, ?)",
                [(name, s["population"], s["sample_size"]) for name, s in sorted(strata.items())],
            )
            db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(meta.items()))

    # --- judgments --------------------------------------------------------------------------------

    def judge(
        self,
        clip_id: str,
        caption_sha256: str,
        caption: str | None,
        judgment: str,
        reviewer: str,
        better_caption: str | None = None,
        stratum: str | None = None,
    ) -> dict[str, Any]:
        if judgment not in JUDGMENTS:
            raise ValueError(f"judgment must be one of {', '.join(JUDGMENTS)}, not {judgment!r}")
        if not reviewer.strip():
            raise ValueError("a judgment needs the reviewer's name")
        row = {
            "clip_id": clip_id,
            "caption_sha256": caption_sha256,
            "caption": caption,
            "judgment": judgment,
            "better_caption": (better_caption or "").strip() or None,
            "reviewer": reviewer.strip(),
            "time": now(),
            "stratum": stratum,
        }
        with self.connect() as db:
            db.execute(
                f"INSERT INTO judgments ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
        return row

    def all_judgments(self) -> list[dict[str, Any]]:
        with self.connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM judgments ORDER BY id")]

    def latest(self) -> dict[str, dict[str, Any]]:
        """clip id → its latest judgment."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT j.* FROM judgments j JOIN (SELECT clip_id, MAX(id) AS id FROM judgments GROUP BY clip_id) m "
                "ON j.id = m.id ORDER BY j.clip_id"
            )
            return {r["clip_id"]: dict(r) for r in rows}

    # --- signatures -------------------------------------------------------------------------------

    def sign(self, reviewer: str, corpus: str, config_hash: str, estimate: dict[str, Any]) -> dict[str, Any]:
        if not reviewer.strip():
            raise ValueError("a signature needs the reviewer's name (--reviewer)")
        row = {
            "reviewer": reviewer.strip(),
            "time": now(),
            "corpus": corpus,
            "config_hash": config_hash,
            "estimate": json.dumps(estimate, sort_keys=True),
        }
        with self.connect() as db:
            db.execute(
                f"INSERT INTO signatures ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
        return {**row, "estimate": estimate}

    def signatures(self) -> list[dict[str, Any]]:
        with self.connect() as db:
            rows = [dict(r) for r in db.execute("SELECT * FROM signatures ORDER BY id")]
        return [{**r, "estimate": json.loads(r["estimate"])} for r in rows]
