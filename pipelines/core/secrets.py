"""Credentials from the launcher's environment to the workers (docs/runners.md, "Secrets").

A config names environment variables, never values (a Freesound source's `token_env`, an http
fetch's `auth_env`). On one machine the workers share the launcher's environment; on a cluster
(Dataflow, Flink, Spark, a worker pool) they do not, and a source read there without its key became
one rejected row while the run exited 0. So the launcher reads every variable the config names
once, before the pipeline is built (a missing one is a ConfigError naming it: exit 2), and the
values travel to the workers inside the DoFns that need them, in a `WorkerSecrets`. Each worker
puts them into its own process environment in `setup()` (where the variable is unset there: a
worker's own environment wins), so the readers and fetchers read them as before.

A `WorkerSecrets` shows only the variable names (repr, str, Beam's display data); the values are
in the pickled job that the runner ships to its workers, as any DoFn's state is: whoever can read
the job's staging location (Dataflow's `--staging_location`, a Flink job's jar) can read them. Where
that is too wide, give the workers the variables themselves (the container's environment, a
secret manager) and launch with `--no_forward_secrets` (pipelines.core.beam.T2aOptions).
"""

from __future__ import annotations

import os
from collections.abc import Iterable


class WorkerSecrets:
    """Environment variables (name → value) to set on every worker; shows its names only."""

    def __init__(self, values: dict[str, str] | None = None):
        self._values = dict(sorted((values or {}).items()))

    @classmethod
    def from_environment(cls, names: Iterable[str], forward: bool = True) -> WorkerSecrets:
        """The launcher's values of `names`; a ConfigError naming every variable that is not set.
        `forward=False`: check nothing, send nothing (the workers have the variables themselves)."""
        from pipelines.core.config import ConfigError

        if not forward:
            return cls()
        names = sorted(set(names))
        missing = [name for name in names if not os.environ.get(name, "").strip()]
        if missing:
            raise ConfigError(
                f"environment variable{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"{'are' if len(missing) > 1 else 'is'} not set; the config's sources read "
                f"{'them' if len(missing) > 1 else 'it'} (a Freesound source's token_env, fetch.auth_env): "
                "set it where you launch the job, and t2a passes it to the workers (docs/runners.md)"
            )
        return cls({name: os.environ[name].strip() for name in names})

    @property
    def names(self) -> list[str]:
        return list(self._values)

    def install(self) -> None:
        """Set the variables in this (worker) process, where they are not set already."""
        for name, value in self._values.items():
            if not os.environ.get(name, "").strip():
                os.environ[name] = value

    def __repr__(self) -> str:
        return f"WorkerSecrets({', '.join(self._values) or 'none'}; values not shown)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkerSecrets) and other._values == self._values

    __hash__ = None  # type: ignore[assignment]
