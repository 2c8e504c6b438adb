"""The frames a video query takes are the ones ingest takes from the same video (pipelines/core/frames.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines.core.config import ConfigError, MediaConfig
from pipelines.core.frames import frame_times, video_frames
from pipelines.core.tools import ffmpeg_exe
from pipelines.ingest.media import MediaInput, normalize


def _mp4(path: Path, seconds: int = 4) -> Path:
    video = ["-f", "lavfi", "-i", f"testsrc=size=96x64:rate=25:duration={seconds}"]
    audio = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate=16000"]
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *video, *audio, "-shortest", str(path)], check=True)
    return path


def test_video_frames_are_the_frames_ingest_takes(tmp_path):
    clip = _mp4(tmp_path / "clip.mp4")
    (tmp_path / "ingest").mkdir()
    ingested = normalize(
        MediaInput(location=str(clip), display="clip.mp4", start=None, end=None, media_duration=4.0),
        tmp_path / "ingest",
        MediaConfig(frames=4, frame_size=32, sample_rate=16000),
    )
    assert ingested.frame_times == tuple(frame_times(4.0, 4))
    taken = video_frames(clip, count=4, size=32)
    assert len(taken) == 4 and taken == [f.read_bytes() for f in ingested.frames]
    assert len(set(taken)) == 4  # four different moments of the test pattern


def test_a_file_that_is_not_a_video_is_one_config_error(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"not a video")
    with pytest.raises(ConfigError, match="x.mp4: cannot read the video"):
        video_frames(tmp_path / "x.mp4")
    with pytest.raises(ConfigError, match="no such video file"):
        video_frames(tmp_path / "none.mp4")
