"""The youtube backend: real yt-dlp (generic extractor) on a loopback mirror, and its error classes."""

from __future__ import annotations

import shutil
import threading
from types import SimpleNamespace

import pytest
import soundfile as sf

from demo.server import Fault
from pipelines.core.config import MediaConfig, RetryPolicy
from pipelines.core.records import Clip, youtube_clip_id
from pipelines.ingest.fetch import youtube
from pipelines.ingest.fetch.configs import YoutubeFetch
from pipelines.ingest.worker import ClipWorker

YTID = "a-B_c1234Xy"


def worker(tmp_path, server, frames: int = 4, **fetch) -> ClipWorker:
    config = YoutubeFetch(
        backend="youtube",
        url_template=f"{server.url}/yt/{{id}}.mp4",
        retry=RetryPolicy(attempts=2, backoff=0.01),
        **fetch,
    )
    return ClipWorker({"yt": SimpleNamespace(fetch=config)}, MediaConfig(frames=frames), tmp_path / "out")


def clip(ytid: str = YTID, start: float = 5.0, end: float = 15.0) -> Clip:
    return Clip(youtube_clip_id(ytid, start), "yt", "audioset", ytid, None, start, end, manifest="m.csv", line=4)


@pytest.fixture()
def mirror(media, server):
    (server.root / "yt").mkdir()
    shutil.copy(media.video, server.root / "yt" / f"{YTID}.mp4")
    return server


def test_downloads_only_the_segment_and_normalizes_it(tmp_path, mirror):
    w = worker(tmp_path, mirror)
    row = w.ingest(clip())
    assert row.status == "ok", row.reason
    entry = w.cache.read_entry(row.clip_id).to_json_dict()
    assert entry["media_url"] == f"{mirror.url}/yt/{YTID}.mp4"
    assert entry["duration"] == pytest.approx(10.0, abs=0.05) and len(entry["frames"]) == 4
    audio = w.cache.entry_dir(row.clip_id) / "audio.flac"
    assert sf.info(str(audio)).frames == 480000
    assert 0 < entry["fetched_bytes"] < mirror.root.joinpath("yt", f"{YTID}.mp4").stat().st_size


def test_audio_only_when_no_frames_are_wanted(tmp_path, mirror):
    w = worker(tmp_path, mirror, frames=0)
    row = w.ingest(clip(start=0.0, end=4.0))
    assert row.status == "ok" and w.cache.read_entry(row.clip_id).to_json_dict()["frames"] == []


def test_segment_past_the_end_is_padded(tmp_path, mirror):
    w = worker(tmp_path, mirror, frames=0)
    row = w.ingest(clip(start=15.0, end=25.0))
    entry = w.cache.read_entry(row.clip_id).to_json_dict()
    assert entry["padded"] and entry["duration"] == pytest.approx(5.0, abs=0.1) and entry["audio_seconds"] == 10.0


def test_missing_video_is_permanent(tmp_path, mirror):
    row = worker(tmp_path, mirror).ingest(clip("zzzzzzzzzzz"))
    assert row.status == "failed_permanent" and "404" in row.reason


def test_rate_limit_is_retried(tmp_path, mirror):
    mirror.add_fault(f"/yt/{YTID}.mp4", Fault(status=429, times=1))
    row = worker(tmp_path, mirror).ingest(clip())
    assert (row.status, row.attempts) == ("ok", 2)


def test_bad_id_never_reaches_yt_dlp(tmp_path, mirror):
    bad = Clip("yt_x_0", "yt", "audioset", "$(touch pwned)", None, 0.0, 10.0)
    row = worker(tmp_path, mirror).ingest(bad)
    assert row.status == "failed_permanent" and "bad YouTube id" in row.reason
    assert mirror.log == []


@pytest.mark.parametrize(
    ("message", "retryable"),
    [
        ("ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader", False),
        ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access to this video", False),
        ("ERROR: [youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.", False),
        (
            "ERROR: [youtube] abc: Video unavailable. This video contains content from X, who has blocked it on copyright grounds",
            False,
        ),
        (
            "ERROR: [youtube] abc: This video is no longer available because the YouTube account associated with this video has been terminated.",
            False,
        ),
        ("ERROR: [youtube] abc: Sign in to confirm you’re not a bot. Use --cookies-from-browser or --cookies", True),
        ("ERROR: [youtube] abc: Sign in to confirm you're not a bot. This helps protect our community.", True),
        ("ERROR: unable to download video data: HTTP Error 403: Forbidden", True),
        ("ERROR: [youtube] abc: Unable to download API page: HTTP Error 429: Too Many Requests", True),
        ("ERROR: [youtube] abc: Unable to download webpage: The read operation timed out", True),
        ("ERROR: [generic] Unable to download webpage: HTTP Error 404: Not Found", False),
        ("ERROR: something nobody has seen before", True),
    ],
)
def test_classify_keeps_the_message_and_decides_retryable(message, retryable):
    failure = youtube.classify(message)
    assert failure.retryable is retryable
    assert failure.reason.startswith("youtube: ") and "ERROR:" not in failure.reason


def test_downloads_per_process_are_capped(tmp_path, mirror, monkeypatch):
    active, peak, lock = 0, 0, threading.Lock()
    real = youtube.yt_dlp.YoutubeDL

    class Counting(real):
        def process_ie_result(self, *args, **kwargs):
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            try:
                return super().process_ie_result(*args, **kwargs)
            finally:
                with lock:
                    active -= 1

    monkeypatch.setattr(youtube.yt_dlp, "YoutubeDL", Counting)
    w = worker(tmp_path, mirror, frames=0, concurrency=1)
    threads = [threading.Thread(target=w.ingest, args=(clip(start=float(s), end=float(s) + 2),)) for s in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 1


@pytest.mark.parametrize(
    ("name", "reason"),
    [("corrupt", "Invalid data found when processing input"), ("empty", "416 Requested Range Not Satisfiable")],
)
def test_corrupt_media_is_permanent_with_ffmpegs_reason(tmp_path, mirror, media, name, reason):
    shutil.copy(getattr(media, name), mirror.root / "yt" / "bbbbbbbbbbb.mp4")
    row = worker(tmp_path, mirror).ingest(clip("bbbbbbbbbbb", 0.0, 5.0))
    assert (row.status, row.attempts) == ("failed_permanent", 1)
    assert reason in row.reason


def test_settings_reach_yt_dlp(tmp_path):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    config = YoutubeFetch(
        backend="youtube",
        cookies=cookies,
        proxy="socks5://127.0.0.1:9",
        rate_limit=500000,
        sleep_interval=2.0,
        max_sleep_interval=5.0,
        max_height=240,
    )
    options = youtube.YoutubeBackend(config).options(clip(start=30.0, end=40.0), tmp_path, want_video=True)
    assert (options["cookiefile"], options["proxy"], options["ratelimit"]) == (
        str(cookies),
        "socks5://127.0.0.1:9",
        500000,
    )
    assert (options["sleep_interval"], options["max_sleep_interval"]) == (2.0, 5.0)
    assert options["format"].startswith("bv*[height<=240]+ba") and options["force_keyframes_at_cuts"] is True
    ranges = list(options["download_ranges"]({}, None))
    assert [(r["start_time"], r["end_time"]) for r in ranges] == [(30.0, 40.0)]
    audio_only = youtube.YoutubeBackend(YoutubeFetch(backend="youtube")).options(clip(), tmp_path, want_video=False)
    assert audio_only["format"] == "ba/b" and "cookiefile" not in audio_only and "proxy" not in audio_only
