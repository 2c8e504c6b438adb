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
    [
        [],
        ["ingest"],
        ["annotate"],
        ["qc"],
        ["shard"],
        ["report"],
        ["review"],
        ["audit", "sign"],
        ["status"],
        ["demo-corpus"],
        ["demo-models"],
        ["serve"],
    ],
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


def test_qc_review_and_audit_sign_from_the_command_line(tmp_path):
    """qc measures, review --export writes the files, audit sign refuses an empty review then signs."""
    from audit_corpus import build_audit_corpus

    from pipelines.datasets import load_corpus
    from pipelines.review.session import Review

    config = build_audit_corpus(tmp_path)
    base = ["--config", str(config), "--corpus", "audit"]
    result = runner.invoke(app, ["audit", "sign", *base, "--reviewer", "ann"])
    assert result.exit_code == 2 and "run `t2a review`" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["qc", *base])
    assert result.exit_code == 0 and "16 clips measured" in result.output and "1 near-duplicate group" in result.output
    result = runner.invoke(app, ["review", *base, "--export", "--margin", "0.1"])
    assert result.exit_code == 0 and "exported 0 judgment(s), 0 override(s)" in result.output
    result = runner.invoke(app, ["audit", "sign", *base, "--reviewer", "ann", "--margin", "0.1"])
    assert result.exit_code == 2 and "nothing to sign" in result.output
    corpus = load_corpus(config, "audit")
    review = Review(tmp_path / "out", "audit", corpus.config_hash, margin=0.1)
    for clip in review.sample()[:4]:
        review.judge(clip["clip_id"], clip["caption_sha256"], "correct", "ann")
    result = runner.invoke(app, ["audit", "sign", *base, "--reviewer", "ann", "--margin", "0.1"])
    assert result.exit_code == 0 and "signed by ann" in result.output and corpus.config_hash[:12] in result.output
    audit = (tmp_path / "out" / "review" / "audit.json").read_text()
    assert '"reviewer": "ann"' in audit and corpus.config_hash in audit
    result = runner.invoke(app, ["report", *base])
    assert result.exit_code == 0
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "Signed by ann" in page and "auditor estimate of caption precision" in page
