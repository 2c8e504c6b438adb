"""The `t2a` command: help on every command, clean errors, Beam options after `--`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [[], ["ingest"], ["annotate"], ["shard"], ["report"], ["status"], ["demo-corpus"], ["demo-models"], ["serve"]],
)
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_config_errors_are_one_message_without_traceback(tmp_path):
    bad = tmp_path / "d.yaml"
    bad.write_text("corpora:\n  demo:\n    output: o\n    sources: []\n")
    result = runner.invoke(app, ["ingest", "--config", str(bad)])
    assert result.exit_code == 2
    assert "corpora.demo.sources: List should have at least 1 item" in result.output
    assert "Traceback" not in result.output


def test_annotate_errors_are_one_message(tmp_path):
    config = tmp_path / "d.yaml"
    source = "sources: [{name: t, format: table, manifest: t.csv, fetch: {backend: http}}]"
    (tmp_path / "t.csv").write_text("url\nhttp://127.0.0.1:1/a.wav\n")
    config.write_text(f"corpora:\n  demo:\n    output: o\n    {source}\n")
    result = runner.invoke(app, ["annotate", "--config", str(config)])
    assert result.exit_code == 2 and "no `annotate:` block" in result.output and "Traceback" not in result.output
    config.write_text(
        f"corpora:\n  demo:\n    output: o\n    {source}\n    annotate: {{clap: {{model: ./nowhere, backend: clapp}}}}\n"
    )
    result = runner.invoke(app, ["annotate", "--config", str(config)])
    assert (
        result.exit_code == 2
        and "corpora.demo.annotate.clap.backend" in result.output
        and "laion_clap" in result.output
    )
    result = runner.invoke(app, ["annotate", "--config", str(config), "--device", "tpu"])
    assert result.exit_code == 2 and "--device" in result.output
    # Never wrapped at the terminal width, however long the path: the line can be copied whole.
    output = tmp_path / ("a-long-output-folder-" * 8) / "o"
    config.write_text(f"corpora:\n  demo:\n    output: {output}\n    {source}\n")
    result = runner.invoke(app, ["report", "--config", str(config)], terminal_width=60)
    assert result.exit_code == 2
    assert f"under {output / 'annotations'}: run `t2a annotate` first\n" in result.output
    assert result.output.count("\n") == 1


def test_ingest_passes_beam_options_through(mini):
    args = [
        "ingest",
        "--config",
        str(mini.config),
        "--corpus",
        "mini",
        "--",
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=LOOPBACK",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ingest mini" in result.output and "failed_permanent" in result.output
    status = runner.invoke(app, ["status", "--config", str(mini.config), "--corpus", "mini"])
    assert status.exit_code == 0 and "ingest mini" in status.output


def test_console_script_is_installed():
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "ingest" in done.stdout
