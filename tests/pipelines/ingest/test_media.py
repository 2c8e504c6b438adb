"""The ffmpeg pass on real media: durations, padding, frames, failures, determinism, hardening."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import soundfile as sf
from PIL import Image

from pipelines.core.config import MediaConfig
from pipelines.core.records import ClipFailure
from pipelines.core.tools import die_with_parent, ffmpeg_exe
from pipelines.ingest.media import NETWORK_PROTOCOLS, MediaInput, _command, _Plan, frame_times, normalize

CFG = MediaConfig(timeout=60)


def local(path: Path, start: float | None = None, end: float | None = None) -> MediaInput:
    return MediaInput(location=str(path), display=path.name, start=start, end=end)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_segment_of_a_video_gives_exact_audio_and_centred_frames(media, tmp_path):
    result = normalize(local(media.video, 5.0, 15.0), tmp_path, CFG)
    info = sf.info(str(result.audio))
    assert (info.samplerate, info.channels, info.frames) == (48000, 1, 480000)
    assert info.subtype == "PCM_16"
    assert [f.name for f in result.frames] == ["frame_00.jpg", "frame_01.jpg", "frame_02.jpg", "frame_03.jpg"]
    assert result.frame_times == (1.25, 3.75, 6.25, 8.75)
    assert all(Image.open(f).size == (224, 224) for f in result.frames)
    assert (result.duration, result.padded, result.input_duration) == (10.0, False, 20.0)


def test_output_is_byte_identical_across_runs(media, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    normalize(local(media.video, 2.0, 12.0), first, CFG)
    normalize(local(media.video, 2.0, 12.0), second, CFG)
    assert {p.name: sha(p) for p in first.iterdir()} == {p.name: sha(p) for p in second.iterdir()}


def test_segment_past_the_end_is_padded_and_true_duration_recorded(media, tmp_path):
    result = normalize(local(media.video, 15.0, 25.0), tmp_path, CFG)
    assert result.padded and result.duration == pytest.approx(5.0, abs=0.05)
    assert result.segment == 10.0
    assert sf.info(str(result.audio)).frames == 480000
    audio, _ = sf.read(str(result.audio))
    assert abs(audio[: 4 * 48000]).max() > 0.05 and abs(audio[-4 * 48000 :]).max() == 0.0
    assert len(result.frames) == 2  # frames exist only where the video does


def test_segment_starting_after_the_end_is_permanent(media, tmp_path):
    with pytest.raises(ClipFailure, match="segment starts at 30.00 s but the media lasts 20.00 s") as caught:
        normalize(local(media.video, 30.0, 40.0), tmp_path, CFG)
    assert not caught.value.retryable


def test_audio_only_input_has_no_frames_and_whole_file_is_capped(media, tmp_path):
    result = normalize(local(media.wav), tmp_path, CFG)
    assert result.frames == () and result.duration == pytest.approx(12.0)
    capped = normalize(local(media.wav), tmp_path, MediaConfig(max_duration=3.0, frames=0))
    assert capped.duration == pytest.approx(3.0)


def test_whole_video_of_unknown_length_spreads_frames_over_it(media, tmp_path):
    result = normalize(local(media.video), tmp_path, MediaConfig(frames=2))
    assert result.frame_times == (5.0, 15.0)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("noaudio", "no audio stream in the media"),
        ("corrupt", "Invalid data found"),
        ("empty", "Invalid data found"),
        ("truncated", "truncated or corrupt"),
    ],
)
def test_bad_local_media_is_a_permanent_failure(media, tmp_path, name, reason):
    with pytest.raises(ClipFailure, match=reason) as caught:
        normalize(local(getattr(media, name), 0.0, 5.0 if name != "truncated" else 18.0), tmp_path, CFG)
    assert not caught.value.retryable


def test_segment_longer_than_the_cap_is_refused(media, tmp_path):
    with pytest.raises(ClipFailure, match="exceeds media.max_duration"):
        normalize(local(media.video, 0.0, 20.0), tmp_path, MediaConfig(max_duration=10.0))


def test_command_is_a_hardened_argument_list(media, tmp_path):
    cmd = _command(local(media.video, 1.0, 2.0), tmp_path, CFG, _Plan(1.0, 1.0, 1.0))
    assert isinstance(cmd, list) and cmd[cmd.index(ffmpeg_exe()) + 1] == "-nostdin"
    assert cmd[: len(die_with_parent())] == list(die_with_parent())  # ffmpeg dies with its parent
    assert cmd[cmd.index("-protocol_whitelist") + 1] == "file"
    assert "hls" not in cmd[cmd.index("-format_whitelist") + 1].split(",")


def test_a_shell_metacharacter_file_name_is_just_a_name(media, tmp_path):
    odd = tmp_path / "$(touch pwned); echo x.mp4"
    shutil.copy(media.video, odd)
    out = tmp_path / "out"
    out.mkdir()
    normalize(local(odd, 0.0, 2.0), out, CFG)
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_http_input_seeks_with_range_requests(media, server, tmp_path):
    shutil.copy(media.video, server.root / "v.mp4")
    remote = MediaInput(location=f"{server.url}/v.mp4", display="v", start=10.0, end=20.0, protocols=NETWORK_PROTOCOLS)
    result = normalize(remote, tmp_path, CFG)
    assert result.duration == 10.0 and len(result.frames) == 4
    ranges = [r.range for r in server.requests_for("/v.mp4")]
    assert any(r and not r.startswith("bytes=0-") for r in ranges), ranges  # it seeked, not read from 0
    assert 0 < result.read_bytes < media.video.stat().st_size  # the index and the segment, not the file


def test_frame_times_are_centres():
    assert frame_times(8.0, 4) == [1.0, 3.0, 5.0, 7.0]
