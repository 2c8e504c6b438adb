"""One ffmpeg pass per clip: trim to the segment, mono, resample, FLAC; and K frames as JPEG.

Built with ffmpeg-python and run as a list of arguments (never a shell), hardened with `-nostdin`,
protocol and demuxer whitelists, a network read timeout, a wall-clock timeout and a cap on the
seconds decoded. Frames are picked uniformly in the segment — the first frame at or after the
centre of each of K equal parts (Make-An-Audio §4.3 pools 4 such frames; CLIPSonic §2 uses one).
They are resized on the shorter side and centre-cropped to a square: CLIP's own preprocessing.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np
import soundfile as sf

from pipelines.core.config import MediaConfig
from pipelines.core.records import ClipFailure
from pipelines.core.tools import ffmpeg_exe

AUDIO_NAME = "audio.flac"
FRAME_PATTERN = "frame_%02d.jpg"  # frame_00.jpg, frame_01.jpg, ...

# Demuxers a media input may use. Playlists (hls, concat) and image2 are left out on purpose: they
# open further files or URLs named inside the input.
FORMAT_WHITELIST = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,wav,w64,flac,mp3,ogg,aac,aiff,caf,au,avi,flv,"
    "mpegts,mpeg,asf,amr,ac3,eac3,mpc,tta,wv,ape"
)
AUDIO_ONLY_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aiff", ".w64"}
# A decoded segment may fall short of what the container promises by a few codec frames.
SHORTFALL_TOLERANCE = 0.25

# Every line tagged with its level ("[in#0 @ 0x55d4…] [error] …"): errors are found by their tag,
# and verbose level adds the input's "Statistics: N bytes read" — what really crossed the network.
LOG_ARGS = ("-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+verbose")
# Errors, and the http layer's warning with the exact status ("HTTP error 416 Requested Range…").
_ERROR_RE = re.compile(r"^(?:\[[^\]]*@ 0x[0-9a-f]+\] )*\[(?:error|fatal|warning)\] (.+)$")
_WRAPPER_RE = re.compile(r"^Error (?:opening|while) [\w ]+?: (.+)$")
_READ_RE = re.compile(r"Statistics: (\d+) bytes read")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_NO_STREAM_MARKERS = ("does not contain any stream", "matches no streams")
_NETWORK_MARKERS = (
    "Stream ends prematurely",
    "Connection refused",
    "Connection reset",
    "Connection timed out",
    "Operation timed out",
    "I/O error",
    "Server returned 5",
    "Server returned 429",
)


NETWORK_PROTOCOLS = "http,https,tcp,tls"  # ffmpeg protocol whitelist for remote inputs


@dataclass(frozen=True)
class MediaInput:
    """A media location ffmpeg can read, and what the backend already knows about it."""

    location: str  # local path or URL handed to ffmpeg (never logged when it carries a secret)
    display: str  # the location as recorded in clip.json and status (no credentials)
    start: float | None  # seek position inside `location`, seconds
    end: float | None
    protocols: str = "file"  # ffmpeg protocol whitelist for this input
    media_duration: float | None = None  # whole-media length where the catalogue says it
    has_video: bool | None = None  # None: unknown, let ffmpeg find out
    fetched_bytes: int = 0  # bytes the backend itself downloaded
    read_timeout: float = 30.0  # seconds without network progress before ffmpeg gives up


@dataclass(frozen=True)
class MediaResult:
    audio: Path
    frames: tuple[Path, ...]
    frame_times: tuple[float, ...]  # nominal times in the segment, seconds
    duration: float  # seconds of real audio decoded (before padding)
    segment: float  # seconds of the written audio (= requested segment when padded)
    padded: bool
    input_duration: float | None  # the container's duration, where it says one
    has_video: bool
    read_bytes: int  # bytes ffmpeg read from the input (over HTTP: the transfer; the segment only)


@dataclass(frozen=True)
class _Plan:
    start: float
    requested: float | None  # seconds asked for; None: the whole media, capped at max_duration
    span: float | None  # seconds over which frames are spread; None: no frames


def normalize(media: MediaInput, out_dir: Path, cfg: MediaConfig) -> MediaResult:
    """Write `audio.flac` (+ frames) for `media` into `out_dir`; raise ClipFailure on bad media."""
    start = media.start or 0.0
    requested = None if media.end is None else media.end - start
    if requested is not None and requested > cfg.max_duration:
        raise ClipFailure(
            f"segment of {requested:.1f} s exceeds media.max_duration {cfg.max_duration:.0f} s", retryable=False
        )
    span = None
    if cfg.frames > 0 and media.has_video is not False and not _audio_only(media.location):
        span = requested if requested is not None else media_span(media, start)
        if span is None:  # a whole-file video of unknown length: read its header first
            total = _probe_duration(media, cfg)
            span = None if total is None else max(0.0, min(total - start, cfg.max_duration))
    plan = _Plan(start, requested, span or None)
    stderr = _run(media, out_dir, cfg, plan)
    if stderr is None:  # no video stream after all: one more pass, audio only
        plan = _Plan(start, requested, None)
        stderr = _run(media, out_dir, cfg, plan)
    return _check(media, out_dir, cfg, plan, stderr)


def media_span(media: MediaInput, start: float) -> float | None:
    if media.media_duration is None:
        return None
    return max(0.0, media.media_duration - start)


def frame_times(span: float, count: int) -> list[float]:
    """Centres of `count` equal parts of [0, span)."""
    return [(i + 0.5) * span / count for i in range(count)]


def _audio_only(location: str) -> bool:
    return Path(location.split("?", 1)[0]).suffix.lower() in AUDIO_ONLY_SUFFIXES


def _input(media: MediaInput, cfg: MediaConfig, plan: _Plan):
    options = {
        "protocol_whitelist": media.protocols,
        "format_whitelist": FORMAT_WHITELIST,
        "t": plan.requested if plan.requested is not None else cfg.max_duration,
    }
    if plan.start:
        options["ss"] = plan.start
    if media.protocols != "file":
        options["rw_timeout"] = int(media.read_timeout * 1_000_000)
        options["reconnect"] = 1
        options["reconnect_on_network_error"] = 1
        options["reconnect_delay_max"] = 2  # resumes cut transfers; retries with backoff are the policy's job
    return ffmpeg.input(media.location, **options)


def _command(media: MediaInput, out_dir: Path, cfg: MediaConfig, plan: _Plan) -> list[str]:
    source = _input(media, cfg, plan)
    audio = source["a:0"].output(
        str(out_dir / AUDIO_NAME),
        ac=1,
        ar=cfg.sample_rate,
        acodec="flac",
        sample_fmt="s16",
        map_metadata=-1,
        fflags="+bitexact",
        **{"flags:a": "+bitexact"},
    )
    outputs = [audio]
    if plan.span is not None:
        step = plan.span / cfg.frames
        first = step / 2
        pick = f"gte(t,{first})*not(eq(floor((t-{first})/{step}),floor((prev_selected_t-{first})/{step})))"
        size = cfg.frame_size
        video = (
            source["v:0"]
            .filter("select", pick)
            .filter("scale", size, size, force_original_aspect_ratio="increase")
            .filter("crop", size, size)
            .output(
                str(out_dir / FRAME_PATTERN),
                vframes=cfg.frames,
                start_number=0,
                fps_mode="passthrough",
                map_metadata=-1,
                fflags="+bitexact",
                **{"q:v": 2, "flags:v": "+bitexact"},
            )
        )
        outputs.append(video)
    return ffmpeg.merge_outputs(*outputs).compile(cmd=[ffmpeg_exe(), *LOG_ARGS], overwrite_output=True)


def _run(media: MediaInput, out_dir: Path, cfg: MediaConfig, plan: _Plan) -> str | None:
    """Run the pass; the stderr text, or None when the video output found no video stream."""
    for stale in out_dir.glob("frame_*.jpg"):
        stale.unlink()
    cmd = _command(media, out_dir, cfg, plan)
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=cfg.timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClipFailure(f"ffmpeg timed out after {cfg.timeout:.0f} s", retryable=True) from None
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode == 0:
        return stderr
    if plan.span is not None and any(m in stderr for m in _NO_STREAM_MARKERS) and _has_audio(stderr):
        return None
    raise _failure(media, plan, stderr)


def _failure(media: MediaInput, plan: _Plan, stderr: str) -> ClipFailure:
    total = _parse_duration(stderr) or media.media_duration
    if total is not None and plan.start >= total:
        return _past_end(plan.start, total)
    if any(marker in stderr for marker in _NO_STREAM_MARKERS) and not _has_audio(stderr):
        return ClipFailure("no audio stream in the media", retryable=False)
    network = media.protocols != "file" and any(marker in stderr for marker in _NETWORK_MARKERS)
    return ClipFailure(f"ffmpeg: {_error_summary(stderr)}", retryable=network)


def _error_summary(stderr: str) -> str:
    """ffmpeg's own cause, once: "Invalid data found when processing input", not three variants."""
    messages: list[str] = []
    for line in stderr.splitlines():
        error = _ERROR_RE.match(line.strip())
        if not error or ("[warning]" in line and not error.group(1).startswith("HTTP error")):
            continue
        text = error.group(1).strip()
        cause = _WRAPPER_RE.match(text)
        if cause:
            text = cause.group(1)
        elif text.startswith("Error opening "):
            continue  # "Error opening input file <path>.": the cause comes on its own line
        if text not in messages:
            messages.append(text)
    return "; ".join(messages[-2:])[-300:] or "ffmpeg failed"


