"""Manifest records through spill files: bounded buffers, references in the shuffle, nothing left."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.core.records import Clip, Label, RejectedRow
from pipelines.datasets import load_corpus
from pipelines.ingest import job as ingest
from pipelines.ingest import spill
from pipelines.ingest.spill import SpillWriter, read_spilled, remove_spill, spill_folder
from pipelines.ingest.status import status_path

ROOT = Path(__file__).resolve().parents[3]


def clip(i: int) -> Clip:
    return Clip(
        source="s",
        format="table",
        clip_id=f"c{i}",
        source_id=f"c{i}",
        media=None,
        labels=(Label(name=f"label {i % 3}", mid=None),),
        meta={"n": i},
        manifest="m.csv",
        line=i + 2,
    )


def test_spilled_records_come_back_whole_per_partition_in_a_bounded_number_of_files(tmp_path):
    records = [clip(i) for i in range(1000)] + [RejectedRow("s", "m.csv", 2000 + i, "bad start") for i in range(10)]
    writer = SpillWriter(tmp_path / "spill", flush_records=128)
    refs: dict[int, list] = {}
    for record in records:
        for partition, ref in writer.add(ingest.partition_of(record, 7), record):
            refs.setdefault(partition, []).append(ref)
        assert writer.buffered < 128  # the buffer never grows past one flush
    for partition, ref in writer.close():
        refs.setdefault(partition, []).append(ref)
    files = sorted((tmp_path / "spill").iterdir())
    assert len(files) == -(-len(records) // 128)  # one file per flush, not one per record or partition
    assert not [path for path in files if path.name.startswith(".")]  # no temporary left
    back: list = []
    for partition, partition_refs in refs.items():
        found = list(read_spilled(tmp_path / "spill", partition_refs))
        assert {ingest.partition_of(record, 7) for record in found} == {partition}
        assert sum(ref[3] for ref in partition_refs) == len(found)
        back += found
    assert Counter(map(repr, back)) == Counter(map(repr, records))  # every record once, fields intact


def test_a_truncated_spill_file_is_an_error_not_fewer_records(tmp_path):
    writer = SpillWriter(tmp_path / "spill", flush_records=1000)
    for i in range(50):
        writer.add(0, clip(i))
    [(_, ref)] = writer.close()
    path = tmp_path / "spill" / ref[0]
    path.write_bytes(path.read_bytes()[: ref[2] // 2])
    with pytest.raises(OSError, match="shorter than the job wrote it"):
        list(read_spilled(tmp_path / "spill", [ref]))


def test_remove_spill_removes_one_run_or_every_run(tmp_path):
    for run_id in ("a", "b"):
        writer = SpillWriter(spill_folder(tmp_path, run_id))
        writer.add(0, clip(0))
        writer.close()
    assert remove_spill(tmp_path, "a") == 1
    assert [p.name for p in (tmp_path / spill.SPILL).iterdir()] == ["b"]
    assert remove_spill(tmp_path) == 1
    assert not (tmp_path / spill.SPILL).exists()
    assert remove_spill(tmp_path) == 0


def write_table_corpus(tmp_path: Path, rows: int) -> Path:
    """A table manifest of `rows` rows against an empty local mirror (every clip fails fast), with
    duplicates across the spill files and a malformed row."""
    lines = ["id,start,end,labels"]
    for i in range(rows):
        source = i - 301 if i % 97 == 96 else i  # a duplicate, usually in another spill file
        start = "x" if i % 251 == 250 else "0"
        lines.append(f"t{source:05d},{start},5,label {source % 4}")
    manifest = tmp_path / "table.csv"
    manifest.write_text("\n".join(lines) + "\n")
    (tmp_path / "mirror").mkdir()
    source = {
        "name": "tb",
        "format": "table",
        "manifest": str(manifest),
        "fetch": {"backend": "local", "path_template": str(tmp_path / "mirror" / "{id}.wav")},
    }
    config = tmp_path / "datasets.yaml"
    corpus = {"output": str(tmp_path / "out"), "media": {"sample_rate": 16000, "frames": 0}, "sources": [source]}
    config.write_text(yaml.safe_dump({"corpora": {"spill": corpus}}))
    return config


def test_ingest_through_many_spill_files_gives_one_status_row_per_manifest_row(tmp_path, monkeypatch):
    monkeypatch.setattr(spill, "FLUSH_RECORDS", 100)  # ~20 spill files, each partition read from many
    monkeypatch.setattr(ingest, "BATCH_RECORDS", 64)
    rows = 2000
    config = write_table_corpus(tmp_path, rows)
    summary = ingest.run(load_corpus(config, "spill"), beam_args=["--runner=FnApiRunner"])
    assert summary["rows"] == rows
    table = pq.read_table(status_path(tmp_path / "out", summary["run_id"])).to_pylist()
    assert sorted(row["line"] for row in table) == list(range(2, rows + 2))  # one row per manifest row
    counts = Counter(row["status"] for row in table)
    lines = (tmp_path / "table.csv").read_text().splitlines()[1:]
    kept = Counter(line.split(",")[0] for line in lines if ",x," not in line)
    assert counts["duplicate"] == sum(n - 1 for n in kept.values()) > 10
    assert counts["rejected_row"] == sum(1 for i in range(rows) if i % 251 == 250)
    assert counts["failed_permanent"] == rows - counts["duplicate"] - counts["rejected_row"]
    assert not (tmp_path / "out" / spill.SPILL).exists()  # removed when the run ended


def test_a_killed_runs_spill_is_removed_by_the_next_run(tmp_path):
    config = write_table_corpus(tmp_path, 50)
    leftover = spill_folder(tmp_path / "out", "20260101T000000000000Z")
    writer = SpillWriter(leftover)
    writer.add(0, clip(0))
    writer.close()
    code = (
        "import json, sys; from pipelines.datasets import load_corpus; from pipelines.ingest import job; "
        "print(json.dumps(job.run(load_corpus(sys.argv[1], 'spill'))['totals']))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(config)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sum(json.loads(done.stdout.splitlines()[-1]).values()) == 50
    assert not (tmp_path / "out" / spill.SPILL).exists()
