"""The bookkeeping of one demo-corpus build: seeds, media jobs, manifests and what is broken on purpose.

Every random choice comes from `Build.rng(*key)`, a generator seeded by the corpus seed and a key
naming what it is for, so one part of the corpus does not change when another part grows, and
media can be encoded in parallel in any order. Manifests are assembled as lines; the deliberately
malformed ones are inserted at seeded positions and their line numbers recorded for the summary.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demo.events import Event, render
from demo.video import SAMPLE_RATE, encode_audio, encode_mp4

log = logging.getLogger(__name__)

# Bad field values shared by every manifest: what a hostile or careless upstream file contains.
TRAVERSAL_ID = "../../etc/passwd"
SHELL_ID = "$(touch pwned)"
UNKNOWN_MID = "/m/0zzzzzz"  # mid-shaped, not in the ontology
BAD_YOUTUBE_ID = "abc123"  # 6 characters: not a YouTube id
DUPLICATE = "exact duplicate"  # a bad row that repeats a good one; the note names the other line


def key_int(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def random_bytes(path: Path, seed: int, size: int) -> None:
    """A corrupt media file: bytes no demuxer recognizes, the same for the same seed and size."""
    path.write_bytes(np.random.default_rng([seed, size]).integers(0, 256, size, dtype=np.uint8).tobytes())


def csv_line(fields: Sequence[object]) -> str:
    """One row as the csv module writes it (minimal quoting), without the line ending."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


@dataclass
class ManifestFile:
    """The lines of one manifest: blocks of good rows, and bad rows to scatter between the blocks."""

    rel: str
    header: list[str] = field(default_factory=list)
    blocks: list[list[str]] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (line, what is wrong with it)

    def add(self, *lines: str) -> None:
        """A block of rows that stays together (AudioCaps val/test: the 5 captions of one clip)."""
        self.blocks.append(list(lines))

    def add_bad(self, line: str, problem: str) -> None:
        self.bad.append((line, problem))

    def layout(self, rng: np.random.Generator) -> tuple[list[str], list[dict[str, Any]]]:
        """All lines in file order, and for each bad row its 1-based line number and problem."""
        blocks: list[tuple[list[str], str | None]] = [(block, None) for block in self.blocks]
        for line, problem in self.bad:
            blocks.insert(int(rng.integers(0, len(blocks) + 1)), ([line], problem))
        lines, notes = list(self.header), []
        for block, problem in blocks:
            if problem is not None:
                notes.append({"manifest": self.rel, "line": len(lines) + 1, "problem": problem})
            lines.extend(block)
        for note in notes:
            if note["problem"] == DUPLICATE:
                text = lines[note["line"] - 1]
                other = next(i + 1 for i, line in enumerate(lines) if line == text and i + 1 != note["line"])
                note["problem"] = f"{DUPLICATE} of line {other}"
        return lines, notes


@dataclass
class Build:
    dest: Path
    seed: int
    base_url: str
    scale: float = 1.0
    truth: dict[str, dict[str, Any]] = field(default_factory=dict)
    malformed: list[dict[str, Any]] = field(default_factory=list)
    broken: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    jobs: list[Callable[[], None]] = field(default_factory=list)

    def rng(self, *key: object) -> np.random.Generator:
        return np.random.default_rng([self.seed, key_int(*key)])

    def n(self, full: int, minimum: int = 1) -> int:
        """A count at this build's scale (tests build small corpora to check determinism quickly)."""
        return max(minimum, int(round(full * self.scale)))

    def url(self, rel: str) -> str:
        return f"{self.base_url.rstrip('/')}/{rel}"

    def media(
        self, rel: str, events: Sequence[Event], seconds: float, channels: int = 2, sr: int = SAMPLE_RATE
    ) -> None:
        """Queue a media file (MP4 or audio by suffix) and record its ground truth."""
        events = list(events)
        self.truth[rel] = {
            "duration": round(seconds, 3),
            "sample_rate": sr,
            "channels": channels,
            "events": [e.truth() for e in events],
        }
        self.jobs.append(lambda: self._encode(rel, events, seconds, channels, sr))

    def _encode(self, rel: str, events: list[Event], seconds: float, channels: int, sr: int) -> None:
        audio = render(events, seconds, sr, channels, noise_seed=key_int(self.seed, "noise", rel))
        path = self.dest / rel
        if path.suffix == ".mp4":
            encode_mp4(path, audio, events, seconds)
        else:
            encode_audio(path, audio, sr)

    def add_broken(self, rel: str, problem: str, write: Callable[[Path], None], referenced_by: str) -> None:
        self.broken.append({"file": rel, "problem": problem, "referenced_by": referenced_by})
        path = self.dest / rel

        def job() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)  # it may run before any other file of its folder
            write(path)

        self.jobs.append(job)

    def add_missing(self, rel: str, referenced_by: str) -> None:
        self.missing.append({"file": rel, "referenced_by": referenced_by})

    def write_manifest(self, manifest: ManifestFile, fmt: str) -> None:
        lines, notes = manifest.layout(self.rng("layout", manifest.rel))
        self.write_text(manifest.rel, "".join(line + "\n" for line in lines))
        self.malformed.extend(notes)
        counts = self.counts.setdefault(fmt, {"rows": 0, "malformed": 0})
        counts["rows"] += sum(len(block) for block in manifest.blocks)
        counts["malformed"] += len(notes)

    def write_text(self, rel: str, text: str) -> None:
        path = self.dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")

    def run_jobs(self, workers: int | None = None) -> None:
        """Encode everything queued. Each job owns its output file, so order does not matter."""
        workers = workers or max(1, min(8, os.cpu_count() or 1))
        jobs, self.jobs = self.jobs, []
        log.info("demo corpus: encoding %d files with %d workers", len(jobs), workers)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(job) for job in jobs]:
                future.result()  # re-raise the first failure
