"""What every `t2a` command prints to its user: messages on stderr, never wrapped at the terminal
width (a path or command a user copies stays on one line), and errors as one line with exit 2."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """A problem the user can fix: one red line, exit status 2, no traceback. The machine's own
    faults (a full disk) stop the same way with exit status 1."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
