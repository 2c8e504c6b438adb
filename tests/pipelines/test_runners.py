"""The cluster paths (issue 16 §2, docs/runners.md): an EXTERNAL worker pool — the way Flink and
Spark run Python workers — that runs the jobs with byte-identical results, a pool that cannot start
workers or an endpoint that never answers as one clear error instead of a hang, credentials that
reach workers whose environment lacks them, and a worker or launcher without the shared files as
one clear error instead of a silent row or a crash."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from synthetic_cache import add_clips, write_config
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.core.beam import pipeline_options
from pipelines.core.config import ConfigError
from pipelines.core.secrets import WorkerSecrets
from pipelines.datasets import load_corpus
from pipelines.ingest import job as ingest
from pipelines.ingest.cache import ClipCache
from pipelines.shard import job as shard

VENV_BIN = Path(sys.executable).parent
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_pool(log: Path, path_first: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """`python -m apache_beam.runners.worker.worker_pool_main`, with `path_first` first on its PATH
    (its workers run the `python` found there); returns once it listens."""
    port = free_port()
    environment = {**(env if env is not None else os.environ), "PATH": f"{path_first}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"]
    pool = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return pool, port
        except OSError:
            time.sleep(0.2)
    pool.kill()
    raise RuntimeError(f"the worker pool did not start: {log.read_text()[-2000:]}")


def stop(pool: subprocess.Popen) -> None:
    pool.terminate()
    try:
        pool.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pool.kill()


def tree_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def entries(output: Path) -> dict[str, dict]:
    """Every clip.json (with its files' sha256s) minus what describes the run, not the clip."""
    cache = ClipCache(output)
    found = {}
    for clip_id in cache.entries():
        record = cache.read_entry(clip_id).to_json_dict()
        record.pop("created"), record.pop("read_bytes")
        found[clip_id] = record
    return found


def test_a_pool_whose_python_lacks_beam_is_a_clear_error_not_a_hang(tmp_path):
    bare = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    if bare is None or subprocess.run([bare, "-c", "import apache_beam"], capture_output=True).returncode == 0:
        pytest.skip("needs a python without apache_beam")
    folder = tmp_path / "bare-bin"
    folder.mkdir()
    (folder / "python").symlink_to(bare)
    log = tmp_path / "pool.log"
    pool, port = start_pool(log, folder)
    try:
        add_clips(tmp_path / "out", ["synth_000"])
        config = write_config(tmp_path, tmp_path / "out", max_samples=3)
        external = [
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{port}",
            "--worker_start_timeout=10",
        ]
        started = time.monotonic()
        done = runner.invoke(app, ["shard", "--config", str(config), "--corpus", "synth", "--", *external])
        assert time.monotonic() - started < 60
    finally:
        stop(pool)
    assert done.exit_code == 2, done.output
    assert "started no SDK worker within 10 s" in done.output and "No module named 'apache_beam'" in done.output
    assert "Traceback" not in done.output
    assert "No module named 'apache_beam'" in log.read_text()  # what the pool itself said


def test_an_endpoint_that_never_answers_is_a_clear_error(tmp_path):
    with socket.socket() as silent:  # accepts connections, never speaks gRPC
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"no EXTERNAL worker pool answers at localhost:{port}"):
            pipeline_options(
                ["--environment_type=EXTERNAL", f"--environment_config=localhost:{port}", "--worker_start_timeout=2"]
            )
        assert time.monotonic() - started < 20
    with pytest.raises(ConfigError, match="needs --environment_config=host:port"):
        pipeline_options(["--environment_type=EXTERNAL"])


