"""The ingest job end to end on the real Beam graph: FnApiRunner, PortableRunner, re-runs, a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that

from demo.server import Fault
from pipelines.core.tools import run_ffmpeg
from pipelines.datasets import load_corpus
from pipelines.ingest import job as ingest
from pipelines.ingest.cache import CLIP_JSON, ClipCache
from pipelines.ingest.status import status_path

FN_API = ["--runner=FnApiRunner"]
PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]


def run(mini, corpus: str = "mini", *beam_args: str, retry_failed: bool = False) -> dict:
    return ingest.run(load_corpus(mini.config, corpus), retry_failed=retry_failed, beam_args=beam_args)


def statuses(output: Path, run_id: str) -> list[dict]:
    return pq.read_table(status_path(output, run_id)).to_pylist()


def entries(output: Path) -> dict[str, dict]:
    """Every cache entry's clip.json (file hashes included) minus what describes the run rather
    than the clip: when it was made, and how much ffmpeg's read-ahead pulled over HTTP."""
    cache = ClipCache(output)
    found = {}
    for clip_id in cache.entries():
        record = cache.read_entry(clip_id).to_json_dict()
        record.pop("created"), record.pop("read_bytes")
        found[clip_id] = record
    return found


def test_graph_emits_one_status_per_manifest_row_with_metrics(mini):
    corpus = load_corpus(mini.config, "mini")
    pipeline = beam.Pipeline(options=PipelineOptions(FN_API))
    rows = pipeline | ingest.Ingest(corpus)
    expected = dict(mini.expected)  # the matcher is pickled: it must not hold the server

    def check(found):
        counts = Counter()
        for row in found:
            counts[row.status] += row.rows
        assert dict(counts) == expected

    assert_that(rows, check)
    result = pipeline.run()
    result.wait_until_finish()
    counters = Counter()  # summed over the steps that count (each status is counted once, by one step)
    for c in result.metrics().query(MetricsFilter().with_namespace("ingest"))["counters"]:
        counters[c.key.metric.name] += c.committed
    assert counters["ok"] == 7 and counters["rejected_row"] == 3 and counters["excluded"] == 2
    assert counters["tb/failed_permanent"] == 3


def test_run_writes_cache_status_summary_and_resolved_config(mini):
    summary = run(mini)
    out = mini.root / "out"
    assert {k: v for k, v in summary["totals"].items() if v} == mini.expected
    assert summary["rows"] == sum(mini.expected.values()) and summary["config_hash"]
    rows = statuses(out, summary["run_id"])
    assert sum(r["rows"] for r in rows) == summary["rows"]
    by_line = {(r["source"], r["line"]): r for r in rows}
    assert by_line[("as", 10)]["reason"].startswith("bad start_seconds 'ten'")
    assert by_line[("as", 7)]["status"] == "duplicate"
    assert by_line[("tb", 5)]["reason"] == "not media: the server answered an HTML page"
    assert by_line[("tb", 6)]["reason"] == "no audio stream in the media"
    assert "youtube" in by_line[("as", 6)]["reason"] and "404" in by_line[("as", 6)]["reason"]
    assert {r["reason"] for r in rows if r["status"] == "excluded"} == {"in exclusion list audiocaps_test"}
    assert json.loads((out / "ingest.config.json").read_text())["resolved"]["sources"][0]["name"] == "as"


def test_duplicates_merge_labels_and_captions_from_other_sources(mini):
    run(mini)
    found = entries(mini.root / "out")
    speech_and_siren = found["yt_AAAAAAAAAAA_5000"]
    assert [c["text"] for c in speech_and_siren["captions"]] == ["A man speaks while a siren wails"]
    assert [label["mid"] for label in speech_and_siren["labels"]] == ["/m/09x0r", "/m/03kmc9"]
    assert speech_and_siren["meta"]["duplicates"] == ["as:7", "ac:2"]
    padded = found["yt_BBBBBBBBBBB_12000"]
    assert padded["padded"] and padded["duration"] == pytest.approx(8.0, abs=0.1)
    freesound = found["fs_101"]
    assert freesound["licence"].endswith("/zero/1.0/") and freesound["captions"][0]["kind"] == "source_text"
    assert not any(clip_id.startswith("yt_DDDDDDDDDDD") for clip_id in found)


def test_rerun_is_cached_and_failures_are_not_refetched(mini):
    run(mini)
    mini.server.log.clear()
    second = run(mini)
    assert second["totals"]["cached"] == 7 and second["totals"]["ok"] == 0
    media = [r for r in mini.server.log if not r.path.startswith("/apiv2/")]
    assert media == []  # nothing fetched again, not even the clips that failed


