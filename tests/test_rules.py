"""The rules the code checks itself (docs/ARCHITECTURE.md): import-linter contracts, ruff lint and format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_dependency_rules_hold():
    done = _run(str(BIN / "lint-imports"), "--no-cache")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_ruff_finds_nothing_and_the_code_is_formatted():
    lint = _run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert lint.returncode == 0, lint.stdout[-3000:]
    form = _run(str(BIN / "ruff"), "format", "--check", "--no-cache", ".")
    assert form.returncode == 0, form.stdout[-3000:]
