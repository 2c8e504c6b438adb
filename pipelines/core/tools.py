"""External tools: which ffmpeg runs (pinned: the locked imageio-ffmpeg binary unless `T2A_FFMPEG`
says otherwise), and the versions recorded in every output's provenance."""

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
from importlib import metadata, resources
from pathlib import Path

FFMPEG_ENV = "T2A_FFMPEG"  # unset: the locked imageio-ffmpeg binary; "PATH": ffmpeg from PATH; else a binary's path


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The one ffmpeg every clip is encoded with: pinned, so every worker writes the same bytes.

    By default the binary the locked imageio-ffmpeg wheel ships (its `binaries/` folder; neither
    PATH nor imageio-ffmpeg's own IMAGEIO_FFMPEG_EXE is consulted: Debian's ffmpeg 5.1 and the
    wheel's 9.0 encode different FLAC and JPEG bytes). `T2A_FFMPEG=PATH` takes the ffmpeg on PATH
    (not the wrapper `ensure_ffmpeg_on_path` puts there), `T2A_FFMPEG=/path/to/ffmpeg` that binary.
    A setting that names no runnable ffmpeg is a ConfigError."""
    from pipelines.core.config import ConfigError  # config imports nothing of tools

    chosen = os.environ.get(FFMPEG_ENV, "").strip()
    if chosen == "PATH":
        path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if not _is_wrapper_folder(p))
        found = shutil.which("ffmpeg", path=path)
        if found is None:
            raise ConfigError(
                f"{FFMPEG_ENV}=PATH but there is no ffmpeg on PATH; unset {FFMPEG_ENV} to use the pinned one"
            )
        return found
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise ConfigError(f"{FFMPEG_ENV}={chosen}: not an executable file; unset it to use the pinned ffmpeg")
        return os.path.abspath(chosen)
    return bundled_ffmpeg()


def bundled_ffmpeg() -> str:
    """The ffmpeg binary inside the installed imageio-ffmpeg wheel (the version requirements.lock pins)."""
    from pipelines.core.config import ConfigError

    try:
        from imageio_ffmpeg._definitions import FNAME_PER_PLATFORM, get_platform
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a dependency
        raise ConfigError(f"imageio-ffmpeg is not installed: install it, or set {FFMPEG_ENV}") from None
    folder = Path(str(resources.files("imageio_ffmpeg.binaries") / "__init__.py")).parent
    name = FNAME_PER_PLATFORM.get(get_platform(), "")
    exe = folder / name
    if not name or not exe.is_file():
        raise ConfigError(
            f"the imageio-ffmpeg wheel has no ffmpeg binary for this platform ({get_platform()}): "
            f"set {FFMPEG_ENV}=PATH or {FFMPEG_ENV}=/path/to/ffmpeg"
        )
    return str(exe)


def ffmpeg_origin() -> str:
    """Which ffmpeg was chosen: "imageio-ffmpeg" (pinned), "PATH", or the configured binary's path."""
    chosen = os.environ.get(FFMPEG_ENV, "").strip()
    return chosen if chosen == "PATH" else (ffmpeg_exe() if chosen else "imageio-ffmpeg")


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
        "ffmpeg_origin": ffmpeg_origin(),
        "yt_dlp": package_version("yt-dlp"),
        "apache_beam": package_version("apache-beam"),
    }
