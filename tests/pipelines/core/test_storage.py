"""The storage layer (pipelines/core/storage.py, core/io.py on an object store): URLs become
ObjectPaths, not local folders named `s3:`; a folder is uploaded with its marker last; a half-uploaded
entry is invisible and a re-run commits it whole. fsspec's in-memory filesystem stands in for a
bucket here (the moto S3 end-to-end test is tests/pipelines/test_object_store.py)."""

from __future__ import annotations

import hashlib
import pickle
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.core import storage
from pipelines.core.io import atomic_path, commit_folder, prepare_output, sha256_file, staged_folder, write_json_atomic
from pipelines.core.storage import ObjectPath, UnsupportedStorage, location
from pipelines.ingest.cache import CLIP_JSON, ClipCache


@pytest.fixture()
def bucket() -> ObjectPath:
    return location(f"memory://t2a-test-{uuid.uuid4().hex[:8]}/corpus")


def test_urls_are_object_paths_and_local_paths_stay_paths(tmp_path):
    assert location("s3://t2a/corpus/") == ObjectPath("s3", "t2a/corpus")
    assert str(location("s3://t2a/corpus") / "clips" / "ab") == "s3://t2a/corpus/clips/ab"
    assert location("file:///tmp/x") == Path("/tmp/x") and location(str(tmp_path)) == tmp_path
    path = location("gs://b/shards/train/shard-000001.tar")
    assert (path.name, path.stem, path.suffix, str(path.parent)) == (
        "shard-000001.tar",
        "shard-000001",
        ".tar",
        "gs://b/shards/train",
    )
    with pytest.raises(TypeError):
        Path(location("s3://t2a/corpus"))  # never silently a local folder called `s3:`
    with pytest.raises(UnsupportedStorage, match="unknown storage scheme 'nope://'"):
        location("nope://x")


def test_an_object_path_pickles_as_its_url(bucket):
    copy = pickle.loads(pickle.dumps(bucket))
    assert copy == bucket and copy.__dict__ == {"protocol": "memory", "key": bucket.key}


def test_files_are_single_objects_and_folders_end_with_their_marker(bucket, tmp_path, monkeypatch):
    write_json_atomic(bucket / "a.json", {"b": 1})
    assert (bucket / "a.json").read_text() == '{\n "b": 1\n}\n'
    with atomic_path(bucket / "t.bin") as temp:
        temp.write_bytes(b"xyz")
    assert (bucket / "t.bin").read_bytes() == b"xyz"
    assert sha256_file(bucket / "t.bin") == hashlib.sha256(b"xyz").hexdigest()
    order = []
    upload = ObjectPath.upload
    monkeypatch.setattr(ObjectPath, "upload", lambda self, local: (order.append(self.name), upload(self, local)))
    staging = tmp_path / "entry"
    staging.mkdir()
    for name in ("clip.json", "audio.flac", "frame_00.jpg"):
        (staging / name).write_bytes(name.encode())
    assert commit_folder(staging, bucket / "entry", marker="clip.json")
    assert order[-1] == "clip.json" and sorted(order) == ["audio.flac", "clip.json", "frame_00.jpg"]
    assert not staging.exists()
    again = tmp_path / "twin"
    again.mkdir()
    (again / "clip.json").write_bytes(b"other")
    assert not commit_folder(again, bucket / "entry", marker="clip.json")  # a committed twin wins
    assert (bucket / "entry" / "clip.json").read_bytes() == b"clip.json"


def test_replacing_a_remote_folder_drops_its_old_members(bucket):
    with staged_folder(bucket / "model") as temp:
        temp.mkdir()
        (temp / "old.bin").write_bytes(b"1")
        (temp / "config.json").write_bytes(b"{}")
    with staged_folder(bucket / "model") as temp:
        temp.mkdir()
        (temp / "config.json").write_bytes(b"{ }")
    assert [p.name for p in (bucket / "model").iterdir()] == ["config.json"]


def test_a_half_uploaded_entry_is_invisible_and_a_rerun_commits_it_whole(bucket, tmp_path):
    cache = ClipCache(bucket)
    assert cache.staging_root.is_relative_to(Path("/")) and not storage.is_remote(cache.staging_root)
    half = cache.entry_dir("tb_1")
    (half / "audio.flac").write_bytes(b"half")  # killed before clip.json was uploaded
    assert not cache.is_complete("tb_1") and list(cache.entries()) == []
    staging = cache.staging("tb_1")
    (staging / "audio.flac").write_bytes(b"whole")
    (staging / CLIP_JSON).write_bytes(b"{}")
    assert cache.commit(staging, "tb_1") and list(cache.entries()) == ["tb_1"]
    assert (half / "audio.flac").read_bytes() == b"whole" and cache.bucket_entries(half.parent.name) == ["tb_1"]


def test_prepare_output_on_an_object_store_writes_nothing_that_stays(bucket):
    assert prepare_output(bucket) == bucket
    assert list(bucket.iterdir()) == []


def test_report_and_review_refuse_a_remote_corpus_in_one_line(tmp_path):
    (tmp_path / "t.csv").write_text("url\nhttp://127.0.0.1:1/a.wav\n")
    config = tmp_path / "d.yaml"
    config.write_text(
        "corpora:\n  demo:\n    output: s3://t2a/corpus\n"
        "    sources: [{name: t, format: table, manifest: t.csv, fetch: {backend: http}}]\n"
    )
    for command in (["report"], ["review", "--export"], ["audit", "sign", "--reviewer", "x"]):
        result = CliRunner().invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == 2, command
        assert "works on a local corpus only, and corpus 'demo' is at s3://t2a/corpus" in result.output
        assert "Traceback" not in result.output and not (tmp_path / "s3:").exists()


def test_an_unknown_scheme_is_exit_2_in_one_line(tmp_path):
    (tmp_path / "t.csv").write_text("url\nhttp://127.0.0.1:1/a.wav\n")
    config = tmp_path / "d.yaml"
    config.write_text(
        "corpora:\n  demo:\n    output: ftp9://t2a/corpus\n"
        "    sources: [{name: t, format: table, manifest: t.csv, fetch: {backend: http}}]\n"
    )
    result = CliRunner().invoke(app, ["ingest", "--config", str(config)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "corpora.demo.output: unknown storage scheme 'ftp9://'" in result.output
    assert not (tmp_path / "ftp9:").exists()


def test_a_shard_on_an_object_store_counts_only_once_its_stats_are_written(bucket, tmp_path):
    from shard_samples import make_sample

    from pipelines.shard.writer import is_complete, read_stats, stats_path, write_shard, write_stats

    samples = [make_sample(f"k{i}", i) for i in range(3)]
    local = write_shard(tmp_path / "shard-000000.tar", samples)
    remote = bucket / "shards" / "train" / "shard-000000.tar"
    stats_path(remote).write_bytes(b"{}")  # an old marker: deleted before the new tar goes up
    info = write_shard(remote, samples)
    assert not stats_path(remote).exists() and not is_complete(remote)  # the tar alone is not a shard
    assert remote.read_bytes() == (tmp_path / "shard-000000.tar").read_bytes() and info.sha256 == local.sha256
    write_stats(remote, info, {"split": "train"})
    assert is_complete(remote) and read_stats(remote)["sha256"] == local.sha256
