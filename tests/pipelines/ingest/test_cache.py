"""The clip cache: atomic entries, races, leftovers, failure markers, and path safety."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.core.records import ClipRecord, FileRef, InvalidId, ManifestRef, Segment
from pipelines.ingest.cache import CLIP_JSON, ClipCache, CorruptEntry, Failures, bucket


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


def failure(clip_id: str, reason: str, retryable: bool = False, fetch: str | None = "f1") -> dict:
    return {
        "clip_id": clip_id,
        "source": "s",
        "reason": reason,
        "retryable": retryable,
        "attempts": 1,
        "time": "2026-01-01T00:00:00+00:00",
        "fetch": fetch,
    }


def test_failures_are_rows_of_a_table_and_the_newest_row_of_a_clip_wins(tmp_path):
    failures = Failures(tmp_path)
    assert len(failures.load()) == 0 and failures.write([], "r1") is None and failures.files() == []
    failures.write([failure("c3", "HTTP 503", True), failure("c4", "HTTP 404")], "r1-b")
    failures.write([failure("c3", "HTTP 404")], "r2-b")
    index = failures.load()
    assert len(index) == 2 and index.get("c3")["reason"] == "HTTP 404" and not index.get("c3")["retryable"]
    assert index.get("c4")["fetch"] == "f1" and index.get("c5") is None
    assert len(failures.files()) == 2 and not list(tmp_path.glob("failures/.*"))  # no temporary left


def test_compaction_folds_files_and_old_json_records_and_drops_finished_clips(tmp_path):
    failures = Failures(tmp_path)
    old = tmp_path / "failures" / bucket("c1") / "c1.json"  # an earlier version's per-clip record
    old.parent.mkdir(parents=True)
    old.write_text('{"clip_id": "c1", "reason": "HTTP 404", "retryable": false, "attempts": 2, "time": "t"}')
    failures.write([failure("c2", "gone"), failure("c3", "HTTP 503", True)], "r1-b")
    failures.write([failure("c2", "still gone")], "r2-b")
    assert failures.compact("r3-a", done={"c3"}) == 3
    assert len(failures.files()) == 1 and not old.parent.exists()
    index = failures.load()
    assert sorted(index.rows) == ["c1", "c2"] and index.get("c2")["reason"] == "still gone"
    assert index.get("c1")["attempts"] == 2 and index.get("c1")["fetch"] is None
    assert failures.compact("r4-a") == 0  # one file, nothing finished: left as it is


def test_done_ids_lists_committed_entries_only(tmp_path):
    cache = ClipCache(tmp_path)
    for clip_id in ("c1", "c2"):
        staging = cache.staging(clip_id)
        cache.write_entry(staging, record(clip_id, clip_id))
        cache.commit(staging, clip_id)
    cache.staging("c3")  # half-written
    assert cache.done_ids() == {"c1", "c2"}


@pytest.mark.parametrize("clip_id", ["../x", "a/b", "a.b", "", "x\n", "$(touch pwned)", "a" * 65])
def test_unsafe_ids_never_become_paths(tmp_path, clip_id):
    cache = ClipCache(tmp_path)
    with pytest.raises(InvalidId):
        cache.entry_dir(clip_id)


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
