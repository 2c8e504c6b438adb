"""The failure table through the real job: a failure is final only under the fetch settings that
produced it, re-runs read it once, and it is one table, not a file per clip."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from pipelines.core.tools import run_ffmpeg
from pipelines.datasets import load_corpus
from pipelines.ingest import job as ingest
from pipelines.ingest.cache import ClipCache, Failures, bucket

FN_API = ["--runner=FnApiRunner"]


def mirror_corpus(root: Path, template: str, *, concurrency: int = 1, retry: int = 1) -> Path:
    """A table of 4 ids fetched from a local mirror named by `template` (relative to `root`)."""
    (root / "ids.csv").write_text("id,start,end\n" + "".join(f"tone_{i},0,1\n" for i in range(4)))
    fetch = {"backend": "local", "path_template": template, "concurrency": concurrency, "retry": {"attempts": retry}}
    source = {"name": "tb", "format": "table", "manifest": "ids.csv", "fetch": fetch}
    config = root / "c.yaml"
    config.write_text(
        yaml.safe_dump({"corpora": {"c": {"output": "out", "media": {"frames": 0}, "sources": [source]}}})
    )
    return config


def run(config: Path, retry_failed: bool = False) -> dict:
    return ingest.run(load_corpus(config, "c"), retry_failed=retry_failed, beam_args=FN_API)


def test_fixing_a_wrong_path_template_retries_the_failures_it_caused(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=500:duration=2:sample_rate=44100", str(mirror / "tone_0.wav"))
    for i in range(1, 4):
        shutil.copy(mirror / "tone_0.wav", mirror / f"tone_{i}.wav")
    wrong = mirror_corpus(tmp_path, "mirror/{id}.flac")  # the mirror holds .wav files
    first = run(wrong)
    assert first["totals"]["failed_permanent"] == 4
    out = tmp_path / "out"
    files = Failures(out).files()
    assert len(files) == 1 and not list((out / "failures").glob("*/*.json"))  # one table file, not 4
    # The same settings (a retry policy or a concurrency are not what is fetched): final, not retried.
    again = run(mirror_corpus(tmp_path, "mirror/{id}.flac", concurrency=2, retry=3), retry_failed=True)
    assert again["totals"]["failed_permanent"] == 4 and Failures(out).files() == files
    fixed = run(mirror_corpus(tmp_path, "mirror/{id}.wav"))
    assert fixed["totals"]["ok"] == 4 and sorted(ClipCache(out).done_ids()) == [f"tb_tone_{i}" for i in range(4)]
    last = run(mirror_corpus(tmp_path, "mirror/{id}.wav"))
    assert last["totals"]["cached"] == 4 and Failures(out).files() == []  # folded away: every clip is done


def test_failure_records_of_older_versions_are_still_final(tmp_path):
    """Per-clip JSON records (no fetch digest) are read, and folded into the table."""
    config = mirror_corpus(tmp_path, "mirror/{id}.wav")  # an empty mirror
    (tmp_path / "mirror").mkdir()
    old = tmp_path / "out" / "failures" / bucket("tb_tone_2") / "tb_tone_2.json"
    old.parent.mkdir(parents=True)
    old.write_text('{"clip_id": "tb_tone_2", "source": "tb", "reason": "HTTP 451", "retryable": false, "attempts": 1}')
    summary = run(config)
    assert summary["totals"]["failed_permanent"] == 4 and not old.exists()
    index = Failures(tmp_path / "out").load()
    assert index.get("tb_tone_2")["reason"] == "HTTP 451" and index.get("tb_tone_1")["reason"].startswith(
        "file not found"
    )
