"""Shared fixtures: real media made with ffmpeg, a loopback HTTP server per test, the demo's tiny models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.models import build_demo_models
from demo.server import LoopbackServer
from pipelines.core.tools import run_ffmpeg as _ffmpeg


@dataclass(frozen=True)
class Media:
    folder: Path
    video: Path  # 20 s, H.264 320x240 25 fps + AAC 44.1 kHz stereo, index first
    wav: Path  # 12 s, 44.1 kHz stereo
    noaudio: Path  # 6 s of video, no audio stream
    corrupt: Path  # random bytes named .mp4
    empty: Path
    truncated: Path  # the first third of `video`


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    folder = tmp_path_factory.mktemp("media")
    video, wav, noaudio = folder / "video.mp4", folder / "tone.wav", folder / "noaudio.mp4"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25:duration=20",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=20:sample_rate=44100",
        "-ac",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "50",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-movflags",
        "+faststart",
        "-shortest",
        str(video),
    )
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=220:duration=12:sample_rate=44100", "-ac", "2", str(wav))
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=25:duration=6",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(noaudio),
    )
    corrupt, empty, truncated = folder / "corrupt.mp4", folder / "empty.mp4", folder / "truncated.mp4"
    corrupt.write_bytes(bytes(range(256)) * 64)
    empty.write_bytes(b"")
    truncated.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    return Media(folder, video, wav, noaudio, corrupt, empty, truncated)


@pytest.fixture()
def server(tmp_path: Path):
    """A LoopbackServer serving `tmp_path / "www"`; tests add files and faults."""
    root = tmp_path / "www"
    root.mkdir()
    with LoopbackServer(root) as srv:
        yield srv


@pytest.fixture()
def hf_offline(tmp_path, monkeypatch):
    """Hugging Face `datasets`, offline, with its caches under tmp_path."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setattr(datasets.config, name, True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    datasets.disable_progress_bars()
    return datasets


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random CLAP and CLIP (demo.models), built once per session; nothing is downloaded."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return build_demo_models(tmp_path_factory.mktemp("models"), seed=0)