def test_retry_failed_retries_only_retryable_failures(mini):
    mini.server.add_fault("/media/tone.wav", Fault(status=503, times=4))
    first = run(mini)
    assert first["totals"]["failed_retryable"] == 1
    mini.server.log.clear()
    again = run(mini)
    assert again["totals"]["failed_retryable"] == 1 and mini.server.requests_for("/media/*") == []
    retried = run(mini, "mini", retry_failed=True)
    assert retried["totals"]["ok"] == 1 and retried["totals"]["failed_permanent"] == mini.expected["failed_permanent"]
    assert {r.path for r in mini.server.requests_for("/media/*")} == {"/media/tone.wav"}


def test_fnapi_and_portable_runners_give_the_same_cache(mini):
    run(mini, "mini", *FN_API)
    run(mini, "other", *PORTABLE)
    first, second = entries(mini.root / "out"), entries(mini.root / "out2")
    assert len(first) == mini.expected["ok"] and first == second


def test_a_killed_run_leaves_no_half_entries_and_a_rerun_finishes_without_refetching(tmp_path, media, server):
    config = _slow_corpus(tmp_path, media, server)
    job = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ingest", "--config", str(config), "--corpus", "slow"],
        cwd=Path(__file__).parents[3],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cache = ClipCache(tmp_path / "out")
    deadline = time.monotonic() + 120
    while len(list(cache.entries())) < 3 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    done = set(cache.entries())
    assert 3 <= len(done) < 12, "the job was not killed mid-run"
    for bucket in (p for p in cache.clips.iterdir() if p.name != ".staging"):
        assert all((entry / CLIP_JSON).is_file() for entry in bucket.iterdir())  # no half entries
    fetched_before = {r.path for r in server.requests_for("/slow/*")}
    server.log.clear()
    summary = ingest.run(load_corpus(config, "slow"))
    assert summary["totals"]["cached"] == len(done) and summary["totals"]["ok"] == 12 - len(done)
    assert len(set(cache.entries())) == 12 and not any(cache.staging_root.iterdir())
    refetched = {r.path for r in server.requests_for("/slow/*")}
    assert refetched.isdisjoint({f"/slow/{clip}.wav" for clip in range(12) if f"tb_{clip}" in done})
    assert refetched | fetched_before == {f"/slow/{i}.wav" for i in range(12)}


def _slow_corpus(tmp_path: Path, media, server) -> Path:
    (server.root / "slow").mkdir()
    for i in range(12):
        run_ffmpeg("-i", str(media.wav), "-t", "2", str(server.root / "slow" / f"{i}.wav"))
    server.add_fault("/slow/*", Fault(delay=0.4))
    (tmp_path / "ids.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(12)))
    config = tmp_path / "datasets.yaml"
    config.write_text(
        json.dumps(
            {
                "corpora": {
                    "slow": {
                        "output": "out",
                        "media": {"frames": 0},
                        "sources": [
                            {
                                "name": "tb",
                                "format": "table",
                                "manifest": "ids.csv",
                                "fetch": {
                                    "backend": "http",
                                    "url_template": f"{server.url}/slow/{{id}}.wav",
                                    "concurrency": 2,
                                },
                            }
                        ],
                    }
                }
            }
        )
    )
    return config


def test_clip_json_records_the_pinned_ffmpeg_and_another_one_is_said(mini, monkeypatch, tmp_path):
    from pipelines.core import tools

    first = run(mini)
    pinned = tools.ffmpeg_version()
    assert first["ffmpeg"] == {"version": pinned, "origin": "imageio-ffmpeg", "cache_built_with": [], "differs": False}
    recorded = {(e["tools"]["ffmpeg"], e["tools"]["ffmpeg_origin"]) for e in entries(mini.root / "out").values()}
    assert recorded == {(pinned, "imageio-ffmpeg")}
    other = tmp_path / "bin" / "ffmpeg"
    other.parent.mkdir()
    other.write_text(
        f'#!/bin/sh\n[ "$2" = "-version" ] && echo "ffmpeg version 5.1-test" && exit 0\nexec {tools.bundled_ffmpeg()} "$@"\n'
    )
    other.chmod(0o755)
    monkeypatch.setenv(tools.FFMPEG_ENV, str(other))
    tools.ffmpeg_exe.cache_clear(), tools.ffmpeg_version.cache_clear()
    try:
        second = run(mini)
    finally:
        monkeypatch.delenv(tools.FFMPEG_ENV)
        tools.ffmpeg_exe.cache_clear(), tools.ffmpeg_version.cache_clear()
    assert second["ffmpeg"]["differs"] and second["ffmpeg"]["cache_built_with"] == [pinned]
    assert second["ffmpeg"]["version"] == "5.1-test" and second["totals"]["cached"] == 7  # kept, not re-encoded
    assert any("ffmpeg 5.1-test" in w and pinned in w for w in second["warnings"])
