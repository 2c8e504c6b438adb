"""VGGSound and AudioCaps manifests over the demo "YouTube" pool (demo/youtube.py).

They overlap the way the real datasets do: VGGSound takes some AudioSet segments and some other
videos; AudioCaps train repeats some AudioSet segments exactly (so captions and labels can be
merged for one clip), and AudioCaps test names a few AudioSet segments too (the evaluation set a
training corpus must exclude).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from demo.build import BAD_YOUTUBE_ID, SHELL_ID, TRAVERSAL_ID, Build, ManifestFile, csv_line
from demo.events import captions
from demo.youtube import SEGMENT, Pool, Segment

VGGSOUND_CSV = "vggsound/vggsound.csv"
AUDIOCAPS_HEADER = "audiocap_id,youtube_id,start_time,caption"
_BAD_IDS = (
    (BAD_YOUTUBE_ID, f"bad YouTube id {BAD_YOUTUBE_ID!r} (6 characters)"),
    (TRAVERSAL_ID, f"path-traversal id {TRAVERSAL_ID!r}"),
    (SHELL_ID, f"shell-metacharacter id {SHELL_ID!r}"),
)


@dataclass(frozen=True)
class Sizes:
    """How many segments each manifest takes from the pool, at a build's scale."""

    vggsound_audioset: int
    vggsound_extra: int
    train_audioset: int
    train_vggsound: int
    train_new: int
    val: int
    test_audioset: int
    test_new: int

    @classmethod
    def of(cls, build: Build) -> Sizes:
        return cls(build.n(10), build.n(10), build.n(6), build.n(4), build.n(5), build.n(4), build.n(2), build.n(1))

    @property
    def extra_videos(self) -> int:
        return self.vggsound_extra + self.train_new + self.val + self.test_new


def write_vggsound(build: Build, pool: Pool) -> None:
    sizes, rng = Sizes.of(build), build.rng("vggsound")
    full = [s for s in pool.segments() if s.full]
    chosen = [full[i] for i in rng.permutation(len(full))[: sizes.vggsound_audioset]]
    chosen += [Segment(v, v.starts[0]) for v in pool.extras[: sizes.vggsound_extra]]
    splits = ["test" if rng.random() < 0.25 else "train" for _ in chosen]
    rows = sorted((s.video.ytid, s.start, _vggsound_label(s), split) for s, split in zip(chosen, splits))
    manifest = ManifestFile(VGGSOUND_CSV)  # VGGSound's CSV has no header
    for row in rows:
        manifest.add(csv_line(row))
    missing = pool.broken_ids[-1]
    manifest.add(csv_line([missing, 0, "raining", "train"]))
    build.add_missing(f"yt/{missing}.mp4", VGGSOUND_CSV)
    good = chosen[0].video.ytid
    manifest.add_bad(csv_line([good, 4, "raining"]), "wrong column count (3 fields)")
    manifest.add_bad(csv_line([good, "four", "raining", "train"]), "bad number: start_seconds 'four'")
    for bad_id, problem in _BAD_IDS:
        manifest.add_bad(csv_line([bad_id, 0, "raining", "train"]), problem)
    build.write_manifest(manifest, "vggsound")


def _vggsound_label(segment: Segment) -> str:
    """VGGSound has one free-text label per clip: the class heard longest."""
    longest = max(segment.events, key=lambda e: (e.end - e.start, e.key))
    return longest.sound.vggsound


def write_audiocaps(build: Build, pool: Pool) -> dict[str, list[Segment]]:
    sizes, rng = Sizes.of(build), build.rng("audiocaps", "plan")
    full = [s for s in pool.segments() if s.full]
    picked = [full[i] for i in rng.permutation(len(full))]
    extras = [Segment(v, v.starts[0]) for v in pool.extras]
    new = extras[sizes.vggsound_extra :]
    splits = {
        "train": picked[: sizes.train_audioset] + extras[: sizes.train_vggsound] + new[: sizes.train_new],
        "val": new[sizes.train_new : sizes.train_new + sizes.val],
        "test": picked[sizes.train_audioset : sizes.train_audioset + sizes.test_audioset]
        + new[sizes.train_new + sizes.val :][: sizes.test_new],
    }
    ids = iter(int(i) for i in rng.choice(range(1, 110_000), size=200, replace=False))
    for split, segments in splits.items():
        _write_audiocaps_split(build, split, segments, ids)
    return splits


def _write_audiocaps_split(build: Build, split: str, segments: list[Segment], ids: Iterator[int]) -> None:
    rng = build.rng("audiocaps", split)
    rel = f"audiocaps/{split}.csv"
    manifest = ManifestFile(rel, header=[AUDIOCAPS_HEADER])
    per_clip = 1 if split == "train" else 5  # AudioCaps train has one caption per clip, val/test five
    order = rng.permutation(len(segments)) if split == "train" else range(len(segments))
    for i in order:
        segment = segments[i]
        texts = captions(rng, segment.events, per_clip)
        manifest.add(*(csv_line([next(ids), segment.video.ytid, segment.start, text]) for text in texts))
    good = segments[0].video.ytid
    manifest.add_bad(csv_line([next(ids), good, SEGMENT]), "wrong column count (3 fields)")
    manifest.add_bad(csv_line([next(ids), good, "ten", "A siren wails"]), "bad number: start_time 'ten'")
    for bad_id, problem in _BAD_IDS:
        manifest.add_bad(csv_line([next(ids), bad_id, 0, "A siren wails"]), problem)
    build.write_manifest(manifest, "audiocaps")
    counts = build.counts["audiocaps"]
    counts[f"{split}_clips"] = len(segments)
    counts[f"{split}_rows"] = len(segments) * per_clip
