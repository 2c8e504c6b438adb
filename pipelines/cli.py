"""The `t2a` command."""

from __future__ import annotations

import enum
import json
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from pipelines.core.config import ConfigError
from pipelines.core.console import console
from pipelines.core.console import fail as _fail
from pipelines.core.io import StorageFull, storage_problem
from pipelines.core.redact import RedactingFilter
from pipelines.core.registry import UnknownName
from pipelines.datasets import DEFAULT_CORPUS, Corpus

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Build text-audio corpora and train text-to-audio models."
)
PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("apache_beam", "urllib3", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_bigquery_notice)
        handler.addFilter(_not_storage_traceback)
        handler.addFilter(RedactingFilter())  # no credential in a URL reaches a log line


def _not_bigquery_notice(record: logging.LogRecord) -> bool:
    """Beam warns on import that BigQuery's client libraries are missing; ingest does not use them."""
    return not str(record.msg).startswith("apitools not found")


def _not_storage_traceback(record: logging.LogRecord) -> bool:
    """Beam logs a failed bundle with its traceback before the job re-raises; a full disk is then
    said once, as the command's one-line error (pipelines.core.io.StorageFull), not as a traceback."""
    if not record.name.startswith("apache_beam"):
        return True
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text += str(record.exc_info[1])
    return StorageFull.MARK not in text and not storage_problem(text)


class Device(str, enum.Enum):
    cpu = "cpu"
    cuda = "cuda"


def _load(config: Path, corpus: str) -> Corpus:
    """The corpus, parsed and validated once per command; a bad config is one message, exit 2."""
    from pipelines.datasets import load_corpus

    try:
        return load_corpus(config, corpus)
    except (ConfigError, UnknownName) as error:
        _fail(str(error))


@app.command(context_settings=PASSTHROUGH)
def ingest(
    ctx: typer.Context,
    config: Path = typer.Option(Path("datasets.yaml"), help="The datasets.yaml to read."),
    corpus: str = typer.Option(DEFAULT_CORPUS, help="Which corpus of the config."),
    retry_failed: bool = typer.Option(False, help="Retry clips whose last failure was retryable."),
) -> None:
    """Manifests → segment-only fetch → normalized clip cache, with a status table.

    Beam options go after `--`, e.g. `-- --runner=PortableRunner --job_endpoint=embed
    --environment_type=LOOPBACK`; the default runner is the FnApiRunner.
    """
    from pipelines.ingest import job

    loaded = _load(config, corpus)
    try:
        summary = job.run(loaded, retry_failed=retry_failed, beam_args=ctx.args)
    except (ConfigError, UnknownName) as error:
        _fail(str(error))
    except StorageFull as error:  # the machine's fault, not the corpus's: exit 1
        _fail(str(error), code=1)
    _print_summary(summary)


@app.command(context_settings=PASSTHROUGH)
def annotate(
    ctx: typer.Context,
    config: Path = typer.Option(Path("datasets.yaml"), help="The datasets.yaml to read."),
    corpus: str = typer.Option(DEFAULT_CORPUS, help="Which corpus of the config."),
    device: Device = typer.Option(None, case_sensitive=False, help="Overrides `annotate.device` of the config."),
) -> None:
    """Clip cache → CLAP/CLIP embeddings, caption candidates and CLAP-selected captions (docs/annotate.md).

    Beam options go after `--`, as for `t2a ingest`.
    """
    from pipelines.annotate import job

    loaded = _load(config, corpus)
    try:
        summary = job.run(loaded, device=device.value if device else None, beam_args=ctx.args)
    except (ConfigError, UnknownName) as error:
        _fail(str(error))
    _print_annotations(summary)


@app.command(context_settings=PASSTHROUGH)
def shard(
    ctx: typer.Context,
    config: Path = typer.Option(Path("datasets.yaml"), help="The datasets.yaml to read."),
    corpus: str = typer.Option(DEFAULT_CORPUS, help="Which corpus of the config."),
    audio_only: bool = typer.Option(
        False,
        help="Shards without annotations (human captions and label text only) "
        "in <output>/shards-audio: what a CLAP trains on before annotate runs.",
    ),
) -> None:
    """Clip cache → deterministic WebDataset shards with stats and index.json (docs/shards.md).

    Beam options go after `--`, as for `t2a ingest`.
    """
    from pipelines.shard import job

    loaded = _load(config, corpus)
    try:
        index = job.run(loaded, audio_only=audio_only, beam_args=ctx.args)
    except (ConfigError, UnknownName) as error:
        _fail(str(error))
    except StorageFull as error:
        _fail(str(error), code=1)
    _print_index(index)