def test_ingest_and_shard_through_an_external_worker_pool_are_byte_identical(mini, tmp_path, monkeypatch):
    """The pool's environment has no Freesound key: the launcher's reaches its workers. Ingest runs
    on the PortableRunner (embedded job service, one pool worker), shard on the FnApiRunner with two
    pool worker processes; both give the bytes of the in-process FnApiRunner."""
    key = os.environ["FREESOUND_API_KEY"]  # set by the mini fixture, in the launcher only
    clean = {k: v for k, v in os.environ.items() if k != "FREESOUND_API_KEY"}
    log = tmp_path / "pool.log"
    pool, port = start_pool(log, VENV_BIN, env=clean)
    corpus = load_corpus(mini.config, "mini")
    out = mini.root / "out"
    try:
        external = ["--environment_type=EXTERNAL", f"--environment_config=localhost:{port}"]
        summary = ingest.run(corpus, beam_args=["--runner=PortableRunner", "--job_endpoint=embed", *external])
        pooled_cache = entries(out)
        status = pq.read_table(out / "status" / f"{summary['run_id']}.parquet").to_pylist()
        pooled = shard.run(corpus, beam_args=[*external, "--direct_num_workers=2"])
        pooled_shards = tree_digests(out / "shards")
    finally:
        stop(pool)
    freesound = [row for row in status if row["source"] == "fs"]
    assert freesound and all(row["status"] == "ok" for row in freesound), freesound
    text = log.read_text()
    assert text.count("Starting worker with command") >= 3  # the probes, one for ingest, two for shard
    for path in out.rglob("*"):
        assert not path.is_file() or key.encode() not in path.read_bytes(), path
    shutil.rmtree(out)
    ingest.run(corpus)
    assert entries(out) == pooled_cache and len(pooled_cache) >= 5
    assert shard.run(corpus) == pooled and tree_digests(out / "shards") == pooled_shards


def test_a_credential_the_launcher_lacks_is_one_clear_error(mini, monkeypatch):
    monkeypatch.delenv("FREESOUND_API_KEY")
    done = runner.invoke(app, ["ingest", "--config", str(mini.config), "--corpus", "mini"])
    assert done.exit_code == 2 and "environment variable FREESOUND_API_KEY is not set" in done.output
    assert "Traceback" not in done.output
    secrets = WorkerSecrets({"FREESOUND_API_KEY": "s3cr3t"})
    assert "s3cr3t" not in repr(secrets) and "s3cr3t" not in str(secrets) and secrets.names == ["FREESOUND_API_KEY"]


def test_a_worker_without_the_manifests_fails_the_run_in_one_line(mini):
    corpus = load_corpus(mini.config, "mini")  # the launcher sees the files ...
    manifest = next(s.manifest for s in corpus.config.sources if s.name == "tb")
    manifest.unlink()  # ... the workers do not
    with pytest.raises(ConfigError, match=f"source 'tb': the workers cannot see its manifest {manifest}") as raised:
        ingest.run(corpus)
    assert "\n" not in str(raised.value) and "t2a worker setup" not in str(raised.value)


def test_a_launcher_that_does_not_see_the_output_says_so(mini, monkeypatch):
    monkeypatch.setattr(ingest, "summary_path", lambda output, run_id: Path("/nonexistent") / f"{run_id}.json")
    with pytest.raises(ConfigError, match="is not on this machine: the workers wrote `output` somewhere"):
        ingest.run(load_corpus(mini.config, "mini"))


def test_every_command_in_the_runner_docs_is_valid_for_the_installed_beam():
    """docs/runners.md: each `t2a` line's Beam options parse (choices such as --flink_version
    checked) and none is unknown to Beam or t2a."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask import dask_runner  # noqa: F401 - registers Beam's --dask_client_address

    from pipelines.core import beam  # noqa: F401 - registers t2a's own options

    text = (Path(__file__).parents[2] / "docs" / "runners.md").read_text()
    commands = [line for block in text.split("```bash")[1:] for line in block.split("```")[0].splitlines()]
    commands = [line for line in commands if line.startswith("t2a ")]
    assert len(commands) >= 8
    for line in commands:
        args = shlex.split(line.replace("$", "X"))
        assert args[1] in {"ingest", "annotate", "shard", "qc"}, line
        beam_args = args[args.index("--") + 1 :] if "--" in args else []
        options = PipelineOptions(beam_args)
        known = options.get_all_options()  # argparse: an invalid choice exits
        unknown = set(options.get_all_options(retain_unknown_options=True)) - set(known)
        assert not unknown, (line, unknown)
        assert "1.18" not in line


def test_a_shard_launcher_that_does_not_see_the_output_says_so(tmp_path, monkeypatch):
    add_clips(tmp_path / "out", ["synth_000"])
    config = write_config(tmp_path, tmp_path / "out", max_samples=3)
    monkeypatch.setattr(shard, "write_index", lambda *args: {})  # the index went to the workers' own disk
    done = runner.invoke(app, ["shard", "--config", str(config), "--corpus", "synth"])
    assert done.exit_code == 2 and "is not on this machine: the workers wrote `output` somewhere" in done.output
    assert "Traceback" not in done.output
