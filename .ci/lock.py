"""Keep requirements.lock and pyproject.toml in step.

`make lock` runs pip-compile and then `python .ci/lock.py stamp`, which writes the digest of
pyproject.toml's dependency tables into the lock's header. `python .ci/lock.py check` (run by
`make install`, so by `make test`, `make demo` and CI) recomputes that digest and stops with one
clear message when pyproject.toml's dependencies changed after the lock was made. Standard library
only: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PREFIX = "# pyproject.toml dependencies sha256: "


def dependency_digest(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """sha256 of what pip-compile reads from pyproject.toml (comments and formatting excluded)."""
    if tomllib is None:
        sys.exit("checking the lock needs Python >= 3.11 (tomllib); the lock itself is made for CPython 3.11")
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    project = data.get("project", {})
    keyed = {
        "build-system": data.get("build-system", {}).get("requires", []),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "requires-python": project.get("requires-python", ""),
    }
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path = LOCK) -> str | None:
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(PREFIX):
            return line[len(PREFIX) :].strip()
    return None


def stamp(lock: Path = LOCK) -> None:
    lines = [line for line in lock.read_text(encoding="utf-8").splitlines() if not line.startswith(PREFIX)]
    lines.insert(0, PREFIX + dependency_digest())
    lock.write_text("\n".join(lines) + "\n", encoding="utf-8")


def check(lock: Path = LOCK) -> int:
    if not lock.exists():
        print(f"{lock.name} is missing: run `make lock`", file=sys.stderr)
        return 1
    if recorded_digest(lock) != dependency_digest():
        print(
            f"{lock.name} is out of date: pyproject.toml's dependencies changed since it was made. "
            "Run `make lock` and commit both files.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command == "stamp":
        stamp()
        sys.exit(0)
    if command == "check":
        sys.exit(check())
    sys.exit(f"usage: {sys.argv[0]} [check|stamp]")
