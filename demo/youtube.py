"""The demo corpus's "YouTube": a pool of videos under yt/ and the AudioSet manifests that cut them.

Videos are planned before anything is written: each has a duration and a list of 10-s segments
(AudioSet's unit), and events are placed inside the segments, so every segment has labels and
every label list is true. VGGSound and AudioCaps (demo/youtube_text.py) draw their
segments from the same pool, as the real datasets overlap on YouTube.
"""

from __future__ import annotations

import functools
import math
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from demo.build import (
    BAD_YOUTUBE_ID,
    DUPLICATE,
    SHELL_ID,
    TRAVERSAL_ID,
    UNKNOWN_MID,
    Build,
    ManifestFile,
    random_bytes,
)
from demo.events import Event, clip_events, plan_events, render
from demo.video import SAMPLE_RATE, encode_mp4

SEGMENT = 10  # seconds: AudioSet, VGGSound and AudioCaps all cut 10-s segments
_ID_ALPHABET = string.ascii_letters + string.digits + "-_"
AUDIOSET_CSV = "audioset/balanced_train_segments.csv"
AUDIOSET_STRONG = "audioset/audioset_train_strong.tsv"


@dataclass
class Video:
    ytid: str
    duration: float
    starts: list[int]  # segment starts in seconds
    events: list[Event] = field(default_factory=list)

    @property
    def rel(self) -> str:
        return f"yt/{self.ytid}.mp4"


@dataclass(frozen=True)
class Segment:
    video: Video
    start: int

    @property
    def events(self) -> list[Event]:
        """Events inside the segment, relative to its start; the video may end before the segment."""
        return clip_events(self.video.events, self.start, min(self.start + SEGMENT, self.video.duration))

    @property
    def mids(self) -> list[str]:
        return list(dict.fromkeys(e.sound.mid for e in self.events))

    @property
    def full(self) -> bool:
        return self.start + SEGMENT <= self.video.duration


@dataclass
class Pool:
    audioset: list[Video]  # videos with AudioSet segments
    extras: list[Video]  # one segment each, for VGGSound and AudioCaps only
    broken_ids: list[str]  # the ids of the broken files and of the one missing video

    def segments(self) -> list[Segment]:
        return [Segment(v, s) for v in self.audioset for s in v.starts]


def youtube_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Unique 11-character ids like YouTube's; the first three exercise '-' and '_' handling."""
    ids: list[str] = []
    while len(ids) < n:
        candidate = "".join(rng.choice(list(_ID_ALPHABET), size=11))
        if candidate not in ids and not candidate.startswith("-"):
            ids.append(candidate)
    forced = ["-" + ids[0][1:], ids[1][:4] + "_" + ids[1][5:], ids[2][:6] + "-" + ids[2][7:]]
    return [*forced[: min(3, n)], *ids[3:]]


def plan_pool(build: Build, n_extras: int) -> Pool:
    rng = build.rng("youtube", "pool")
    n_audioset = build.n(30, 3)
    ids = youtube_ids(rng, n_audioset + n_extras + 5)
    # Segments per AudioSet video: a few with three, many with two, the rest with one (~50 in all).
    per_video = [3] * build.n(4) + [2] * build.n(12)
    per_video = (per_video + [1] * n_audioset)[:n_audioset]
    per_video = [per_video[i] for i in rng.permutation(n_audioset)]
    # Two one-segment videos get a segment that runs past their end.
    overrun = [i for i, k in enumerate(per_video) if k == 1][:2]
    audioset = [_plan_audioset_video(rng, ids[i], k, overrun=i in overrun) for i, k in enumerate(per_video)]
    extras = [_plan_extra_video(rng, ytid) for ytid in ids[n_audioset : n_audioset + n_extras]]
    return Pool(audioset, extras, ids[n_audioset + n_extras :])


