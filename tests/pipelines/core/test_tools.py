"""Which ffmpeg runs: the locked imageio-ffmpeg binary unless T2A_FFMPEG says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.core import tools
from pipelines.core.config import ConfigError


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """ffmpeg_exe and ffmpeg_version are memoised per process: forget them around each test."""
    monkeypatch.delenv(tools.FFMPEG_ENV, raising=False)
    tools.ffmpeg_exe.cache_clear(), tools.ffmpeg_version.cache_clear()
    yield
    tools.ffmpeg_exe.cache_clear(), tools.ffmpeg_version.cache_clear()


def fake_ffmpeg(folder: Path, version: str = "5.1-test") -> Path:
    """An `ffmpeg` that says another version and otherwise runs the pinned binary."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "ffmpeg"
    script.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do [ "$a" = "-version" ] && {{ echo "ffmpeg version {version} Copyright"; exit 0; }}; done\n'
        f'exec {tools.bundled_ffmpeg()} "$@"\n'
    )
    script.chmod(0o755)
    return script


def test_default_is_the_wheels_binary_whatever_path_and_imageio_say(tmp_path, monkeypatch):
    other = fake_ffmpeg(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{other.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(other))
    exe = tools.ffmpeg_exe()
    assert exe == tools.bundled_ffmpeg() and "imageio_ffmpeg" in exe and Path(exe).is_file()
    versions = tools.tool_versions()
    assert versions["ffmpeg_origin"] == "imageio-ffmpeg" and versions["ffmpeg"] != "5.1-test"


def test_path_and_a_binary_only_when_configured(tmp_path, monkeypatch):
    other = fake_ffmpeg(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{other.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(tools.FFMPEG_ENV, "PATH")
    assert tools.ffmpeg_exe() == str(other)
    assert tools.tool_versions()["ffmpeg"] == "5.1-test" and tools.ffmpeg_origin() == "PATH"
    tools.ffmpeg_exe.cache_clear(), tools.ffmpeg_version.cache_clear()
    monkeypatch.setenv(tools.FFMPEG_ENV, str(other))
    assert tools.ffmpeg_exe() == str(other) and tools.ffmpeg_origin() == str(other)


def test_a_setting_that_names_no_ffmpeg_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv(tools.FFMPEG_ENV, str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="T2A_FFMPEG=.*nope: not an executable file"):
        tools.ffmpeg_exe()
    tools.ffmpeg_exe.cache_clear()
    monkeypatch.setenv(tools.FFMPEG_ENV, "PATH")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="no ffmpeg on PATH"):
        tools.ffmpeg_exe()