@app.command(context_settings=PASSTHROUGH)
def qc(
    ctx: typer.Context,
    config: Path = typer.Option(Path("datasets.yaml"), help="The datasets.yaml to read."),
    corpus: str = typer.Option(DEFAULT_CORPUS, help="Which corpus of the config."),
) -> None:
    """Audio quality measures, near-duplicate groups and evaluation leakage → <output>/quality (docs/qc.md).

    Beam options go after `--`, as for `t2a ingest`. The shard stage applies the corpus's `quality:` policy.
    """
    from pipelines.qc import job

    loaded = _load(config, corpus)
    try:
        summary = job.run(loaded, beam_args=ctx.args)
    except ConfigError as error:
        _fail(str(error))
    console.print(
        f"qc: {summary['clips']} clips measured ({summary['failed']} failed); "
        f"{summary['near_duplicate_clips']} in {summary['near_duplicate_groups']} near-duplicate group(s); "
        f"{summary['leaked_clips']} leaked  → {loaded.output / 'quality'}",
        highlight=False,
    )


@app.command()
def report(
    config: Path = typer.Option(Path("datasets.yaml"), help="The datasets.yaml to read."),
    corpus: str = typer.Option(DEFAULT_CORPUS, help="Which corpus of the config."),
    listening: int = typer.Option(2, min=1, help="Clips per stratum (source × score quantile) in the listening table."),
) -> None:
    """Caption-quality report: <output>/report/index.html (opens from disk, offline) and report.json."""
    from pipelines.report.job import build_report

    loaded = _load(config, corpus)
    try:
        index = build_report(loaded, listening_per_stratum=listening)
    except ConfigError as error:
        _fail(str(error))
    console.print(f"report: {index}  (figures: {index.parent / 'report.json'})", highlight=False)


def _local_only(corpus: Corpus, command: str) -> None:
    try:
        corpus.local_output(command)
    except ConfigError as error:
        _fail(str(error))


def _review(corpus: Corpus, margin: float, seed: int):
    from pipelines.review.session import Review, ReviewError

    try:
        return Review(corpus.output, corpus.name, corpus.config_hash, margin=margin, seed=seed)
    except (FileNotFoundError, ReviewError, ValueError) as error:
        _fail(str(error))


@app.command()
def review(
    config: Path = typer.Option(Path("datasets.yaml"), help="The datasets.yaml to read."),
    corpus: str = typer.Option(DEFAULT_CORPUS, help="Which corpus of the config."),
    port: int = typer.Option(8766, min=0, max=65535, help="Port on 127.0.0.1 (0: any free one)."),
    margin: float = typer.Option(
        0.05, min=0.005, max=0.5, help="Target margin of error (95%) of the precision estimate."
    ),
    seed: int = typer.Option(0, help="Seed of the stratified sample."),
    reviewer: str = typer.Option("", help="The reviewer's name, filled in on the page."),
    export: bool = typer.Option(False, "--export", help="Write judgments.parquet and overrides.json, and exit."),
) -> None:
    """Serve the report and a review page on 127.0.0.1: judge a stratified sample of captions (docs/review.md).

    Judgments go into <output>/review/review.sqlite; `--export` (or the page's button) writes the
    overrides the shard stage applies.
    """
    from pipelines.report.job import REPORT_DIR, build_report
    from pipelines.review.server import ReviewServer

    loaded = _load(config, corpus)
    _local_only(loaded, "t2a review")
    session = _review(loaded, margin, seed)
    if export:
        done = session.export()
        console.print(f"exported {done['judgments']} judgment(s), {done['overrides']} override(s): {done['files']}")
        return
    report_dir = loaded.output / REPORT_DIR
    if not (report_dir / "index.html").is_file():
        try:
            build_report(loaded)
        except ConfigError as error:
            _fail(str(error))
    try:
        server = ReviewServer(session, report_dir, port=port, reviewer=reviewer).start()
    except OSError as error:
        _fail(f"cannot listen on 127.0.0.1:{port}: {error}")
    console.print(f"review: {server.url}/review  ({len(session.design)} clips; Ctrl-C stops)", highlight=False)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.close()


audit_app = typer.Typer(no_args_is_help=True, help="Sign the auditor's estimate of caption precision.")
app.add_typer(audit_app, name="audit")


@audit_app.command("sign")
def audit_sign(
    config: Path = typer.Option(Path("datasets.yaml"), help="The datasets.yaml to read."),
    corpus: str = typer.Option(DEFAULT_CORPUS, help="Which corpus of the config."),
    reviewer: str = typer.Option(..., help="Who signs."),
    margin: float = typer.Option(0.05, min=0.005, max=0.5, help="The margin the review was drawn with."),
    seed: int = typer.Option(0, help="The seed the review was drawn with."),
) -> None:
    """Record who vouches for the current precision estimate, when, for which corpus config (the report shows it)."""
    from pipelines.review.db import database_path
    from pipelines.review.session import ReviewError

    loaded = _load(config, corpus)
    _local_only(loaded, "t2a audit sign")
    if not database_path(loaded.output).is_file():
        _fail(f"no review of corpus {corpus!r} yet: run `t2a review` and judge some clips first")
    session = _review(loaded, margin, seed)
    try:
        signed = session.sign(reviewer)
    except ReviewError as error:
        _fail(str(error))
    overall = signed["estimate"]["overall"]
    console.print(
        f"signed by {signed['reviewer']} at {signed['time']}: precision {overall['precision']:.3f} "
        f"(95% CI {overall['ci_low']:.3f}–{overall['ci_high']:.3f}, {overall['judged']} judged), "
        f"config {signed['config_hash'][:12]}",
        highlight=False,
    )