def _plan_audioset_video(rng: np.random.Generator, ytid: str, k: int, overrun: bool) -> Video:
    """A video of 10-30 s (frame-aligned) with `k` disjoint segments at integer starts.

    Three-segment videos are 21-30 s long, so their 20-30 segment usually runs past the end of the
    video; `overrun` does the same to a one-segment video (AudioSet has such segments).
    """
    if k == 3:
        duration, starts = rng.integers(105, 151) / 5, [0, 10, 20]
    elif k == 2:
        duration = rng.integers(100, 151) / 5
        first = int(rng.integers(0, math.floor(duration) - 2 * SEGMENT + 1))
        starts = [first, int(rng.integers(first + SEGMENT, math.floor(duration) - SEGMENT + 1))]
    else:
        duration = rng.integers(50, 151) / 5
        last = math.floor(duration) - SEGMENT
        starts = [math.floor(duration) - 6 if overrun else int(rng.integers(0, last + 1))]
    video = Video(ytid, float(duration), starts)
    for start in starts:
        video.events += plan_events(rng, start, min(start + SEGMENT, duration))
    _maybe_add_outside_event(rng, video)
    return video


def _plan_extra_video(rng: np.random.Generator, ytid: str) -> Video:
    duration = rng.integers(50, 81) / 5
    start = int(rng.integers(0, math.floor(duration) - SEGMENT + 1))
    video = Video(ytid, float(duration), [start], plan_events(rng, start, start + SEGMENT))
    _maybe_add_outside_event(rng, video)
    return video


def _maybe_add_outside_event(rng: np.random.Generator, video: Video) -> None:
    """Sometimes an event outside every segment: cutting a segment must leave it out."""
    if rng.random() < 0.5 or len(video.starts) != 1:
        return
    start = video.starts[0]
    before, after = (0.0, float(start)), (float(start + SEGMENT), video.duration)
    low, high = max(before, after, key=lambda gap: gap[1] - gap[0])
    if high - low >= 2.0:
        video.events = sorted(video.events + plan_events(rng, low, high, n=1), key=lambda e: e.start)


# --- media ---------------------------------------------------------------------------------------


def queue_videos(build: Build, pool: Pool) -> None:
    for video in pool.audioset + pool.extras:
        build.media(video.rel, video.events, video.duration)
    corrupt, empty, silent, truncated, missing = pool.broken_ids
    seed = build.seed
    write_corrupt = functools.partial(random_bytes, seed=seed, size=64 * 1024)
    build.add_broken(f"yt/{corrupt}.mp4", "random bytes named .mp4", write_corrupt, AUDIOSET_CSV)
    build.add_broken(f"yt/{empty}.mp4", "empty file (0 bytes)", lambda p: p.write_bytes(b""), AUDIOSET_CSV)
    build.add_broken(
        f"yt/{silent}.mp4",
        "MP4 with a video stream and no audio stream",
        lambda p: encode_mp4(p, None, [], 12.0),
        AUDIOSET_CSV,
    )
    build.add_broken(
        f"yt/{truncated}.mp4",
        "truncated MP4: the first half of a valid 12-s file",
        lambda p: _truncated_mp4(p, seed),
        AUDIOSET_CSV,
    )
    build.add_missing(f"yt/{missing}.mp4", AUDIOSET_CSV)


def _truncated_mp4(path: Path, seed: int) -> None:
    events = plan_events(np.random.default_rng([seed, 2]), 0.0, 12.0, n=2)
    with tempfile.TemporaryDirectory(prefix="t2a-demo-") as tmp:
        whole = Path(tmp) / "whole.mp4"
        encode_mp4(whole, render(events, 12.0, SAMPLE_RATE, 2, seed), events, 12.0)
        data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --- AudioSet manifests --------------------------------------------------------------------------


