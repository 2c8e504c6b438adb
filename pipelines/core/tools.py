"""External tools: where ffmpeg is, and the versions recorded in every output's provenance."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """ffmpeg from PATH, else the binary shipped with the imageio-ffmpeg package."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"ffmpeg version (\S+)", out.stdout)
    return match.group(1) if match else "unknown"


def run_ffmpeg(*args: str, timeout: float = 600) -> None:
    """Run ffmpeg quietly with a list of arguments; raise CalledProcessError with its stderr."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)


def ensure_ffmpeg_on_path() -> None:
    """Put an executable named `ffmpeg` on PATH for this process.

    yt-dlp decides whether it can cut sections by looking for a program named `ffmpeg`; its
    `ffmpeg_location` option is not consulted on that path (yt-dlp's FFmpegFD.available), and
    imageio-ffmpeg's binary has a versioned name. A symlink folder fixes both.
    """
    if shutil.which("ffmpeg"):
        return
    folder = Path(tempfile.gettempdir()) / f"t2a-ffmpeg-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    link = folder / "ffmpeg"
    if not link.exists():
        tmp = folder / f".ffmpeg-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(ffmpeg_exe())
        tmp.replace(link)  # atomic: concurrent workers never see a half-made link
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def tool_versions() -> dict[str, str]:
    return {
        "t2a": package_version("t2a"),
        "ffmpeg": ffmpeg_version(),
        "yt_dlp": package_version("yt-dlp"),
        "apache_beam": package_version("apache-beam"),
    }
