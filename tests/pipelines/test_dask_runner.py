"""A real distributed engine: Beam's DaskRunner on a dask.distributed cluster (a scheduler and two
worker processes on loopback). Ingest gives the same clip cache and status table as on the
FnApiRunner (docs/runners.md, "DaskRunner": what the runner cannot run, and why shard is not yet
portable to it)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mini_corpus import build_mini_corpus
from moto_s3 import s3_server

from demo.freesound_api import freesound_route
from demo.server import LoopbackServer
from pipelines.core.io import read_parquet
from pipelines.core.storage import ObjectPath, location
from pipelines.datasets import load_corpus
from pipelines.ingest import job as ingest
from pipelines.ingest.cache import ClipCache, Failures
from pipelines.ingest.status import status_path

distributed = pytest.importorskip("distributed")
FN_API = ["--runner=FnApiRunner"]


@pytest.fixture()
def dask_cluster(mini):
    """Started after `mini`, so the worker processes inherit its environment (the Freesound key)."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster
        for client in list(distributed.client._global_clients.values()):  # the runner's own client
            client.close()


def dask(cluster) -> list[str]:
    return ["--runner=DaskRunner", f"--dask_client_address={cluster.scheduler_address}"]


def entries(output: Path | ObjectPath) -> dict[str, dict]:
    """Every clip.json minus what describes the run: when it was made, ffmpeg's read-ahead."""
    cache = ClipCache(output)
    found = {}
    for clip_id in cache.entries():
        record = cache.read_entry(clip_id).to_json_dict()
        record.pop("created"), record.pop("read_bytes")
        found[clip_id] = record
    return found


def statuses(output: Path | ObjectPath, run_id: str) -> list[tuple]:
    rows = read_parquet(status_path(output, run_id)).to_pylist()
    return sorted((r["source"], r["line"], r["status"], r["clip_id"], r["reason"], r["rows"]) for r in rows)


def test_ingest_on_dask_gives_the_fnapi_runners_cache_and_status(mini, dask_cluster):
    local = ingest.run(load_corpus(mini.config, "mini"), beam_args=FN_API)
    remote = ingest.run(load_corpus(mini.config, "other"), beam_args=dask(dask_cluster))
    counts = Counter()
    for row in pq.read_table(status_path(mini.root / "out2", remote["run_id"])).to_pylist():
        counts[row["status"]] += row["rows"]
    assert dict(counts) == mini.expected and remote["totals"] == local["totals"]
    assert statuses(mini.root / "out", local["run_id"]) == statuses(mini.root / "out2", remote["run_id"])
    assert entries(mini.root / "out") == entries(mini.root / "out2") != {}
    again = ingest.run(load_corpus(mini.config, "other"), beam_args=dask(dask_cluster))
    assert again["totals"]["cached"] == mini.expected["ok"] and again["totals"]["ok"] == 0


def test_ingest_on_dask_writes_its_tables_to_an_object_store(tmp_path, media, monkeypatch):
    """`output: s3://…` (moto on loopback) on the Dask cluster: the workers reach S3 through the
    environment they were started with; the status parts, the joined table, the failure files and
    the done-set go through the storage layer, and the launcher reads the workers' summary back."""
    monkeypatch.setenv("FREESOUND_API_KEY", "demo-key")
    (tmp_path / "www").mkdir()
    with s3_server("corpus"), LoopbackServer(tmp_path / "www") as server:
        config = build_mini_corpus(tmp_path, server.url, media, {"mini": "out", "s3": "s3://corpus/dask"})
        server.routes["/apiv2/"] = freesound_route(tmp_path / "www" / "freesound" / "sounds.json")
        local = ingest.run(load_corpus(config, "mini"), beam_args=FN_API)
        with distributed.LocalCluster(  # started inside the server context: the workers inherit AWS_*
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster:
            try:
                remote = ingest.run(load_corpus(config, "s3"), beam_args=dask(cluster))
                again = ingest.run(load_corpus(config, "s3"), beam_args=dask(cluster))
            finally:
                for client in list(distributed.client._global_clients.values()):
                    client.close()
        out = location("s3://corpus/dask")
        assert remote["totals"] == local["totals"] and again["totals"]["cached"] == local["totals"]["ok"]
        assert statuses(tmp_path / "out", local["run_id"]) == statuses(out, remote["run_id"])
        assert entries(tmp_path / "out") == entries(out) != {}
        assert ClipCache(out).done_ids() == set(ClipCache(out).entries())
        failed = {r["clip_id"] for r in Failures(tmp_path / "out").read().to_pylist()}
        assert failed and failed == {r["clip_id"] for r in Failures(out).read().to_pylist()}
        assert not list((out / "status").glob(".*.parts")) and len(Failures(out).files()) == 1