def _past_end(start: float, total: float) -> ClipFailure:
    return ClipFailure(f"segment starts at {start:.2f} s but the media lasts {total:.2f} s", retryable=False)


def _has_audio(stderr: str) -> bool:
    return bool(re.search(r"Stream #0:\d+\S*: Audio:", stderr))


def inspect(media: MediaInput, cfg: MediaConfig) -> ClipFailure | None:
    """Why ffmpeg cannot read `media` (asked after another tool failed on it); None if it can.

    Decodes one second of the audio to nowhere, and classifies a failure like `normalize` does."""
    plan = _Plan(0.0, 1.0, None)
    cmd = _input(media, cfg, plan)["a:0"].output("-", format="null").compile(cmd=[ffmpeg_exe(), *LOG_ARGS])
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=cfg.timeout, check=False)
    except subprocess.TimeoutExpired:
        return ClipFailure(f"ffmpeg timed out after {cfg.timeout:.0f} s", retryable=True)
    if done.returncode == 0:
        return None
    return _failure(media, plan, done.stderr.decode("utf-8", "replace"))


def _probe_duration(media: MediaInput, cfg: MediaConfig) -> float | None:
    """The container duration from ffmpeg's input banner (there may be no ffprobe)."""
    cmd = [
        ffmpeg_exe(),
        "-nostdin",
        "-hide_banner",
        "-protocol_whitelist",
        media.protocols,
        "-format_whitelist",
        FORMAT_WHITELIST,
        "-i",
        media.location,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=cfg.timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClipFailure(f"ffmpeg probe timed out after {cfg.timeout:.0f} s", retryable=True) from None
    return _parse_duration(done.stderr.decode("utf-8", "replace"))


def _parse_duration(stderr: str) -> float | None:
    match = _DURATION_RE.search(stderr)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _check(media: MediaInput, out_dir: Path, cfg: MediaConfig, plan: _Plan, stderr: str) -> MediaResult:
    start, requested = plan.start, plan.requested
    audio = out_dir / AUDIO_NAME
    input_duration = _parse_duration(stderr) or media.media_duration
    decoded = sf.info(str(audio)).frames / cfg.sample_rate if audio.exists() else 0.0
    if input_duration is not None and start >= input_duration:
        raise _past_end(start, input_duration)
    if decoded <= 0:
        raise ClipFailure("no audio decoded (empty or undecodable audio stream)", retryable=False)
    if input_duration is not None:
        available = max(0.0, input_duration - start)
        expected = min(requested, available) if requested is not None else min(available, cfg.max_duration)
        if decoded < expected - SHORTFALL_TOLERANCE:
            raise ClipFailure(
                f"decoded {decoded:.2f} s of the {expected:.2f} s expected (media lasts {input_duration:.2f} s): truncated or corrupt",
                retryable=media.protocols != "file",
            )
    padded = requested is not None and decoded < requested
    if padded:
        _pad(audio, cfg.sample_rate, requested)
    frames = tuple(sorted(out_dir.glob("frame_*.jpg"))) if plan.span else ()
    times = tuple(frame_times(plan.span, cfg.frames)[: len(frames)]) if frames else ()
    read = sum(int(n) for n in _READ_RE.findall(stderr))
    return MediaResult(
        audio, frames, times, decoded, requested if padded else decoded, padded, input_duration, bool(frames), read
    )


def _pad(audio: Path, sample_rate: int, seconds: float) -> None:
    """Pad with silence to the segment length (AudioSet segments often run past the media's end)."""
    data, rate = sf.read(str(audio), dtype="int16")
    target = int(round(seconds * sample_rate))
    padded = np.zeros(target, dtype=np.int16)
    padded[: min(target, len(data))] = data[:target]
    sf.write(str(audio), padded, rate, format="FLAC", subtype="PCM_16")
