"""What the report answers first: the verdict block, and the quality, licence and review figures it draws on.

quality   each `t2a qc` measure's distribution, the clips flagged (the corpus's policy limit, or an
          advisory one where the policy sets none) and those the shard stage dropped, with reasons
licences  the licence mix of the selected clips, what the `licences:` policy removed, strings not read
review    the auditors' estimate of caption precision (pipelines/review), per stratum, and signatures
verdict   one number and one sentence per question an auditor asks
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.qc.config import QualityConfig
from pipelines.qc.measures import MEASURES
from pipelines.qc.store import read_quality
from pipelines.qc.store import read_summary as read_quality_summary
from pipelines.report.stats import Stats, ratio
from pipelines.review.session import review_summary
from pipelines.shard.policy import read_left_out

EDGES = {
    "bandwidth_hz": np.linspace(0, 24000, 41),
    "clipping": np.linspace(0, 0.02, 41),
    "loudness_lufs": np.linspace(-70, 0, 41),
    "silence": np.linspace(0, 1, 41),
    "dc_offset": np.linspace(-0.05, 0.05, 41),
    "peak_dbfs": np.linspace(-60, 0, 41),
    "speech": np.linspace(0, 1, 41),
}
# Where no policy limit is set, a clip is still flagged (not dropped) past these.
ADVISORY = {
    "bandwidth_hz": ("<", 8000.0, "min_bandwidth_hz"),
    "clipping": (">", 0.001, "max_clipping"),
    "loudness_lufs": ("<", -50.0, "min_loudness_lufs"),
    "silence": (">", 0.5, "max_silence"),
    "dc_offset": (">", 0.01, "max_dc_offset"),
    "speech": (">", 0.5, "max_speech"),
}
EXAMPLES = 10


def quality(output: Path, config: QualityConfig) -> dict[str, Any] | None:
    rows = read_quality(output)
    if rows is None:
        return None
    stats = {name: Stats(EDGES[name]) for name in MEASURES}
    flagged: dict[str, list[str]] = {name: [] for name in ADVISORY}
    for clip_id, row in sorted(rows.items()):
        if row["status"] != "ok":
            continue
        for name in MEASURES:
            stats[name].add(row.get(name))
        for name, (direction, advisory, key) in ADVISORY.items():
            limit = getattr(config, key) if getattr(config, key) is not None else advisory
            value = row.get(name)
            value = abs(value) if (name == "dc_offset" and value is not None) else value
            if value is not None and ((value < limit) if direction == "<" else (value > limit)):
                flagged[name].append(clip_id)
    duplicates = sorted(c for c, r in rows.items() if r.get("duplicate_of") and r["duplicate_of"] != c)
    leaked = sorted(c for c, r in rows.items() if r.get("leaked_of"))
    left = read_left_out(output / "shards") or {"clips": []}
    dropped = [c for c in left["clips"] if c["stage"] == "quality"]
    return {
        "clips": len(rows),
        "failed": sum(r["status"] != "ok" for r in rows.values()),
        # a clip past two limits, or past one and a duplicate, counts once
        "flagged_clips": len(set().union(*flagged.values(), duplicates, leaked)),
        "measures": {name: stats[name].summary() for name in MEASURES},
        "flags": {
            name: {
                "limit": getattr(config, ADVISORY[name][2]),
                "advisory_limit": ADVISORY[name][1],
                "direction": ADVISORY[name][0],
                "count": len(ids),
                "examples": ids[:EXAMPLES],
            }
            for name, ids in flagged.items()
        },
        "near_duplicates": {
            "count": len(duplicates),
            "dropped_by_policy": config.drop_near_duplicates,
            "examples": duplicates[:EXAMPLES],
        },
        "leaked": {"count": len(leaked), "dropped_by_policy": config.drop_leaked, "examples": leaked[:EXAMPLES]},
        "dropped": {
            "count": len(dropped),
            "examples": [{"clip_id": c["clip_id"], "reason": c["reason"]} for c in dropped[:50]],
        },
        "summary": read_quality_summary(output),
    }


def licences(mix: Counter, raw_other: Counter, output: Path) -> dict[str, Any]:
    left = read_left_out(output / "shards") or {"clips": []}
    removed = Counter(c.get("licence") or "?" for c in left["clips"] if c["stage"] == "licence")
    return {
        "mix": dict(sorted(mix.items(), key=lambda item: (-item[1], item[0]))),
        "removed_by_policy": dict(sorted(removed.items(), key=lambda item: (-item[1], item[0]))),
        "unread_strings": [
            {"text": t, "clips": n} for t, n in sorted(raw_other.items(), key=lambda i: (-i[1], i[0]))[:20]
        ],
        "left_out_by_stage": left.get("by_stage", {}),
    }


def review(output: Path) -> dict[str, Any] | None:
    summary = review_summary(output)
    if summary is None:
        return None
    return {
        **summary,
        "signatures": [
            {k: s[k] for k in ("reviewer", "time", "corpus", "config_hash")} | {"overall": s["estimate"]["overall"]}
            for s in summary["signatures"]
        ],
    }


def verdict(report: dict[str, Any], threshold: float) -> list[dict[str, Any]]:
    """[{key, title, value, sentence}] in the order an auditor reads them."""
    totals = report["totals"]
    annotations = totals["annotations"]
    ok, annotated = (
        annotations["by_status"].get("ok", 0),
        annotations["clips"] - annotations["by_status"].get("failed", 0),
    )
    origins = totals["scores"].get("origins", {})
    above = ok - annotations["fallback"]
    margin = totals["scores"]["margin_over_chance"]
    positive = totals["scores"].get("margin_positive")
    items = [
        _item(
            "clips",
            "clips",
            annotations["clips"],
            f"{annotations['clips']} clips annotated; {ok} have a caption to train on, "
            f"{annotations['by_status'].get('dropped', 0)} were dropped and {annotations['by_status'].get('failed', 0)} failed.",
        ),
        _item(
            "origins",
            "captions by origin",
            " / ".join(f"{origins.get(k, 0)}" for k in ("human", "label", "expert")),
            f"Of the {ok} selected captions, {origins.get('human', 0)} were written by people for the clip, "
            f"{origins.get('label', 0)} are label text and {origins.get('expert', 0)} come from an expert "
            "(captioner, retrieval, source text): human / label / expert.",
        ),
        _item(
            "above_threshold",
            "selected above threshold",
            _pct(ratio(above, annotated)),
            f"{above} of {annotated} annotated clips got a caption whose CLAP score clears the threshold "
            f"{threshold:g}; the rest fell back or were dropped.",
        ),
        _item(
            "margin",
            "selected − chance CLAP margin",
            _num(margin.get("mean")),
            f"On average the selected caption scores {_num(margin.get('mean'))} above another clip's caption "
            f"on the same audio; it beats that chance baseline on {_pct(positive)} of clips.",
        ),
    ]
    audit = report.get("review")
    overall = (audit or {}).get("overall") or {}
    if overall.get("judged"):
        signed = audit["signatures"][-1] if audit["signatures"] else None
        sentence = (
            f"Auditors judged {overall['judged']} sampled captions; weighted back to the corpus, "
            f"{_pct(overall['precision'])} are correct (95% Wilson interval {_pct(overall['ci_low'])}–"
            f"{_pct(overall['ci_high'])}; {_pct(overall['lenient'])} counting 'partly')."
        )
        sentence += (
            f" Signed by {signed['reviewer']} on {signed['time']}." if signed else " Not signed yet (`t2a audit sign`)."
        )
        items.append(_item("auditor", "auditor estimate of caption precision", _pct(overall["precision"]), sentence))
    else:
        items.append(
            _item(
                "auditor",
                "auditor estimate of caption precision",
                "—",
                "No auditor has judged a sample yet: `t2a review` serves one, `t2a audit sign` signs the estimate.",
            )
        )
    lic = report.get("licences") or {}
    mix = lic.get("mix") or {}
    removed = sum((lic.get("removed_by_policy") or {}).values())
    # report.json sorts keys, so the mix may arrive alphabetical: the largest licences come first here.
    ranked = sorted(mix.items(), key=lambda item: (-item[1], item[0]))
    top = ", ".join(f"{k} {v}" for k, v in ranked[:4]) or "none"
    if len(ranked) > 4:
        top += f" and {sum(v for _, v in ranked[4:])} more under {len(ranked) - 4} other licence(s)"
    items.append(
        _item(
            "licences",
            "licence mix",
            f"{len(mix)} licence(s)",
            f"Selected clips by licence: {top}. The licence policy removed {removed} clip(s) from the shards.",
        )
    )
    q = report.get("quality")
    if q:
        flagged = {k: v["count"] for k, v in q["flags"].items() if v["count"]}
        text = ", ".join(f"{k} {n}" for k, n in flagged.items()) or "none"
        items.append(
            _item(
                "quality",
                "quality flags",
                q["flagged_clips"],
                f"{q['flagged_clips']} of {q['clips']} clips flagged. Past a limit: {text}; "
                f"{q['near_duplicates']['count']} near-duplicates, {q['leaked']['count']} "
                f"leaked from an evaluation set; the quality policy dropped {q['dropped']['count']}.",
            )
        )
    else:
        items.append(_item("quality", "quality flags", "—", "No quality measures yet: run `t2a qc`."))
    return items


def _item(key: str, title: str, value: Any, sentence: str) -> dict[str, Any]:
    return {"key": key, "title": title, "value": value, "sentence": sentence}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"
