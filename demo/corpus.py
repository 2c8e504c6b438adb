"""`t2a demo-corpus DIR`: a small, deterministic text-audio corpus in the public manifest formats.

Everything is synthesized from `seed` (sound classes in `demo.sounds`), so two builds
with the same seed are byte-identical and no network is needed. The corpus is served by
`demo.server.LoopbackServer` and ingested through the real readers and fetchers, with
deliberately broken media and malformed manifest rows that the ingest must survive and report.
The layout under DIR is fixed: the project's datasets.yaml names these paths.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from demo.build import Build, ManifestFile, csv_line
from demo.catalogues import write_clotho, write_fsd50k
from demo.events import clip_events, plan_events
from demo.readme import readme
from demo.sounds import SOUNDS
from demo.web import write_freesound, write_table
from demo.youtube import SEGMENT, plan_pool, queue_videos, write_audioset, write_audioset_strong
from demo.youtube_text import Sizes, write_audiocaps, write_vggsound

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8765"
GENERATOR = "t2a demo-corpus"
# Top-level entries a build writes; `overwrite=True` removes only these.
LAYOUT = (
    "README.md",
    "ground_truth.json",
    "yt",
    "audioset",
    "vggsound",
    "audiocaps",
    "fsd50k",
    "clotho",
    "table",
    "media",
    "freesound",
)


def build_demo_corpus(
    dest: Path,
    seed: int = 0,
    base_url: str = DEFAULT_BASE_URL,
    scale: float = 1.0,
    overwrite: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Write the corpus under `dest` and return its summary (also in DIR/README.md).

    `scale` shrinks every count (not the malformed rows or broken files), for quick test builds.
    """
    began = time.monotonic()
    dest = Path(dest)
    _prepare(dest, LAYOUT, overwrite)
    build = Build(dest, seed, base_url, scale)
    pool = plan_pool(build, Sizes.of(build).extra_videos)
    queue_videos(build, pool)
    write_audioset_strong(build, write_audioset(build, pool))
    write_vggsound(build, pool)
    splits = write_audiocaps(build, pool)
    write_fsd50k(build)
    write_clotho(build)
    write_table(build)
    write_freesound(build)
    build.run_jobs(workers)
    _write_ground_truth(build)
    summary = _summary(build)
    summary["audiocaps_test_audioset"] = sorted(
        {s.video.ytid for s in splits["test"]} & {v.ytid for v in pool.audioset}
    )
    build.write_text("README.md", readme(summary))
    summary["seconds"] = round(time.monotonic() - began, 1)  # after the README: it must not vary
    log.info(
        "demo corpus: %d files, %.1f MB in %s (%.1f s)",
        summary["files"],
        summary["bytes"] / 1e6,
        dest,
        summary["seconds"],
    )
    return summary


def build_video_corpus(
    dest: Path,
    n_videos: int,
    seconds: float = 30.0,
    seed: int = 0,
    base_url: str = DEFAULT_BASE_URL,
    workers: int | None = None,
) -> Path:
    """`n_videos` MP4s of `seconds` under dest/videos/ and dest/table.csv cutting one 10-s segment
    of each at a varied start (columns url,start,end,labels); returns the table's path."""
    dest = Path(dest)
    _prepare(dest, ("videos", "table.csv", "ground_truth.json"), overwrite=True)
    build = Build(dest, seed, base_url)
    rng = build.rng("bench")
    table = ManifestFile("table.csv", header=["url,start,end,labels"])
    for i in range(n_videos):
        rel = f"videos/video_{i:04d}.mp4"
        start = round(float(rng.uniform(0, max(0.0, seconds - SEGMENT))), 3)
        end = round(min(start + SEGMENT, seconds), 3)
        # Events before, inside and after the cut, so that every cut has labels and cutting matters.
        spans = [(a, b) for a, b in ((0.0, start), (start, end), (end, seconds)) if b - a >= 1.0]
        events = [e for a, b in spans for e in plan_events(rng, a, b)]
        build.media(rel, events, seconds)
        names = dict.fromkeys(e.sound.name for e in clip_events(events, start, end))
        table.add(csv_line([build.url(rel), f"{start:.3f}", f"{end:.3f}", ";".join(names)]))
    build.write_manifest(table, "table")
    build.run_jobs(workers)
    _write_ground_truth(build)
    return dest / "table.csv"


def _prepare(dest: Path, layout: tuple[str, ...], overwrite: bool) -> None:
    """Refuse to mix a new build with other files; with `overwrite`, remove a previous build."""
    present = [dest / name for name in layout if (dest / name).exists()]
    if present and not overwrite:
        raise FileExistsError(
            f"{dest} already holds a corpus ({present[0].name}); choose an empty folder or pass overwrite=True"
        )
    for path in present:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    dest.mkdir(parents=True, exist_ok=True)


def _write_ground_truth(build: Build) -> None:
    document = {
        "generator": GENERATOR,
        "seed": build.seed,
        "classes": [{"mid": s.mid, "name": s.name} for s in SOUNDS.values()],
        "files": dict(sorted(build.truth.items())),
        "broken": build.broken,
        "missing": build.missing,
    }
    build.write_text("ground_truth.json", json.dumps(document, indent=1) + "\n")


def _summary(build: Build) -> dict[str, Any]:
    per_class = {s.name: 0 for s in SOUNDS.values()}
    for entry in build.truth.values():
        for event in entry["events"]:
            per_class[event["name"]] += 1
    files = [p for p in sorted(build.dest.rglob("*")) if p.is_file() and p.name != "README.md"]
    return {
        "seed": build.seed,
        "base_url": build.base_url,
        "scale": build.scale,
        "formats": build.counts,
        "media_files": len(build.truth),
        "events_per_class": per_class,
        "broken": build.broken,
        "missing": build.missing,
        "malformed": build.malformed,
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }
