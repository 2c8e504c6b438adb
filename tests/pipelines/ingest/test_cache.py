"""The clip cache: atomic entries, races, leftovers, failure markers, and path safety."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.core.records import ClipRecord, FileRef, InvalidId, ManifestRef, Segment
from pipelines.ingest.cache import CLIP_JSON, ClipCache, CorruptEntry, bucket


def record(clip_id: str, payload: str) -> ClipRecord:
    audio = FileRef(sha256=hashlib.sha256(payload.encode()).hexdigest(), bytes=len(payload))
    return ClipRecord(
        clip_id=clip_id,
        source="s",
        format="table",
        source_id=clip_id,
        media_url=None,
        manifest=ManifestRef(file="m.csv", line=2, rows=1),
        segment=Segment(start=None, end=None),
        duration=1.0,
        audio_seconds=1.0,
        padded=False,
        sample_rate=48000,
        files={"audio.flac": audio},
        meta={"payload": payload},
    )


def stage(cache: ClipCache, clip_id: str, payload: str = "x"):
    staging = cache.staging(clip_id)
    (staging / "audio.flac").write_text(payload)
    cache.write_entry(staging, record(clip_id, payload))
    return staging


def test_commit_moves_a_whole_entry_into_its_bucket(tmp_path):
    cache = ClipCache(tmp_path)
    assert not cache.is_complete("yt_abc_0")
    assert cache.commit(stage(cache, "yt_abc_0"), "yt_abc_0")
    entry = cache.entry_dir("yt_abc_0")
    assert entry == tmp_path / "clips" / bucket("yt_abc_0") / "yt_abc_0"
    assert cache.is_complete("yt_abc_0") and cache.read_entry("yt_abc_0").meta["payload"] == "x"
    assert list(cache.entries()) == ["yt_abc_0"]


def test_losing_a_commit_race_keeps_the_first_entry(tmp_path):
    cache = ClipCache(tmp_path)
    cache.commit(stage(cache, "c1", "first"), "c1")
    second = stage(cache, "c1", "second")
    assert cache.commit(second, "c1") is False
    assert cache.read_entry("c1").meta["payload"] == "first" and not second.exists()


def test_half_written_entries_are_invisible_and_cleaned(tmp_path):
    cache = ClipCache(tmp_path)
    half = cache.staging("c2")
    (half / "audio.flac").write_text("partial")  # killed before clip.json and the rename
    assert not cache.is_complete("c2") and list(cache.entries()) == []
    assert cache.clean_staging() == 1 and not half.exists()


def test_failure_markers_round_trip(tmp_path):
    cache = ClipCache(tmp_path)
    assert cache.read_failure("c3") is None
    cache.record_failure("c3", {"reason": "HTTP 503", "retryable": True, "attempts": 2})
    assert cache.read_failure("c3")["attempts"] == 2
    cache.clear_failure("c3")
    assert cache.read_failure("c3") is None


@pytest.mark.parametrize("clip_id", ["../x", "a/b", "a.b", "", "x\n", "$(touch pwned)", "a" * 65])
def test_unsafe_ids_never_become_paths(tmp_path, clip_id):
    cache = ClipCache(tmp_path)
    with pytest.raises(InvalidId):
        cache.entry_dir(clip_id)
    with pytest.raises(InvalidId):
        cache.failure_path(clip_id)


def test_entry_files_are_checked_against_clip_json(tmp_path):
    cache = ClipCache(tmp_path)
    cache.commit(stage(cache, "c3", "sound"), "c3")
    entry = cache.read_entry("c3")
    assert cache.read_file(entry, "audio.flac") == b"sound"
    (cache.entry_dir("c3") / "audio.flac").write_text("noise")
    with pytest.raises(CorruptEntry, match="audio.flac does not match the sha256 in clip.json"):
        cache.read_file(entry, "audio.flac")
    with pytest.raises(CorruptEntry, match="lists no file 'frame_00.jpg'"):
        cache.read_file(entry, "frame_00.jpg")
    (cache.entry_dir("c3") / CLIP_JSON).write_text('{"schema": "t2a.clip/1", "clip_id": "c3"}')
    with pytest.raises(CorruptEntry, match="clip.json does not match t2a.clip/1"):
        cache.read_entry("c3")
