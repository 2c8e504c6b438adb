"""External tools: where ffmpeg is, and the versions recorded in every output's provenance."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from importlib import metadata
from pathlib import Path


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """ffmpeg from PATH (not the wrapper `ensure_ffmpeg_on_path` puts there), else the binary
    shipped with the imageio-ffmpeg package."""
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if not _is_wrapper_folder(p))
    found = shutil.which("ffmpeg", path=path)
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=1)
def die_with_parent() -> tuple[str, ...]:
    """A command prefix that makes the child die (SIGKILL) when the thread that started it dies:
    util-linux's `setpriv --pdeathsig`, which survives the exec. A killed ingest (kill -9, an OOM
    kill, a preempted worker) then leaves no ffmpeg reading on. Empty where there is no setpriv."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or sys.platform != "linux":
        return ()
    done = subprocess.run([setpriv, "--pdeathsig", "KILL", "--", "true"], capture_output=True, timeout=30)
    return (setpriv, "--pdeathsig", "KILL", "--") if done.returncode == 0 else ()


def ffmpeg_command() -> list[str]:
    """How to start ffmpeg: the binary behind `die_with_parent`'s prefix."""
    return [*die_with_parent(), ffmpeg_exe()]


@functools.lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"ffmpeg version (\S+)", out.stdout)
    return match.group(1) if match else "unknown"


def run_ffmpeg(*args: str, timeout: float = 600) -> None:
    """Run ffmpeg quietly with a list of arguments; raise CalledProcessError with its stderr."""
    cmd = [*ffmpeg_command(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)


_WRAPPER_PREFIX = "t2a-ffmpeg-"


def _wrapper_folder(command: str) -> Path:
    """One folder per ffmpeg command: processes of other checkouts never rewrite each other's script."""
    digest = hashlib.sha256(command.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"{_WRAPPER_PREFIX}{os.getuid()}-{digest}"


def _is_wrapper_folder(entry: str) -> bool:
    return Path(entry).parent == Path(tempfile.gettempdir()) and Path(entry).name.startswith(_WRAPPER_PREFIX)


def ensure_ffmpeg_on_path() -> None:
    """Put an executable named `ffmpeg` first on PATH for this process, for yt-dlp.

    yt-dlp decides whether it can cut sections by looking for a program named `ffmpeg`; its
    `ffmpeg_location` option is not consulted on that path (yt-dlp's FFmpegFD.available), and
    imageio-ffmpeg's binary has a versioned name. yt-dlp starts that ffmpeg itself, so the program
    is a two-line script that execs the real one behind `die_with_parent`'s prefix: a killed
    ingest leaves no yt-dlp ffmpeg running either.
    """
    command = " ".join(shlex.quote(part) for part in ffmpeg_command())
    folder = _wrapper_folder(command)
    if os.environ.get("PATH", "").split(os.pathsep)[0] == str(folder):
        return
    folder.mkdir(exist_ok=True)
    script = f'#!/bin/sh\nexec {command} "$@"\n'
    link = folder / "ffmpeg"
    if not link.is_file() or link.is_symlink() or link.read_text(errors="replace") != script:
        tmp = folder / f".ffmpeg-{os.getpid()}-{threading.get_ident()}"
        tmp.unlink(missing_ok=True)
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(link)  # atomic: concurrent workers never see a half-made script
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