def write_audioset(build: Build, pool: Pool) -> list[Segment]:
    segments = pool.segments()
    rng = build.rng("audioset", "rows")
    rows = [(s.video.ytid, s.start, s.mids) for s in segments]
    rows += [(ytid, 0, [str(m) for m in rng.choice(_all_mids(segments), 2, replace=False)]) for ytid in pool.broken_ids]
    lines = sorted((ytid, start, _audioset_line(ytid, start, mids)) for ytid, start, mids in rows)
    n_labels = sum(len(mids) for _, _, mids in rows)
    manifest = ManifestFile(
        AUDIOSET_CSV,
        header=[
            "# Segments csv created Sun Mar  5 10:54:31 2017",
            f"# num_ytids={len({r[0] for r in rows})}, num_segs={len(rows)}, "
            f"num_unique_labels={len({m for r in rows for m in r[2]})}, num_positive_labels={n_labels}",
            "# YTID, start_seconds, end_seconds, positive_labels",
        ],
    )
    for _, _, line in lines:
        manifest.add(line)
    spare = _segment_free_video(pool)
    manifest.add_bad(lines[int(rng.integers(len(lines)))][2], DUPLICATE)
    manifest.add_bad(f"{spare.ytid}, 0.000, 10.000", "wrong column count (3 fields, no labels)")
    manifest.add_bad(f'{spare.ytid}, 0.0.0, 10.000, "/m/03kmc9"', "bad number: start_seconds '0.0.0'")
    manifest.add_bad(_audioset_line(spare.ytid, 0, [UNKNOWN_MID]), f"unknown mid {UNKNOWN_MID}")
    for bad_id, problem in _BAD_IDS:
        manifest.add_bad(_audioset_line(bad_id, 0, ["/m/03kmc9"]), problem)
    build.write_manifest(manifest, "audioset")
    return segments


_BAD_IDS = (
    (BAD_YOUTUBE_ID, f"bad YouTube id {BAD_YOUTUBE_ID!r} (6 characters)"),
    (TRAVERSAL_ID, f"path-traversal id {TRAVERSAL_ID!r}"),
    (SHELL_ID, f"shell-metacharacter id {SHELL_ID!r}"),
)


def _audioset_line(ytid: str, start: int, mids: list[str]) -> str:
    # AudioSet's own layout: comma + space separators, the label list always quoted.
    return f'{ytid}, {start:.3f}, {start + SEGMENT:.3f}, "{",".join(mids)}"'


def _all_mids(segments: list[Segment]) -> list[str]:
    return sorted({m for s in segments for m in s.mids})


def _segment_free_video(pool: Pool) -> Video:
    """A good video with no segment at 0: the malformed rows point at it (never a duplicate clip)."""
    return next((v for v in pool.audioset if 0 not in v.starts), pool.audioset[0])


def write_audioset_strong(build: Build, segments: list[Segment]) -> None:
    """Strong (timestamped) labels for about two thirds of the segments, one row per event."""
    rng = build.rng("audioset", "strong")
    chosen = [s for s in segments if rng.random() < 2 / 3] or segments[:1]
    manifest = ManifestFile(AUDIOSET_STRONG, header=["segment_id\tstart_time_seconds\tend_time_seconds\tlabel"])
    for segment in chosen:
        segment_id = f"{segment.video.ytid}_{segment.start * 1000}"
        for event in segment.events:
            manifest.add(f"{segment_id}\t{event.start:.3f}\t{event.end:.3f}\t{event.sound.mid}")
    good = f"{chosen[0].video.ytid}_{chosen[0].start * 1000}"
    manifest.add_bad(f"{good}\t0.000\t1.000", "wrong column count (3 fields)")
    manifest.add_bad(f"{good}\t0.500s\t1.000\t/m/03kmc9", "bad number: start_time_seconds '0.500s'")
    manifest.add_bad(f"{good}\t0.000\t1.000\t{UNKNOWN_MID}", f"unknown mid {UNKNOWN_MID}")
    for bad_id, problem in _BAD_IDS:
        manifest.add_bad(f"{bad_id}_0\t0.000\t1.000\t/m/03kmc9", problem)
    build.write_manifest(manifest, "audioset_strong")
    build.counts["audioset_strong"]["segments"] = len(chosen)
