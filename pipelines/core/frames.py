"""Which video frames a clip's CLIP embeddings come from, shared by ingest (pipelines/ingest/media.py,
the corpus frames) and the trainer's video queries (`t2a sample --query video`), so a query video's
frames are picked exactly as the corpus's were: the first frame at or after the centre of each of K equal
parts of the span (Make-An-Audio §4.3 pools 4 such frames; CLIPSonic §2 conditions on one), resized on
the shorter side and centre-cropped to a square (CLIP's own preprocessing).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import ffmpeg

from pipelines.core.config import ConfigError
from pipelines.core.tools import ffmpeg_command

_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")


def frame_times(span: float, count: int) -> list[float]:
    """Centres of `count` equal parts of [0, span)."""
    return [(i + 0.5) * span / count for i in range(count)]


def uniform_pick(stream, span: float, count: int):
    """ffmpeg `select`: the first frame at or after each centre of `count` equal parts of `span` seconds."""
    step = span / count
    first = step / 2
    pick = f"gte(t,{first})*not(eq(floor((t-{first})/{step}),floor((prev_selected_t-{first})/{step})))"
    return stream.filter("select", pick)


def square(stream, size: int):
    """Shorter side to `size`, centre crop to size × size."""
    return stream.filter("scale", size, size, force_original_aspect_ratio="increase").filter("crop", size, size)


def video_frames(path: Path, count: int = 4, size: int = 224, timeout: float = 300.0) -> list[bytes]:
    """JPEG bytes of `count` frames spread over a local video file as ingest spreads them over a clip."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such video file")
    base = [*ffmpeg_command(), "-nostdin", "-hide_banner"]
    probe = subprocess.run([*base, "-i", str(path)], capture_output=True, timeout=timeout, check=False)
    match = _DURATION.search(probe.stderr.decode("utf-8", "replace"))
    if not match:
        raise ConfigError(f"{path}: cannot read the video (ffmpeg finds no duration; not a media file?)")
    hours, minutes, seconds = match.groups()
    span = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    with tempfile.TemporaryDirectory(prefix="t2a-frames-") as folder:
        pattern = str(Path(folder) / "frame_%02d.jpg")
        selected = square(uniform_pick(ffmpeg.input(str(path))["v:0"], span, count), size)
        out = selected.output(
            pattern,
            vframes=count,
            start_number=0,
            fps_mode="passthrough",
            map_metadata=-1,
            fflags="+bitexact",
            **{"q:v": 2, "flags:v": "+bitexact"},
        )
        cmd = out.compile(cmd=[*base, "-loglevel", "error"], overwrite_output=True)
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        frames = sorted(Path(folder).glob("frame_*.jpg"))
        if done.returncode != 0 or not frames:
            last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no video stream"])[-1]
            raise ConfigError(f"{path}: cannot read the video's frames ({last})")
        return [frame.read_bytes() for frame in frames]
