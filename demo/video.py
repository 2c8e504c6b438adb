"""Encoding the demo corpus's media with the bundled ffmpeg (imageio-ffmpeg; there is no system one).

Every output is byte-reproducible: ffmpeg runs single-threaded with `+bitexact` (no encoder version
strings, fixed Ogg serial numbers) and without metadata, and its input is raw frames and a WAV that
depend only on the events. Frames show what plays at each moment: one coloured band per active
class with its name, and a progress bar, so a person checking a clip can see the ground truth.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFont, features

from demo.events import Event
from demo.sounds import SOUNDS

log = logging.getLogger(__name__)

FPS = 25
SIZE = (320, 240)
SAMPLE_RATE = 44100
_IDLE_COLOUR = (30, 30, 30)

_DETERMINISTIC = ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
_H264 = ["-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-pix_fmt", "yuv420p", "-threads", "1"]
# The "fast" coder: twice the speed of the default two-loop search; quality is irrelevant here.
_AAC = ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "64k", "-ar", str(SAMPLE_RATE), "-ac", "2"]
# Audio-only codecs by file suffix; bitrates are low because the corpus must stay small.
_AUDIO_CODECS = {
    ".flac": ["-c:a", "flac"],
    ".ogg": ["-c:a", "libvorbis", "-q:a", "1"],
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
}


class FfmpegError(RuntimeError):
    """ffmpeg failed on an input the generator made itself: a bug or a broken ffmpeg build."""


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: Sequence[str], frames: Iterable[bytes] | None = None) -> None:
    """Run ffmpeg with an argument list (never a shell), feeding raw frames on stdin if given."""
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    # stderr goes to a file, not a pipe: a pipe nobody reads while frames are written can deadlock.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.PIPE if frames is not None else None, stderr=errors)
        try:
            for frame in frames or ():
                process.stdin.write(frame)
        except BrokenPipeError:
            pass  # ffmpeg died early; its exit status and stderr say why
        finally:
            if process.stdin:
                process.stdin.close()
        code = process.wait()
        if code != 0:
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip()[-2000:]
            raise FfmpegError(f"ffmpeg exited with {code} for {command[-1]}: {message}")


def write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    sf.write(str(path), audio, sr, subtype="PCM_16", format="WAV")


def encode_audio(path: Path, audio: np.ndarray, sr: int) -> None:
    """Write `audio` (samples, channels) in the format the suffix names: .wav, .flac, .ogg, .mp3."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".wav":
        write_wav(path, audio, sr)
        return
    codec = _AUDIO_CODECS[path.suffix]
    with tempfile.TemporaryDirectory(prefix="t2a-demo-") as tmp:
        source = Path(tmp) / "audio.wav"
        write_wav(source, audio, sr)
        run_ffmpeg(["-i", str(source), *codec, *_DETERMINISTIC, "-threads", "1", str(path)])


def encode_mp4(path: Path, audio: np.ndarray | None, events: Sequence[Event], seconds: float) -> None:
    """An H.264 320x240 25 fps MP4 of `seconds`, with AAC 44.1 kHz stereo unless `audio` is None."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = SIZE
    video_in = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(FPS), "-i", "pipe:0"]
    with tempfile.TemporaryDirectory(prefix="t2a-demo-") as tmp:
        if audio is None:
            inputs, streams = video_in, ["-map", "0:v", "-an"]
        else:
            source = Path(tmp) / "audio.wav"
            write_wav(source, audio, SAMPLE_RATE)
            inputs, streams = [*video_in, "-i", str(source)], ["-map", "0:v", "-map", "1:a", *_AAC]
        output = ["-t", f"{seconds:.3f}", *_H264, *_DETERMINISTIC, "-movflags", "+faststart", str(path)]
        run_ffmpeg([*inputs, *streams, *output], frames(events, seconds))


def frames(events: Sequence[Event], seconds: float) -> Iterator[bytes]:
    """Raw RGB frames; each distinct set of active classes is drawn once and reused."""
    w, h = SIZE
    count = int(round(seconds * FPS))
    drawn: dict[tuple[str, ...], np.ndarray] = {}
    for i in range(count):
        t = i / FPS
        active = tuple(e.key for e in events if e.start <= t < e.end)
        if active not in drawn:
            drawn[active] = _state_image(active)
        frame = drawn[active].copy()
        frame[h - 10 : h - 4, : max(1, (i + 1) * w // count)] = 255  # progress bar
        yield frame.tobytes()


def _state_image(active: tuple[str, ...]) -> np.ndarray:
    w, h = SIZE
    image = Image.new("RGB", SIZE, _IDLE_COLOUR)
    draw = ImageDraw.Draw(image)
    font = _font()
    if not active:
        draw.text((w // 2, h // 2), "(background)", fill=(200, 200, 200), font=font, anchor="mm")
    band = w / max(1, len(active))
    for i, key in enumerate(active):
        sound = SOUNDS[key]
        left, right = int(i * band), int((i + 1) * band)
        draw.rectangle([left, 0, right, h - 12], fill=sound.colour)
        ink = (0, 0, 0) if sum(sound.colour) > 380 else (255, 255, 255)  # dark text on light colours
        label = sound.name.replace(", ", ",\n")
        draw.multiline_text(((left + right) // 2, h // 2), label, fill=ink, font=font, anchor="mm", align="center")
    return np.asarray(image, dtype=np.uint8)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's default font scales only when FreeType is there; the bitmap fallback is fixed-size.
    return ImageFont.load_default(size=18) if features.check("freetype2") else ImageFont.load_default()