@app.command()
def inspect(shard_path: Path = typer.Argument(..., help="A shard (.tar) to summarize and validate.")) -> None:
    """Summarize one shard and check it against the shard contract; exit 1 if it has problems."""
    from pipelines.shard.reader import inspect_shard

    if not shard_path.is_file():
        _fail(f"no such shard: {shard_path}")
    report = inspect_shard(shard_path)
    table = Table(title=f"{shard_path.name}")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in report.items():
        if key != "problems":
            table.add_row(key, json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value))
    _console().print(table)
    for problem in report["problems"]:
        console.print(f"[bold red]problem:[/] {problem}", highlight=False)
    raise typer.Exit(1 if report["problems"] else 0)


@app.command()
def status(
    config: Path = typer.Option(Path("datasets.yaml"), help="The datasets.yaml to read."),
    corpus: str = typer.Option(DEFAULT_CORPUS, help="Which corpus of the config."),
) -> None:
    """Show the status summary of a corpus's latest ingest run."""
    from pipelines.ingest.job import read_summary

    loaded = _load(config, corpus)
    summary = read_summary(loaded.output)
    if not summary:
        _fail(f"no ingest run yet under {loaded.output / 'status'}")
    _print_summary(summary)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


def _print_index(index: dict[str, Any]) -> None:
    table = Table(title=f"shards — schema {index.get('schema')}, config {str(index.get('config_hash'))[:12]}")
    for column in ("split", "shards", "samples", "bytes"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, entry in index.get("splits", {}).items():
        table.add_row(split, str(entry["shards"]), str(entry["nsamples"]), str(entry["filesize"]))
    totals = index.get("totals", {})
    table.add_row("[bold]all", *(f"[bold]{totals.get(k)}" for k in ("shards", "nsamples", "filesize")))
    _console().print(table)
    if totals.get("failures"):
        console.print(
            f"{totals['failures']} clip(s) left out (corrupt or missing cache entries): see the shards' stats.json",
            highlight=False,
        )


def _print_annotations(summary: dict[str, Any]) -> None:
    output = _console()
    table = Table(title=f"annotations — {summary['clips']} clips")
    for column in ("status", "clips"):
        table.add_column(column, justify="right" if column == "clips" else "left")
    for status, count in summary["statuses"].items():
        table.add_row(status, str(count))
    for expert, count in summary["selected_experts"].items():
        table.add_row(f"selected from {expert}", str(count))
    output.print(table)
    for reason, count in list(summary["reasons"].items())[:8]:
        console.print(f"{count:5d} × {reason}", highlight=False)


def _print_summary(summary: dict[str, Any]) -> None:
    output = _console()
    table = Table(title=f"ingest {summary.get('corpus')} — run {summary.get('run_id')}")
    statuses = [s for s, n in summary["totals"].items() if n] or list(summary["totals"])
    table.add_column("source")
    for name in statuses:
        table.add_column(name, justify="right")
    for source, counts in sorted(summary["by_source"].items()):
        table.add_row(source, *(str(counts[s]) for s in statuses))
    table.add_row("[bold]all", *(f"[bold]{summary['totals'][s]}" for s in statuses))
    output.print(table)
    for warning in summary.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    reasons = sorted(summary["reasons"], key=lambda r: -r["rows"])[:12]
    if reasons:
        detail = Table(title="why rows did not become clips (top reasons)")
        for column in ("source", "status", "rows", "reason"):
            detail.add_column(column, overflow="fold")
        for item in reasons:
            detail.add_row(item["source"], item["status"], str(item["rows"]), item["reason"])
        output.print(detail)


def _add_plugins() -> None:
    """Commands other installed packages declare under the `t2a.commands` entry-point group.

    The trainer's commands (`t2a train`, `t2a encode-latents`, `t2a sample`, …) and the demo's
    (`t2a demo-corpus`, `t2a demo-models`, `t2a serve`) come in this way: `pipelines` never imports
    `training` or `demo` (docs/ARCHITECTURE.md; import-linter checks it), and the plugin modules
    import torch only when their command runs.
    """
    for entry in sorted(entry_points(group="t2a.commands"), key=lambda e: e.name):
        command = entry.load()
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=entry.name)
        else:  # a command may carry typer/click context settings (the demo's `serve` passes `-- cmd` on)
            app.command(entry.name, context_settings=getattr(command, "context_settings", None))(command)


_add_plugins()

if __name__ == "__main__":
    sys.exit(app())
