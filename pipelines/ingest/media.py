"""One ffmpeg pass per clip: trim to the segment, mono, resample, FLAC; and K frames as JPEG.

Built with ffmpeg-python and run as a list of arguments (never a shell), hardened with `-nostdin`,
protocol and demuxer whitelists, a network read timeout, a wall-clock timeout and a cap on the
seconds decoded. Frames are picked uniformly in the segment — the first frame at or after the
centre of each of K equal parts (Make-An-Audio §4.3 pools 4 such frames; CLIPSonic §2 uses one).
They are resized on the shorter side and centre-cropped to a square: CLIP's own preprocessing
(pipelines/core/frames.py, shared with the trainer's video queries).
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
from pipelines.core.frames import frame_times, square, uniform_pick
from pipelines.core.io import StorageFull, storage_problem
from pipelines.core.records import ClipFailure
from pipelines.core.tools import ffmpeg_command

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
_AUDIO_RATE_RE = re.compile(r"Stream #0:\d+\S*: Audio: [^\n]*?, (\d+) Hz")
_VIDEO_FRAMES_RE = re.compile(r"Output stream #0:0 \(video\): (\d+) frames encoded")
_SHOWINFO_RE = re.compile(r"\[Parsed_showinfo_\d+ @ 0x[0-9a-f]+\] \[info\] n:\s*\d+ pts:\s*-?\d+ pts_time:(-?[0-9.]+)")
# What ffmpeg says when the frames output got no frame at all: the video track has none at the
# positions asked for (a cover image, a video track shorter than the audio).
_NO_FRAME_MARKERS = ("Could not open encoder before EOF", "received no packets")
# Sample rates a real recording has; a header claiming 2 GHz is corrupt or crafted (issue 14, item 8).
PLAUSIBLE_RATES = (1000, 768000)
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
    frame_times: tuple[float, ...]  # times in the segment, seconds (nominal, or the frames' own)
    duration: float  # seconds of real audio decoded (before padding)
    segment: float  # seconds of the written audio (= requested segment when padded)
    padded: bool
    input_duration: float | None  # the container's duration, where it says one
    has_video: bool
    read_bytes: int  # bytes ffmpeg read from the input (over HTTP: the transfer; the segment only)
    video_note: str = ""  # why there are fewer frames than media.frames, where the video is to blame


@dataclass(frozen=True)
class _Plan:
    start: float
    requested: float | None  # seconds asked for; None: the whole media, capped at max_duration
    span: float | None  # seconds over which frames are spread; None: no frames
    pick: tuple[int, ...] = ()  # frame numbers to take instead (a video track shorter than `span`)


# What a pass found besides success (`_run` returns the stderr text then).
_NO_VIDEO = "no video stream"
_NO_FRAMES = "no frame at the positions"


def normalize(media: MediaInput, out_dir: Path, cfg: MediaConfig) -> MediaResult:
    """Write `audio.flac` (+ frames) for `media` into `out_dir`; raise ClipFailure on bad media.

    Frames never cost the audio: a media item without a video stream gets an audio-only pass, and
    one whose video track has no frame at the K positions (a 1-frame cover image, a 1-s video
    under 10 s of audio) gets its frames from the video that exists, spread over its frames;
    `video_note` says so. A clip with no usable video has no frames, and is not a failure."""
    start = media.start or 0.0
    requested = None if media.end is None else media.end - start
    if requested is not None and requested > cfg.max_duration:
        raise ClipFailure(
            f"segment of {requested:.1f} s exceeds media.max_duration {cfg.max_duration:.0f} s", retryable=False
        )
    span, note = None, ""
    if cfg.frames > 0 and (media.has_video is False or _audio_only(media.location)):
        note = "audio-only media: no frames"
    elif cfg.frames > 0:
        span = requested if requested is not None else media_span(media, start)
        if span is None:  # a whole-file video of unknown length: read its header first
            total = _probe_duration(media, cfg)
            span = None if total is None else max(0.0, min(total - start, cfg.max_duration))
        if not span:
            note = "the media's length is unknown: no frames" if span is None else "no video in the segment: no frames"
    plan = _Plan(start, requested, span or None)
    stderr = _run(media, out_dir, cfg, plan)
    if stderr == _NO_FRAMES:
        plan, note = _short_video_plan(media, cfg, plan)
        stderr = _run(media, out_dir, cfg, plan) if plan.pick else _NO_VIDEO
        if stderr == _NO_FRAMES:
            note = f"{note}; none could be taken"
    if stderr in (_NO_VIDEO, _NO_FRAMES):  # no usable video after all: one more pass, audio only
        note = note or "no video stream: no frames"
        plan = _Plan(start, requested, None)
        stderr = _run(media, out_dir, cfg, plan)
    return _check(media, out_dir, cfg, plan, stderr, note)


def _short_video_plan(media: MediaInput, cfg: MediaConfig, plan: _Plan) -> tuple[_Plan, str]:
    """A video track with no frame at any of the K positions: count its frames in the segment and
    take K of them spread evenly (all of them when there are fewer)."""
    count = _video_frames(media, cfg, plan)
    where = f"the {plan.span:.2f}-s segment" if plan.span else "the segment"
    if count == 0:
        return _Plan(plan.start, plan.requested, None), f"no video frames in {where}: no frames"
    pick = tuple(sorted({int((i + 0.5) * count / cfg.frames) for i in range(cfg.frames)}))
    note = f"the video track has {count} frame(s) in {where}, none at the {cfg.frames} frame positions: {len(pick)} spread over them"
    return _Plan(plan.start, plan.requested, None, pick), note


def _video_frames(media: MediaInput, cfg: MediaConfig, plan: _Plan) -> int:
    """Frames of the first video stream inside the segment (decoded to nowhere)."""
    cmd = _input(media, cfg, plan)["v:0"].output("-", format="null").compile(cmd=[*ffmpeg_command(), *LOG_ARGS])
    stderr = _execute(cmd, cfg)
    match = _VIDEO_FRAMES_RE.search(stderr)
    return int(match.group(1)) if match else 0


def media_span(media: MediaInput, start: float) -> float | None:
    if media.media_duration is None:
        return None
    return max(0.0, media.media_duration - start)


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
    if plan.span is not None or plan.pick:
        if plan.pick:  # by frame number, and the frames' own times logged (showinfo)
            selected = source["v:0"].filter("select", "+".join(f"eq(n,{n})" for n in plan.pick)).filter("showinfo")
        else:  # pipelines.core.frames: the trainer's video queries pick theirs the same way
            selected = uniform_pick(source["v:0"], plan.span, cfg.frames)
        video = square(selected, cfg.frame_size).output(
            str(out_dir / FRAME_PATTERN),
            vframes=len(plan.pick) or cfg.frames,
            start_number=0,
            fps_mode="passthrough",
            map_metadata=-1,
            fflags="+bitexact",
            **{"q:v": 2, "flags:v": "+bitexact"},
        )
        outputs.append(video)
    return ffmpeg.merge_outputs(*outputs).compile(cmd=[*ffmpeg_command(), *LOG_ARGS], overwrite_output=True)


def _run(media: MediaInput, out_dir: Path, cfg: MediaConfig, plan: _Plan) -> str:
    """Run the pass; the stderr text, or _NO_VIDEO / _NO_FRAMES when only the frames output failed
    (no video stream; no frame at the positions asked for)."""
    for stale in out_dir.glob("frame_*.jpg"):
        stale.unlink()
    cmd = _command(media, out_dir, cfg, plan)
    with_frames = plan.span is not None or bool(plan.pick)
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=cfg.timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClipFailure(f"ffmpeg timed out after {cfg.timeout:.0f} s", retryable=True) from None
    stderr = done.stderr.decode("utf-8", "replace")
    _check_storage(stderr, out_dir)
    if done.returncode == 0:
        if with_frames and not any(out_dir.glob("frame_*.jpg")):
            return _NO_FRAMES  # "Output file is empty, nothing was encoded" (an attached cover picture)
        return stderr
    if with_frames and _has_audio(stderr):
        if any(m in stderr for m in _NO_STREAM_MARKERS):
            return _NO_VIDEO
        if any(m in stderr for m in _NO_FRAME_MARKERS):
            return _NO_FRAMES
    raise _failure(media, plan, stderr)


def _execute(cmd: list[str], cfg: MediaConfig) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=cfg.timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClipFailure(f"ffmpeg timed out after {cfg.timeout:.0f} s", retryable=True) from None
    return done.stderr.decode("utf-8", "replace")


def _check_storage(stderr: str, out_dir: Path) -> None:
    """ffmpeg could not write its output for lack of space: the machine's fault, not the clip's."""
    for line in stderr.splitlines():
        problem = storage_problem(line) if "[error]" in line or "[fatal]" in line else None
        if problem:
            raise StorageFull(out_dir, problem)


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
    cmd = _input(media, cfg, plan)["a:0"].output("-", format="null").compile(cmd=[*ffmpeg_command(), *LOG_ARGS])
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
        *ffmpeg_command(),
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


def _check(media: MediaInput, out_dir: Path, cfg: MediaConfig, plan: _Plan, stderr: str, note: str = "") -> MediaResult:
    start, requested = plan.start, plan.requested
    audio = out_dir / AUDIO_NAME
    input_duration = _parse_duration(stderr) or media.media_duration
    rate = _input_rate(stderr)
    if rate is not None and not PLAUSIBLE_RATES[0] <= rate <= PLAUSIBLE_RATES[1]:
        low, high = PLAUSIBLE_RATES
        raise ClipFailure(
            f"implausible sample rate {rate} Hz in the media header (expected {low}-{high} Hz): corrupt or crafted",
            retryable=False,
        )
    if input_duration is not None and start >= input_duration:
        raise _past_end(start, input_duration)
    decoded = count_samples(audio) / cfg.sample_rate if audio.exists() else 0.0
    if decoded <= 0:
        raise ClipFailure("no audio decoded (empty or undecodable audio stream)", retryable=False)
    if decoded < cfg.min_duration:
        raise ClipFailure(
            f"only {decoded:.4f} s of audio decoded, under media.min_duration {cfg.min_duration:g} s", retryable=False
        )
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
    frames = tuple(sorted(out_dir.glob("frame_*.jpg"))) if plan.span or plan.pick else ()
    if plan.pick:
        times = tuple(max(0.0, float(t)) for t in _SHOWINFO_RE.findall(stderr))[: len(frames)]
        times += (0.0,) * (len(frames) - len(times))
    else:
        times = tuple(frame_times(plan.span, cfg.frames)[: len(frames)]) if frames else ()
    read = sum(int(n) for n in _READ_RE.findall(stderr))
    return MediaResult(
        audio,
        frames,
        times,
        decoded,
        requested if padded else decoded,
        padded,
        input_duration,
        bool(frames),
        read,
        note,
    )


def count_samples(audio: Path) -> int:
    """Samples really in a FLAC file, counted by decoding it: its header may say nothing (ffmpeg
    writes "unknown" when nothing was decoded, which soundfile reports as 2^63-1 frames; issue 14,
    item 7). A file libsndfile cannot read holds no usable sample either."""
    try:
        with sf.SoundFile(str(audio)) as handle:
            count = 0
            while True:
                block = handle.read(1 << 16, dtype="int16")
                if not len(block):
                    return count
                count += len(block)
    except (sf.LibsndfileError, RuntimeError):
        return 0  # ffmpeg wrote a header and no audio frame: nothing was decoded


def _input_rate(stderr: str) -> int | None:
    match = _AUDIO_RATE_RE.search(stderr)
    return int(match.group(1)) if match else None


def _pad(audio: Path, sample_rate: int, seconds: float) -> None:
    """Pad with silence to the segment length (AudioSet segments often run past the media's end)."""
    data, rate = sf.read(str(audio), dtype="int16")
    target = int(round(seconds * sample_rate))
    padded = np.zeros(target, dtype=np.int16)
    padded[: min(target, len(data))] = data[:target]
    sf.write(str(audio), padded, rate, format="FLAC", subtype="PCM_16")
