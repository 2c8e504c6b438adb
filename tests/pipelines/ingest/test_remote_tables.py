"""16b's failure table, done-set and status parts through the storage layer: the same job on an
fsspec `memory://` output (in-process, as FnApiRunner runs it) keeps the same guarantees as on disk.
The moto S3 end-to-end run is tests/pipelines/test_object_store.py."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import yaml

from pipelines.core.storage import ObjectPath, location
from pipelines.core.tools import run_ffmpeg
from pipelines.datasets import load_corpus
from pipelines.ingest import job as ingest
from pipelines.ingest.cache import CLIP_JSON, ClipCache, Failures, bucket
from pipelines.ingest.status import parts_folder, status_path

FN_API = ["--runner=FnApiRunner"]


def remote_corpus(root: Path, output: ObjectPath, template: str) -> Path:
    (root / "ids.csv").write_text("id,start,end\n" + "".join(f"tone_{i},0,1\n" for i in range(4)))
    fetch = {"backend": "local", "root": str(root), "path_template": template, "retry": {"attempts": 1}}
    source = {"name": "tb", "format": "table", "manifest": str(root / "ids.csv"), "fetch": fetch}
    config = root / "c.yaml"
    config.write_text(
        yaml.safe_dump({"corpora": {"c": {"output": str(output), "media": {"frames": 0}, "sources": [source]}}})
    )
    return config


def run(config: Path) -> dict:
    return ingest.run(load_corpus(config, "c"), beam_args=FN_API)


def test_failures_done_set_and_status_parts_on_an_object_store(tmp_path):
    out = location(f"memory://t2a-test-{uuid.uuid4().hex[:8]}/corpus")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=500:duration=2:sample_rate=44100", str(mirror / "tone_0.wav"))
    for i in range(1, 4):
        shutil.copy(mirror / "tone_0.wav", mirror / f"tone_{i}.wav")
    # A per-clip record of an older version, on the store: read, final, folded into the table.
    (out / "failures" / bucket("tb_tone_3") / "tb_tone_3.json").write_text(
        '{"clip_id": "tb_tone_3", "source": "tb", "reason": "HTTP 451", "retryable": false, "attempts": 1}'
    )
    first = run(remote_corpus(tmp_path, out, "mirror/{id}.flac"))  # the mirror holds .wav files
    assert first["totals"]["failed_permanent"] == 4
    files = Failures(out).files()
    # the old record folded at the start (`-a`), this run's bundle (`-b`): one file each, not one per clip
    assert [f.name.split("-")[1] for f in files] == ["a", "b"] and all(isinstance(f, ObjectPath) for f in files)
    assert Failures(out).load().get("tb_tone_3")["reason"] == "HTTP 451"
    assert not list((out / "failures").glob("*/*.json"))  # folded
    assert status_path(out, first["run_id"]).is_file() and not list(parts_folder(out, first["run_id"]).find())

    # A half-uploaded entry (members, no clip.json) is not done; the fixed template fetches it whole.
    (ClipCache(out).entry_dir("tb_tone_0") / "audio.flac").write_bytes(b"half")
    assert ClipCache(out).done_ids() == set()
    fixed = run(remote_corpus(tmp_path, out, "mirror/{id}.wav"))
    assert fixed["totals"]["ok"] == 3 and fixed["totals"]["failed_permanent"] == 1  # tone_3: the old record
    cache = ClipCache(out)
    assert sorted(cache.done_ids()) == sorted(cache.entries()) == [f"tb_tone_{i}" for i in range(3)]
    assert (cache.entry_dir("tb_tone_0") / CLIP_JSON).is_file()
    again = run(remote_corpus(tmp_path, out, "mirror/{id}.wav"))
    assert again["totals"]["cached"] == 3 and [row["clip_id"] for row in Failures(out).read().to_pylist()] == [
        "tb_tone_3"
    ]


def test_a_run_that_reads_no_row_still_writes_its_status_on_the_object_store(tmp_path):
    out = location(f"memory://t2a-test-{uuid.uuid4().hex[:8]}/corpus")
    config = remote_corpus(tmp_path, out, "mirror/{id}.wav")
    (tmp_path / "ids.csv").write_text("id,start,end\n")
    summary = run(config)
    assert summary["rows"] == 0 and status_path(out, summary["run_id"]).is_file()
    assert summary["warnings"] == ["source tb: no rows read (an empty manifest?)"]
    (out / "status" / ".20000101T000000000000Z.parts" / "x.parquet").write_bytes(b"killed")  # a killed run's part
    assert ingest.remove_beam_temps(out / "status") == 1 and not list((out / "status").glob(".*.parts"))
