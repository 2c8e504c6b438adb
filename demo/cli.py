"""The demo's commands, added to `t2a` through the `t2a.commands` entry points (pyproject.toml):
`t2a demo-corpus`, `t2a demo-models`, `t2a serve`. Nothing in pipelines/ or training/ imports demo/."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import typer

from pipelines.core.console import console
from pipelines.core.console import fail as _fail

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def demo_corpus(
    directory: Path = typer.Argument(..., help="Where to write the corpus."),
    seed: int = typer.Option(0, help="Everything in the corpus derives from this seed."),
    base_url: str = typer.Option("http://127.0.0.1:8765", help="Where `t2a serve` will serve it."),
    overwrite: bool = typer.Option(False, help="Replace a corpus already in DIRECTORY."),
) -> None:
    """Generate the embedded demo corpus: synthesized events in every manifest format."""
    from demo.corpus import build_demo_corpus

    summary = build_demo_corpus(directory, seed=seed, base_url=base_url, overwrite=overwrite)
    rows = ", ".join(f"{name} {item['rows']}" for name, item in summary["formats"].items())
    console.print(
        f"demo corpus in {directory}: {summary['files']} files, {summary['bytes'] / 1e6:.1f} MB; manifest rows: {rows}; "
        f"{len(summary['broken'])} broken and {len(summary['missing'])} missing media, "
        f"{len(summary['malformed'])} malformed rows (see {directory / 'README.md'})",
        highlight=False,
    )


def demo_models(
    directory: Path = typer.Argument(..., help="Where to write the models."),
    seed: int = typer.Option(0, help="The models' random initialisation derives from this seed."),
) -> None:
    """Build the demo's tiny, randomly initialised models (CLAP, CLIP, captioner) from real configs.

    They make the demo pipeline run offline end to end; their captions and scores mean nothing.
    Point `annotate:` in datasets.yaml at real checkpoints for a real corpus (docs/annotate.md).
    """
    from demo.captioner import build_captioner
    from demo.models import build_demo_models

    built = build_demo_models(directory, seed=seed)
    built["captioner"] = build_captioner(directory / "captioner", seed=seed)
    console.print(f"demo models in {directory}: {', '.join(sorted(built))}", highlight=False)


def serve(
    ctx: typer.Context,
    directory: Path = typer.Argument(..., help="The folder to serve (the demo corpus)."),
    port: int = typer.Option(8765, help="Port on 127.0.0.1."),
) -> None:
    """Serve a folder on loopback (with range requests and a Freesound API emulator).

    With a command after `--`, serve while it runs and exit with its status:
    `t2a serve data/demo-corpus -- dvc repro`.
    """
    from demo.freesound_api import DEMO_API_KEY, reloading_route
    from demo.server import LoopbackServer

    directory.mkdir(parents=True, exist_ok=True)
    routes = {"/apiv2/": reloading_route(directory / "freesound" / "sounds.json")}
    try:
        server = LoopbackServer(directory, port=port, routes=routes)
    except OSError as error:
        _fail(f"cannot serve on 127.0.0.1:{port}: {error.strerror or error}; pick another --port")
    with server:
        console.print(f"serving {directory} at {server.url}", highlight=False)
        if ctx.args:
            env = {**os.environ, "FREESOUND_API_KEY": os.environ.get("FREESOUND_API_KEY", DEMO_API_KEY)}
            raise typer.Exit(subprocess.call(ctx.args, env=env))
        try:
            threading.Event().wait()  # until Ctrl-C
        except KeyboardInterrupt:
            console.print("stopped")


serve.context_settings = PASSTHROUGH  # what follows `--` is the command to run while serving
