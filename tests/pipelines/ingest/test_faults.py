"""The ingest fault matrix (docs/reliability.md): real data and real faults on loopback.

Each test feeds one hostile or unusual input through the real reader, backend, ffmpeg and cache
(ClipWorker, or the whole Beam job where the outcome is the run's) and checks the outcome: the
good clip is kept, the bad one refused with a reason, nothing raised, nothing left behind. The
issue-14 item each one covers is in its name's docstring; the shard, loader, trainer and config
cases live beside their stages and are listed in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from demo.server import Fault, Response
from pipelines.core.config import ConfigError
from pipelines.core.io import StorageFull
from pipelines.core.records import RejectedRow, StatusRow
from pipelines.core.tools import die_with_parent, run_ffmpeg
from pipelines.datasets import load_corpus
from pipelines.ingest import job as ingest
from pipelines.ingest import worker as worker_module
from pipelines.ingest.cache import ClipCache, Failures
from pipelines.ingest.fetch.templates import fill_path
from pipelines.ingest.job import rejected_status
from pipelines.ingest.manifests import FORMATS
from pipelines.ingest.status import status_path
from pipelines.ingest.worker import ClipWorker

REPO = Path(__file__).parents[3]
FAST = {"attempts": 2, "backoff": 0.01, "max_backoff": 0.05}
ONTOLOGY_MID = "/m/09x0r"  # Speech


# --- helpers --------------------------------------------------------------------------------------


def write_config(root: Path, sources: list[dict], media: dict | None = None, name: str = "c") -> Path:
    config = root / f"{name}.yaml"
    block = {"output": f"out-{name}", "media": {"frames": 0, **(media or {})}, "sources": sources}
    config.write_text(yaml.safe_dump({"corpora": {name: block}}))
    return config


def ingest_rows(root: Path, sources: list[dict], media: dict | None = None) -> tuple[list[StatusRow], ClipCache]:
    """Every manifest row through the real reader and ClipWorker (the job's per-clip path, no Beam)."""
    corpus = load_corpus(write_config(root, sources, media), "c")
    worker = ClipWorker({s.name: s for s in corpus.config.sources}, corpus.config.media, corpus.output)
    rows = []
    for source in corpus.config.sources:
        for record in FORMATS.get(source.format).read(source):
            rows.append(rejected_status(record) if isinstance(record, RejectedRow) else worker.ingest(record))
    worker.write_failures("test")  # as FetchClips does at the end of a bundle
    return rows, worker.cache


def by_line(rows: list[StatusRow]) -> dict[int, StatusRow]:
    return {row.line: row for row in rows}


def table(root: Path, rows: list[str], header: str = "url,start,end", name: str = "t.csv") -> str:
    (root / name).write_text(header + "\n" + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return name


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """Real media with real defects, made with ffmpeg."""
    folder = tmp_path_factory.mktemp("hostile")
    sine = ["-f", "lavfi", "-i", "sine=frequency=440:duration=10:sample_rate=44100"]
    made = {}
    for name, seconds in (("one_frame", 0.04), ("short_video", 1.0), ("tiny_video", 0.14)):
        made[name] = folder / f"{name}.mp4"
        video = ["-f", "lavfi", "-i", f"testsrc=size=96x64:rate=25:duration={seconds}"]
        run_ffmpeg(*video, *sine, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(made[name]))
    made["index_last"] = folder / "index_last.mp4"  # H.264/AAC with the moov atom at the end
    video = ["-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=10"]
    run_ffmpeg(*video, *sine, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(made["index_last"]))
    flac = folder / "whole.flac"
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=20:sample_rate=44100", str(flac))
    made["truncated_flac"] = folder / "truncated.flac"
    made["truncated_flac"].write_bytes(flac.read_bytes()[: flac.stat().st_size // 3])
    shutil.copy(made["truncated_flac"], folder / "truncated_b.flac")  # a table id names one clip: a second id
    shutil.copy(made["short_video"], folder / "short_video_b.mp4")
    made["tone"] = folder / "tone.wav"
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=500:duration=3:sample_rate=44100", str(made["tone"]))
    for i in range(6):  # distinct ids for tables of ids
        shutil.copy(made["tone"], folder / f"tone_{i}.wav")
    made["blip"] = folder / "blip.wav"
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=500:duration=0.05:sample_rate=44100", str(made["blip"]))
    made["ghz"] = folder / "ghz.wav"  # a header claiming a 2 GHz sample rate over real samples
    data = bytearray(made["tone"].read_bytes())
    channels, bits = struct.unpack_from("<H", data, 22)[0], struct.unpack_from("<H", data, 34)[0]
    struct.pack_into("<II", data, 24, 2_000_000_000, 2_000_000_000 * channels * bits // 8)
    made["ghz"].write_bytes(bytes(data))
    return made


# --- 1. YouTube ids that start with "-" in a local mirror ------------------------------------------


def test_local_mirror_takes_youtube_ids_starting_with_a_dash(tmp_path, hostile):
    """Item 1: AudioSet's balanced_train_segments.csv starts with such ids; a mirror holds them."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for ytid in ("--PJHxphWEs", "-0DdlOuIFUI"):
        shutil.copy(hostile["tone"], mirror / f"{ytid}.wav")
    (tmp_path / "seg.csv").write_text(
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        f'--PJHxphWEs, 0.000, 2.000, "{ONTOLOGY_MID}"\n-0DdlOuIFUI, 1.000, 3.000, "{ONTOLOGY_MID}"\n'
    )
    fetch = {"backend": "local", "path_template": "mirror/{id}.wav"}
    rows, cache = ingest_rows(tmp_path, [{"name": "as", "format": "audioset", "manifest": "seg.csv", "fetch": fetch}])
    assert [(row.status, row.reason) for row in rows] == [("ok", ""), ("ok", "")]
    entry = cache.read_entry("yt_--PJHxphWEs_0")
    assert entry.media_url == str(mirror / "--PJHxphWEs.wav") and entry.duration == 2.0


@pytest.mark.parametrize(
    ("source_id", "why"),
    [(".hidden", "starts with a dot"), ("..", "starts with a dot"), ("a/../../b", "path separator")],
)
def test_mirror_ids_that_are_unsafe_are_refused_with_the_real_reason(tmp_path, source_id, why):
    """Item 1: what is really unsafe stays refused, and the message names the real problem."""
    with pytest.raises(Exception, match=why):
        fill_path(str(tmp_path / "mirror" / "{id}.wav"), source_id)


# --- 2. frames from a short or absent video track --------------------------------------------------


def test_short_video_tracks_keep_their_audio_and_give_the_frames_that_exist(tmp_path, hostile):
    """Item 2: a 1-frame video, a 1-s and a 0.14-s video track under 10 s of audio, and a segment
    after the video's end: each is an ok clip with 10 s of audio; clip.json says how many frames
    are real and why there are fewer than wanted."""
    rows = ["one_frame,0,10", "short_video,0,10", "tiny_video,0,10", "short_video_b,2,10"]
    source = _mirror("tb", table(tmp_path, rows, "id,start,end"), hostile, ".mp4")
    found, cache = ingest_rows(tmp_path, [source], {"frames": 4, "frame_size": 32})
    assert [(row.status, row.reason) for row in found] == [("ok", "")] * 4
    entries = [cache.read_entry(row.clip_id) for row in found]
    assert [(e.frames_wanted, e.frames_real, len(e.frames)) for e in entries] == [
        (4, 1, 1),
        (4, 4, 4),
        (4, 4, 4),
        (4, 0, 0),
    ]
    assert [e.duration for e in entries] == [10.0, 10.0, 10.0, 8.0]
    assert all(frame.time < 1.0 for frame in entries[1].frames)  # taken from the 1 s of video
    assert "1 frame(s)" in entries[0].video_note and "no video frames" in entries[3].video_note
    assert set(entries[3].files) == {"audio.flac"}


# --- 4. servers that ignore Range -----------------------------------------------------------------


def test_a_server_that_ignores_range_gets_a_bounded_whole_file_download(tmp_path, hostile, server):
    """Item 4: an MP4 with its index at the end, served without Range support (200, no
    Accept-Ranges): downloaded whole into the work folder and read there; over the cap, refused."""
    shutil.copy(hostile["index_last"], server.root / "v.mp4")
    server.add_fault("/v.mp4", Fault(ignore_range=True))
    url = f"{server.url}/v.mp4"
    fetch = {"backend": "http", "timeout": 5, "retry": FAST}
    source = {"name": "tb", "format": "table", "manifest": table(tmp_path, [f"{url},2,7"]), "fetch": fetch}
    (row,), cache = ingest_rows(tmp_path, [source])
    assert (row.status, row.reason) == ("ok", "")
    entry = cache.read_entry(row.clip_id)
    size = hostile["index_last"].stat().st_size
    assert entry.duration == 5.0 and entry.fetched_bytes == size and entry.read_bytes > 0
    assert any(r.range is None and r.status == 200 for r in server.requests_for("/v.mp4"))
    other = tmp_path / "capped"
    other.mkdir()
    capped = {**source, "manifest": table(other, [f"{url},2,7"]), "fetch": {**fetch, "max_download_bytes": size // 2}}
    (row,), _ = ingest_rows(other, [capped])
    assert row.status == "failed_permanent" and "over fetch.max_download_bytes" in row.reason


# --- 5. one overflowing row never drops a source ---------------------------------------------------


def test_a_400_digit_segment_id_rejects_its_row_and_the_others_become_clips(tmp_path):
    """Item 5: a strong-label TSV row that overflows is one rejected_row at its line."""
    rows = [
        f"AAAAAAAAAAA_30000\t0.5\t2.0\t{ONTOLOGY_MID}",
        f"BBBBBBBBBBB_{'9' * 400}\t0.5\t2.0\t{ONTOLOGY_MID}",
        f"CCCCCCCCCCC_10000\t1.0\t3.0\t{ONTOLOGY_MID}",
    ]
    path = tmp_path / "audioset_train_strong.tsv"
    path.write_text("segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n" + "\n".join(rows) + "\n")
    source = load_corpus(write_config(tmp_path, [_audioset(path.name)]), "c").config.sources[0]
    records = list(FORMATS.get("audioset").read(source))
    assert [(type(r).__name__, r.line) for r in records] == [("Clip", 2), ("RejectedRow", 3), ("Clip", 4)]
    assert "bad segment_id" in records[1].reason


def test_a_field_over_the_csv_limit_rejects_its_row_and_reading_goes_on(tmp_path):
    """Item 5: the csv module's field limit is a row's problem, not the file's."""
    name = table(tmp_path, ["http://a.org/1.wav,,", f"http://a.org/{'x' * 200_000}.wav,,", "http://a.org/3.wav,,"])
    source = load_corpus(write_config(tmp_path, [_table(name)]), "c").config.sources[0]
    records = list(FORMATS.get("table").read(source))
    assert [(type(r).__name__, r.line) for r in records] == [("Clip", 2), ("RejectedRow", 3), ("Clip", 4)]


def test_an_odd_freesound_answer_rejects_that_sound_alone():
    """Item 5: an API result of an unexpected shape is one rejected row."""
    from pipelines.ingest.manifests.freesound import FreesoundSource, sound_record

    source = FreesoundSource(name="fs", format="freesound", query="rain")
    bad = sound_record(source, ["not", "a", "dict"], "freesound:search", 3)
    assert isinstance(bad, RejectedRow) and bad.line == 3 and "unreadable sound" in bad.reason


# --- 6. local paths and file:// confined to a root -------------------------------------------------


@pytest.fixture()
def library(tmp_path, hostile) -> Path:
    """A team's folder of recordings, plus things that must never be read through it."""
    root = tmp_path / "sounds"
    (root / "dogs").mkdir(parents=True)
    shutil.copy(hostile["tone"], root / "dog bark.wav")
    shutil.copy(hostile["tone"], root / "dogs" / "puppy #1.wav")
    shutil.copy(hostile["tone"], tmp_path / "outside.wav")
    (root / "escape.wav").symlink_to(tmp_path / "outside.wav")
    (root / "inside-link.wav").symlink_to(root / "dog bark.wav")
    os.mkfifo(root / "pipe.wav")
    return root


def test_a_table_of_local_files_is_ingested_inside_its_root(tmp_path, library):
    """Item 6: paths (absolute, relative to the root, with spaces and '#') and file:// URLs."""
    rows = [
        f"{library / 'dog bark.wav'},0,1",
        "dogs/puppy #1.wav,0,1",
        f"file://{library / 'dogs' / 'puppy%20%231.wav'},1,2",
        "file://localhost" + str(library / "inside-link.wav") + ",0,2",
    ]
    fetch = {"backend": "local", "root": "sounds"}
    source = {"name": "mine", "format": "table", "manifest": table(tmp_path, rows), "fetch": fetch}
    found, cache = ingest_rows(tmp_path, [source])
    assert [(row.status, row.reason) for row in found] == [("ok", "")] * 4
    assert cache.read_entry(found[2].clip_id).media_url == str(library / "dogs" / "puppy #1.wav")


HOSTILE_PATHS = [
    ("../outside.wav", "resolves outside fetch.root"),
    ("/etc/passwd", "resolves outside fetch.root"),
    ("escape.wav", "resolves outside fetch.root"),  # a symlink inside the root that points out
    ("dogs/../../outside.wav", "resolves outside fetch.root"),
    ("file:///etc/passwd", "resolves outside fetch.root"),
    ("file:///ROOT/..%2F..%2Fetc%2Fpasswd", "resolves outside fetch.root"),
    ("file://evil.example/etc/passwd", "names another host"),
    ("pipe.wav", "not a regular file"),  # a FIFO would hold ffmpeg for good
    ("dogs", "not a regular file"),
    ("nope.wav", "file not found"),
    ("/dev/zero", "resolves outside fetch.root"),
]


def test_hostile_paths_never_leave_the_root(tmp_path, library):
    """Item 6: traversal, absolute paths, symlinks out, other hosts, FIFOs, devices."""
    rows = [f"{path.replace('/ROOT', str(library))},0,1" for path, _ in HOSTILE_PATHS]
    fetch = {"backend": "local", "root": "sounds"}
    source = {"name": "mine", "format": "table", "manifest": table(tmp_path, rows), "fetch": fetch}
    found, cache = ingest_rows(tmp_path, [source])
    outcome = [(row.status, row.reason) for row in found]
    for (status, reason), (path, why) in zip(outcome, HOSTILE_PATHS):
        assert status in ("failed_permanent", "rejected_row") and why in reason, (path, reason)
    assert list(cache.entries()) == []


def test_local_paths_need_the_local_backend_and_a_root(tmp_path, library):
    """Item 6: the http backend and a root-less local backend refuse paths with a clear reason."""
    first = table(tmp_path, [f"{library / 'dog bark.wav'},0,1"], name="a.csv")
    second = table(tmp_path, [f"{library / 'dog bark.wav'},1,2"], name="b.csv")
    http = {"name": "web", "format": "table", "manifest": first, "fetch": {"backend": "http"}}
    mirror = {
        "name": "mir",
        "format": "table",
        "manifest": second,
        "fetch": {"backend": "local", "path_template": "m/{id}"},
    }
    found, _ = ingest_rows(tmp_path, [http, mirror])
    assert [row.status for row in found] == ["failed_permanent", "failed_permanent"]
    assert "read by the local backend" in found[0].reason and "fetch.root is not set" in found[1].reason


# --- 7, 8. bad audio kept -------------------------------------------------------------------------


def test_an_empty_decode_is_refused_not_cached(tmp_path, hostile):
    """Item 7: a truncated FLAC whose segment lies in the missing part decodes no sample (its
    output's header then says "unknown length": 2^63-1 frames to soundfile)."""
    source = _mirror("tb", table(tmp_path, ["truncated,15,20", "truncated_b,1,3"], "id,start,end"), hostile, ".flac")
    (empty, good), cache = ingest_rows(tmp_path, [source])
    assert empty.status == "failed_permanent" and "no audio decoded" in empty.reason
    assert good.status == "ok" and cache.read_entry(good.clip_id).duration == 2.0
    assert not cache.is_complete(empty.clip_id)


def test_implausible_sample_rates_and_too_short_clips_are_refused(tmp_path, hostile):
    """Item 8: a WAV header claiming 2 GHz, and a clip under media.min_duration."""
    source = _mirror("tb", table(tmp_path, ["ghz,,", "blip,,", "tone,,"], "id,start,end"), hostile, ".wav")
    (ghz, blip, tone), _ = ingest_rows(tmp_path, [source])  # media.min_duration: 0.1 s by default
    assert ghz.status == "failed_permanent" and "implausible sample rate 2000000000 Hz" in ghz.reason
    assert blip.status == "failed_permanent" and "under media.min_duration 0.1 s" in blip.reason
    assert tone.status == "ok"


# --- 10. plain ASCII decimal numbers only ----------------------------------------------------------


def test_manifest_numbers_are_plain_ascii_decimals(tmp_path):
    """Item 10: float() takes "1_0" and "٣"; a manifest may not."""
    rows = ["AAAAAAAAAAA,1_0,dog,train", "BBBBBBBBBBB,٣,dog,train", "CCCCCCCCCCC,30.000,dog,train"]
    (tmp_path / "vgg.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    source = {"name": "vgg", "format": "vggsound", "manifest": "vgg.csv"}
    records = list(
        FORMATS.get("vggsound").read(load_corpus(write_config(tmp_path, [_fetchless(source)]), "c").config.sources[0])
    )
    assert [type(r).__name__ for r in records] == ["RejectedRow", "RejectedRow", "Clip"]
    assert all("plain ASCII decimal" in r.reason for r in records[:2])
    assert records[2].start == 30.0
    fsd = tmp_path / "dev.csv"
    fsd.write_text("fname,labels,mids,split\n٣,Speech,/m/09x0r,train\n12,Speech,/m/09x0r,train\n", encoding="utf-8")
    (tmp_path / "vocab.csv").write_text("0,Speech,/m/09x0r\n")
    source = {"name": "fsd", "format": "fsd50k", "manifest": "dev.csv", "vocabulary": "vocab.csv"}
    records = list(
        FORMATS.get("fsd50k").read(load_corpus(write_config(tmp_path, [_fetchless(source)]), "c").config.sources[0])
    )
    assert [type(r).__name__ for r in records] == ["RejectedRow", "Clip"] and records[1].clip_id == "fs_12"


# --- 11, 12. no hang, no traceback ---------------------------------------------------------------


def test_retry_after_longer_than_max_backoff_is_answered_now(tmp_path, hostile, server, monkeypatch):
    """Item 11: a 503 with Retry-After: 3600 is failed_retryable with the server's reason, and no
    wait is ever longer than max_backoff."""
    shutil.copy(hostile["tone"], server.root / "t.wav")
    server.add_fault("/t.wav", Fault(status=503, headers={"Retry-After": "3600"}))
    waits: list[float] = []
    monkeypatch.setattr(worker_module.time, "sleep", waits.append)
    fetch = {"backend": "http", "timeout": 5, "retry": {"attempts": 5, "backoff": 0.5, "max_backoff": 2}}
    source = {"name": "tb", "format": "table", "manifest": table(tmp_path, [f"{server.url}/t.wav,0,1"]), "fetch": fetch}
    (row,), cache = ingest_rows(tmp_path, [source])
    assert row.status == "failed_retryable" and "HTTP 503" in row.reason and "asks to wait 3600 s" in row.reason
    assert all(wait <= 2 for wait in waits) and Failures(cache.root).load().get(row.clip_id)["retryable"]


def test_redirect_loops_and_redirects_to_file_urls_are_reasons(tmp_path, server):
    """Item 12: no "internal error" for a redirect loop or a redirect to file://."""
    server.routes["/loop"] = lambda request: Response(302, headers={"Location": "/loop"})
    server.routes["/to-file"] = lambda request: Response(302, headers={"Location": "file:///etc/passwd"})
    rows = [f"{server.url}/loop/a.wav,0,1", f"{server.url}/to-file/b.wav,0,1"]
    fetch = {"backend": "http", "timeout": 5, "retry": FAST}
    source = {"name": "tb", "format": "table", "manifest": table(tmp_path, rows), "fetch": fetch}
    (loop, to_file), _ = ingest_rows(tmp_path, [source])
    assert loop.status == "failed_permanent" and "redirect loop" in loop.reason
    assert to_file.status == "failed_permanent" and "does not fetch" in to_file.reason


def test_a_stalled_token_download_is_a_recorded_retryable_failure(tmp_path, hostile, server, monkeypatch):
    """Item 12: a read timeout in the middle of a token download is a reason, recorded, so a plain
    re-run does not fetch it again (--retry-failed does)."""
    shutil.copy(hostile["tone"], server.root / "t.wav")
    server.add_fault("/t.wav", Fault(truncate=0.5, stall=3.0, times=1))
    monkeypatch.setenv("T2A_TEST_TOKEN", "tok")
    fetch = {"backend": "http", "timeout": 1, "auth_env": "T2A_TEST_TOKEN", "retry": {"attempts": 1}}
    source = {"name": "tb", "format": "table", "manifest": table(tmp_path, [f"{server.url}/t.wav,0,1"]), "fetch": fetch}
    (row,), cache = ingest_rows(tmp_path, [source])
    assert row.status == "failed_retryable" and "timed out" in row.reason and "internal error" not in row.reason
    assert Failures(cache.root).load().get(row.clip_id)["retryable"]
    server.log.clear()
    (again,), _ = ingest_rows(tmp_path, [source])
    assert again.status == "failed_retryable" and server.requests_for("/t.wav") == []


def test_huge_segment_starts_are_rejected_rows(tmp_path):
    """Item 12: starts of 1e300 (a clip id over 64 characters) and 1e15 (past what ffmpeg seeks)."""
    (tmp_path / "seg.csv").write_text(
        f'AAAAAAAAAAA, 1e300, 1e300, "{ONTOLOGY_MID}"\nBBBBBBBBBBB, 1000000000000000, 1000000000000010, "{ONTOLOGY_MID}"\n'
    )
    source = load_corpus(write_config(tmp_path, [_audioset("seg.csv")]), "c").config.sources[0]
    records = list(FORMATS.get("audioset").read(source))
    assert [type(r).__name__ for r in records] == ["RejectedRow", "RejectedRow"]
    assert all("past the longest media" in r.reason for r in records)


def test_an_output_that_is_a_file_is_one_clear_error(tmp_path, hostile):
    """Item 12: `output` an existing file (or under one): a ConfigError before anything runs, and
    from the CLI one line with exit status 2."""
    (tmp_path / "out-c").write_text("not a folder")
    config = write_config(tmp_path, [_mirror("tb", table(tmp_path, ["tone,0,1"], "id,start,end"), hostile, ".wav")])
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        ingest.run(load_corpus(config, "c"))
    done = _cli("ingest", "--config", str(config), "--corpus", "c")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "is a file, not a folder" in done.stderr
    below = tmp_path / "below.yaml"  # an output under a file cannot be created: unwritable, one line too
    below.write_text(config.read_text().replace("output: out-c", "output: out-c/below"))
    assert "output: out-c/below" in below.read_text()
    with pytest.raises(ConfigError, match="cannot write to output"):
        ingest.run(load_corpus(below, "c"))
    done = _cli("ingest", "--config", str(below), "--corpus", "c")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "cannot write to output" in done.stderr


# --- 3. a full disk stops the run -----------------------------------------------------------------


def test_a_full_disk_stops_the_run_and_records_no_failure(tmp_path, hostile, monkeypatch):
    """Item 3: ffmpeg's output lands on /dev/full (a real ENOSPC from the kernel): the run stops
    with StorageFull, no clip is marked failed, no temporary is left, and a re-run after space is
    freed completes every clip."""
    rows = [f"tone_{i},0,1" for i in range(2)]
    config = write_config(tmp_path, [_mirror("tb", table(tmp_path, rows, "id,start,end"), hostile, ".wav")])
    real_staging = ClipCache.staging

    def full_staging(self, clip_id):
        path = real_staging(self, clip_id)
        (path / "audio.flac").symlink_to("/dev/full")
        return path

    monkeypatch.setattr(ClipCache, "staging", full_staging)
    with pytest.raises(StorageFull, match="No space left on device"):
        ingest.run(load_corpus(config, "c"), beam_args=["--runner=FnApiRunner"])
    out = tmp_path / "out-c"
    assert files_under(out / "failures") == [] and list(ClipCache(out).entries()) == []
    monkeypatch.undo()
    summary = ingest.run(load_corpus(config, "c"))
    assert summary["totals"]["ok"] == 2 and summary["rows"] == 2
    assert [p for p in files_under(out) if p.stat().st_size == 0] == []
    assert not any(ClipCache(out).staging_root.iterdir())


def test_a_full_filesystem_stops_the_cli_with_one_line_and_a_rerun_completes(tmp_path, hostile):
    """Item 3, on a real full filesystem: a small tmpfs mounted in a private mount namespace
    (`unshare`), filled but for a few KiB; ingest exits 1 with one line, then completes once the
    filler is gone, with no failure recorded and no 0-byte file."""
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("no private mount namespace here (unshare -rm); the /dev/full test covers ENOSPC")
    rows = [f"tone_{i},0,2" for i in range(6)]
    config = write_config(tmp_path, [_mirror("tb", table(tmp_path, rows, "id,start,end"), hostile, ".wav")])
    out, results = tmp_path / "out-c", tmp_path / "results"
    results.mkdir()
    cli = f"{sys.executable} -m pipelines.cli ingest --config {config} --corpus c"
    script = f"""
        set -u
        mkdir -p {out} && mount -t tmpfs -o size=2m t2a-full {out}
        dd if=/dev/zero of={out}/filler bs=1k count=1900 2>/dev/null
        {cli} > {results}/first.out 2> {results}/first.err; echo $? > {results}/first.rc
        find {out}/failures -type f > {results}/failures.txt
        find {out} -type f -size 0 > {results}/empty-first.txt
        rm {out}/filler
        {cli} > {results}/second.out 2> {results}/second.err; echo $? > {results}/second.rc
        find {out} -type f -size 0 > {results}/empty-second.txt
        cp -r {out}/status {results}/status
    """
    subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, check=True, timeout=300)
    first_err = (results / "first.err").read_text()
    assert (results / "first.rc").read_text().strip() == "1", first_err
    assert "Traceback" not in first_err and "No space left on device" in first_err
    assert (results / "failures.txt").read_text() == "" and (results / "empty-first.txt").read_text() == ""
    assert (results / "second.rc").read_text().strip() == "0", (results / "second.err").read_text()
    assert (results / "empty-second.txt").read_text() == ""
    summary = json.loads(next((results / "status").glob("*.summary.json")).read_text())
    assert summary["totals"]["ok"] + summary["totals"]["cached"] == 6 and summary["rows"] == 6


# --- 13, 15, 16. the job's own outputs: empty manifests said, temporaries cleaned, no secret -------


def test_secrets_in_urls_never_reach_any_output_and_empty_manifests_are_said(tmp_path, hostile, server):
    """Item 16 (and 13, 15): userinfo and token/sig/X-Amz-* values in table URLs appear nowhere in
    the output tree (clip.json, status parquet, summary, failures, resolved config) nor in what
    `t2a -v ingest` prints (debug logs included); an empty manifest is a warning of the summary;
    a killed run's beam-temp folder is gone."""
    shutil.copy(hostile["tone"], server.root / "t.wav")
    base = server.url.replace("http://", "")
    rows = [
        f"http://alice:hunter2-PW@{base}/t.wav?token=SECRET-TOKEN&v=1,0,1",
        f"http://{base}/t.wav?X-Amz-Signature=SECRET-AMZ&X-Amz-Credential=SECRET-CRED,1,2",
        f"http://{base}/missing.wav?sig=SECRET-SIG,0,1",
        f"ftp://bob:SECRET-PASS@{base}/t.wav?key=SECRET-KEY,0,1",
    ]
    fetch = {
        "backend": "http",
        "timeout": 5,
        "retry": FAST,
        "url_template": f"http://{base}/{{id}}?signature=SECRET-TPL",
    }
    (tmp_path / "empty.csv").write_text("")
    sources = [
        {"name": "web", "format": "table", "manifest": table(tmp_path, rows), "fetch": fetch},
        {"name": "nothing", "format": "table", "manifest": "empty.csv", "fetch": {"backend": "http"}},
    ]
    config = write_config(tmp_path, sources)
    out = tmp_path / "out-c"
    (out / "status" / "beam-temp-killed-run-0123").mkdir(parents=True)
    (out / "status" / "beam-temp-killed-run-0123" / "part").write_text("half")
    done = _cli("-v", "ingest", "--config", str(config), "--corpus", "c")
    assert done.returncode == 0, done.stderr
    summary = ingest.read_summary(out)
    assert {k: v for k, v in summary["totals"].items() if v} == {"ok": 2, "failed_permanent": 1, "rejected_row": 1}
    assert summary["warnings"] == ["source nothing: no rows read (an empty manifest?)"]
    assert summary["by_source"]["nothing"]["ok"] == 0 and "no rows read" in done.stderr
    assert not list((out / "status").glob("beam-temp-*"))
    secrets = ("SECRET", "hunter2", "alice:", "bob:")
    texts = {path: path.read_bytes() for path in files_under(out)}
    rows_written = pq.read_table(status_path(out, summary["run_id"])).to_pylist()
    texts["status rows"] = json.dumps(rows_written).encode()
    texts["stdout and stderr"] = (done.stdout + done.stderr).encode()
    for where, data in texts.items():
        assert not any(secret.encode() in data for secret in secrets), where
    assert "REDACTED" in done.stderr  # the debug log did quote the URLs
    media_urls = {ClipCache(out).read_entry(clip_id).media_url for clip_id in ClipCache(out).entries()}
    assert f"http://REDACTED@{base}/t.wav?token=REDACTED&v=1" in media_urls


def test_a_killed_ingest_leaves_no_ffmpeg_running(tmp_path, hostile, server):
    """Item 15: kill -9 of `t2a ingest` takes its ffmpeg children with it."""
    if not die_with_parent():
        pytest.skip("no setpriv here: ffmpeg cannot be tied to its parent")
    for i in range(4):
        shutil.copy(hostile["tone"], server.root / f"{i}.wav")
    server.add_fault("/*.wav", Fault(truncate=0.5, stall=60.0))  # ffmpeg waits on a stalled read
    fetch = {"backend": "http", "timeout": 120, "concurrency": 2, "retry": {"attempts": 1}}
    rows = [f"{server.url}/{i}.wav,0,1" for i in range(4)]
    config = write_config(
        tmp_path, [{"name": "tb", "format": "table", "manifest": table(tmp_path, rows), "fetch": fetch}]
    )
    job = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ingest", "--config", str(config), "--corpus", "c"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        children: list[int] = []
        while not children and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.1)
            children = _ffmpeg_children(job.pid)
        assert children, "ffmpeg never started"
    finally:
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)


# --- small helpers ---------------------------------------------------------------------------------


def _audioset(manifest: str) -> dict:
    return {"name": "as", "format": "audioset", "manifest": manifest, "fetch": {"backend": "youtube"}}


def _mirror(name: str, manifest: str, hostile: dict[str, Path], suffix: str) -> dict:
    """A table of ids fetched from the folder of `hostile` (a local mirror named by id)."""
    fetch = {"backend": "local", "path_template": str(hostile["tone"].parent / f"{{id}}{suffix}")}
    return {"name": name, "format": "table", "manifest": manifest, "fetch": fetch}


def _table(manifest: str) -> dict:
    return {"name": "tb", "format": "table", "manifest": manifest, "fetch": {"backend": "http"}}


def _fetchless(source: dict) -> dict:
    return {**source, "fetch": {"backend": "youtube"}}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def _can_mount_tmpfs(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "mount-probe"
    probe.mkdir()
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k t2a-probe {probe}"], capture_output=True
    )
    return done.returncode == 0


def _ffmpeg_children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == parent and name.startswith("ffmpeg"):
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"
