"""Human review in the shards: the overrides file `t2a review` exports, and how a sample takes it.

    <output>/review/overrides.json   {"schema": "t2a.overrides/1", "overrides": {clip_id: OVERRIDE}}
    OVERRIDE = {judgment: wrong | partly, caption_sha256, caption (typed; optional), reviewer, time}

A typed caption replaces the selected one, with expert and caption origin `human-review`. A caption
judged wrong without a typed one is rejected: the clip's caption is selected again from its other
candidates under the corpus's selection policy (pipelines.annotate.prompts.select: threshold,
above_label_text, then the fallback), and a clip left with nothing is dropped with the reason. A
rejection applies only to the caption that was judged (its sha256): a clip annotated again since has a
new caption, which nobody has judged. Either way the sample's JSON records the review (`review`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipelines.annotate.prompts.config import SelectionConfig
from pipelines.annotate.prompts.select import Candidate, select_caption
from pipelines.core.io import write_json_atomic
from pipelines.core.storage import location

SCHEMA = "t2a.overrides/1"
REVIEW_DIR = "review"
OVERRIDES = "overrides.json"
HUMAN_REVIEW = "human-review"  # the expert and caption origin of a typed caption


def caption_hash(text: str | None) -> str:
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()


def overrides_path(output: str | Path) -> Path:
    return location(output) / REVIEW_DIR / OVERRIDES


def write_overrides(output: str | Path, overrides: dict[str, dict[str, Any]]) -> Path:
    path = overrides_path(output)
    write_json_atomic(path, {"schema": SCHEMA, "overrides": dict(sorted(overrides.items()))})
    return path


def read_overrides(output: str | Path) -> dict[str, dict[str, Any]]:
    """clip id → its override; {} when nobody has exported a review. A malformed file is an error."""
    path = overrides_path(output)
    if not path.is_file():
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path}: not JSON ({error}); export it again with `t2a review export`") from None
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a {SCHEMA} file; export it again with `t2a review export`")
    return payload["overrides"]


def apply_override(
    row: dict[str, Any], override: dict[str, Any] | None, selection: SelectionConfig
) -> tuple[dict[str, Any], dict[str, Any] | None] | str:
    """(the annotation row with its caption replaced or reselected, the review record), or the reason
    the clip is dropped. Without an applicable override the row comes back as it is, with None."""
    if not override:
        return row, None
    caption = (override.get("caption") or "").strip()
    judged = override.get("caption_sha256")
    record = {
        "judgment": override["judgment"],
        "reviewer": override.get("reviewer") or "",
        "time": override.get("time") or "",
        "judged_caption_sha256": judged,
        "original_caption": row.get("selected_caption"),
    }
    if caption:
        replaced = {**row, "selected_caption": caption, "selected_expert": HUMAN_REVIEW, "selected_score": None}
        return replaced, {**record, "action": "replaced"}
    if override["judgment"] != "wrong" or judged != caption_hash(row.get("selected_caption")):
        return row, None  # partly right and nothing typed, or a caption nobody judged
    rejected = row.get("selected_caption")
    candidates = [
        Candidate(c["text"], c["expert"], c.get("clap_score"))
        for c in row.get("candidates") or []
        if c.get("text") != rejected
    ]
    fallbacks = {"label_text": row.get("label_text"), "mbtg": row.get("mbtg_text")}
    fallbacks = {k: (v if v != rejected else None) for k, v in fallbacks.items()}
    chosen = select_caption(candidates, row.get("label_score"), selection, fallbacks)
    if chosen.text is None:
        return f"review: caption judged wrong by {record['reviewer'] or 'a reviewer'}; {chosen.reason}"
    reselected = {**row, "selected_caption": chosen.text, "selected_expert": chosen.expert}
    reselected["selected_score"] = chosen.score
    return reselected, {**record, "action": "reselected"}
