"""`{id}` templates for URLs and mirror paths, filled without letting an id escape its folder."""

from __future__ import annotations

import functools
import os
import string
from pathlib import Path
from urllib.parse import quote

from pipelines.core.records import ClipFailure, check_file_name


def check_template(template: str) -> str:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:  # an unbalanced brace
        raise ValueError(f"template {template!r}: {error}") from None
    if fields != {"id"}:
        raise ValueError(f"template {template!r} must contain {{id}} and no other placeholder")
    return template


def fill_url(template: str, source_id: str) -> str:
    return template.format(id=quote(source_id, safe=""))


@functools.lru_cache(maxsize=64)
def _mirror_root(template: str) -> Path:
    """The template's fixed folder, symlinks resolved (once per template, not per clip)."""
    root = Path(template.split("{", 1)[0]).resolve()
    return root if template.split("{", 1)[0].endswith("/") else root.parent


def fill_path(template: str, source_id: str) -> Path:
    """The mirror path for `source_id`; it must stay inside the template's fixed folder."""
    try:
        check_file_name(source_id)
    except ValueError as error:
        raise ClipFailure(str(error), retryable=False) from None
    filled = Path(template.format(id=source_id))
    if not os.path.lexists(filled):
        return filled  # nothing there to read (one stat: a mirror missing most ids stays cheap)
    root = _mirror_root(template)
    path = filled.resolve()
    if not path.is_relative_to(root):
        raise ClipFailure(f"id {source_id!r} resolves outside the mirror folder {root}", retryable=False)
    return path
