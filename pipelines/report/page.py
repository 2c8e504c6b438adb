"""The report page: report.json's sections as HTML, escaped, with relative links only.

One function per section (ids in SECTIONS). A section first compares the scopes (the corpus,
then each source) in one table, row per scope, then has one block per scope with its plots and
examples; every row and block carries `data-scope`, which the source selector filters on. The
page is whole without script: the script only adds the selector and the `?selfcheck` asset check.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.annotate.store import STATUSES as ANNOTATION_STATUSES
from pipelines.core.records import STATUSES as AVAILABILITY_STATUSES
from pipelines.report.text import ARTEFACT_KINDS

# The order of the page: the answer first (verdict, the worst captions), then the distributions,
# availability with its reasons, the listening table, the auditors' review, provenance last.
SECTIONS = (
    "verdict",
    "worst",
    "scores",
    "distillation",
    "quality",
    "licences",
    "labels",
    "text",
    "artefacts",
    "composition",
    "availability",
    "listening",
    "audit",
    "provenance",
)
WORST_FLAGS = ("lowest_score", "lowest_margin")
STATS_COLUMNS = ("n", "mean", "std", "min", "p10", "p50", "p90", "max")
# Make-An-Audio App. A, Table 5: the columns, in the paper's order.
TABLE5 = (
    ("label_text", "original label text"),
    ("captioning", "captioning"),
    ("retrieval", "retrieval"),
    ("selected", "both + CLAP selection"),
)


class Raw(str):
    """Markup this module built itself: table cells take it as is instead of escaping it."""


@dataclass(frozen=True)
class Scope:
    name: str  # shown on the page
    slug: str  # folder of its plots and value of data-scope: [a-z0-9-] whatever the source is called
    data: Mapping[str, Any]  # a SECTION of the schema


# ---------------------------------------------------------------- HTML building blocks


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _cell(value: Any) -> str:
    return value if isinstance(value, Raw) else _e(_fmt(value))


def _table(head: Iterable[str], rows: Iterable[tuple[str | None, list[Any]]], caption: str = "") -> Raw:
    """rows: (data-scope slug or None, cells). Cells are escaped unless they are `Raw`."""
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(
        f"<tr{_scope_attr(slug)}>" + "".join(f"<td>{_cell(c)}</td>" for c in cells) + "</tr>\n" for slug, cells in rows
    )
    return Raw(f"<table>{cap}<thead><tr>{th}</tr></thead>\n<tbody>\n{body}</tbody></table>\n")


def _scope_attr(slug: str | None) -> str:
    return f' data-scope="{_e(slug)}"' if slug else ""


def _per_scope(scopes: list[Scope], body) -> str:
    """One block per scope (hidden by the selector when another scope is picked)."""
    return "".join(f'<div class="scope"{_scope_attr(s.slug)}><h3>{_e(s.name)}</h3>\n{body(s)}</div>\n' for s in scopes)


def _ordered_keys(mappings: Iterable[Mapping[str, Any]], known: Iterable[str]) -> list[str]:
    """The schema's keys in its order, then any others found, sorted (a newer data.py may add some)."""
    known = list(known)
    extra = sorted({k for m in mappings for k in m} - set(known))
    return known + extra


def _tree(value: Any) -> str:
    """Provenance of any shape as nested key/value tables; numbers and booleans as JSON writes them."""
    if isinstance(value, Mapping) and value:
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_tree(v)}</td></tr>" for k, v in sorted(value.items()))
        return f'<table class="kv">{rows}</table>'
    if isinstance(value, list) and value and any(isinstance(v, (Mapping, list)) for v in value):
        return "<ol>" + "".join(f"<li>{_tree(v)}</li>" for v in value) + "</ol>"
    if isinstance(value, list) and value:
        return ", ".join(_tree(v) for v in value)
    if value in ({}, [], None):
        return "—"
    return _e(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


def _img(src: str, alt: str, cls: str = "") -> Raw:
    return Raw(f'<img src="{_e(src)}" alt="{_e(alt)}"{f" class={cls!r}" if cls else ""} loading="lazy">')


def _stats_row(name: str, stats: Mapping[str, Any]) -> tuple[None, list[Any]]:
    return None, [name, *(stats.get(c) for c in STATS_COLUMNS)]


# ---------------------------------------------------------------- sections (ids fixed: SECTIONS)


def _provenance(report: Mapping[str, Any], scopes: list[Scope], _figures) -> str:
    made = {"schema": report["schema"], "corpus": report["corpus"], "generated_from": report["generated_from"]}
    return (
        "<details><summary>models, checksums, settings and tools that built this corpus</summary>"
        + _tree(made)
        + _tree(report["provenance"])
        + "</details>"
    )


def _verdict(report: Mapping[str, Any], scopes: list[Scope], _figures) -> str:
    cards = "".join(
        f'<div class="card" data-key="{_e(item["key"])}"><div class="title">{_e(item["title"])}</div>'
        f'<div class="value">{_e(_fmt(item["value"]))}</div><p>{_e(item["sentence"])}</p></div>'
        for item in report.get("verdict") or []
    )
    return f'<div class="verdict">{cards}</div>'


def _quality(report: Mapping[str, Any], scopes: list[Scope], figures) -> str:
    q = report.get("quality")
    if not q:
        return "<p>No quality measures: run <code>t2a qc</code>, then <code>t2a report</code> again.</p>"
    flags = q["flags"]
    rows = []
    for name, st in q["measures"].items():
        flag = flags.get(name)
        limit = (
            "—"
            if not flag
            else f"{flag['direction']} {flag['limit'] if flag['limit'] is not None else flag['advisory_limit']:g}"
        )
        policy = "policy" if flag and flag["limit"] is not None else ("advisory" if flag else "")
        rows.append(
            (
                None,
                [
                    name,
                    *(st.get(c) for c in ("n", "mean", "p10", "p50", "p90")),
                    f"{limit} {policy}",
                    flag["count"] if flag else "—",
                ],
            )
        )
    head = ["measure", "n", "mean", "p10", "p50", "p90", "flag when", "flagged"]
    plots_html = "".join(
        _img(path, f"distribution of {name}", "plot")
        for name, path in sorted(figures.get("all", {}).items())
        if name.startswith("quality_")
    )
    dup, leak = q["near_duplicates"], q["leaked"]
    others = _table(
        ["check", "clips", "dropped by the policy", "examples"],
        [
            (
                None,
                [
                    "near-duplicate (not the group's keeper)",
                    dup["count"],
                    dup["dropped_by_policy"],
                    ", ".join(dup["examples"]),
                ],
            ),
            (None, ["evaluation leakage", leak["count"], leak["dropped_by_policy"], ", ".join(leak["examples"])]),
        ],
        "near-duplicates and leakage (CLAP audio embeddings)",
    )
    dropped = _table(
        ["clip", "reason"],
        [(None, [d["clip_id"], d["reason"]]) for d in q["dropped"]["examples"]],
        f"{q['dropped']['count']} clip(s) the quality policy kept out of the shards",
    )
    return (
        _table(head, rows, f"{q['clips']} clips measured ({q['failed']} failed)")
        + f'<div class="plots">{plots_html}</div>'
        + others
        + dropped
    )


def _licences(report: Mapping[str, Any], scopes: list[Scope], _figures) -> str:
    lic = report.get("licences") or {}
    mix = [(None, [k, v]) for k, v in (lic.get("mix") or {}).items()]
    removed = [(None, [k, v]) for k, v in (lic.get("removed_by_policy") or {}).items()]
    unread = [(None, [u["text"], u["clips"]]) for u in lic.get("unread_strings") or []]
    stages = [(None, [k, v]) for k, v in (lic.get("left_out_by_stage") or {}).items()]
    return (
        _table(["licence", "selected clips"], mix, "licence mix of the clips with a selected caption")
        + _table(["licence", "clips"], removed, "removed from the shards by the `licences:` policy")
        + _table(["stage", "clips"], stages, "everything the shard stage kept out, by stage (shards/left_out.json)")
        + (
            _table(["licence as written", "clips"], unread, "licence strings not read (LicenseRef-Other)")
            if unread
            else ""
        )
    )


def _audit(report: Mapping[str, Any], scopes: list[Scope], _figures) -> str:
    audit = report.get("review")
    if not audit:
        return "<p>No review yet: <code>t2a review</code> serves a stratified sample to judge.</p>"
    keys = ("population", "sample_size", "judged", "correct", "partly", "wrong", "precision", "ci_low", "ci_high")
    rows = [(None, [name, *(s.get(k) for k in keys)]) for name, s in audit["strata"].items()]
    o = audit["overall"]
    rows.append(
        (
            None,
            [
                "corpus (weighted)",
                sum(s["population"] for s in audit["strata"].values()),
                audit["sample_size"],
                o["judged"],
                "",
                "",
                "",
                o["precision"],
                o["ci_low"],
                o["ci_high"],
            ],
        )
    )
    signed = [
        (
            None,
            [
                s["reviewer"],
                s["time"],
                s["config_hash"][:12],
                s["overall"].get("precision"),
                s["overall"].get("ci_low"),
                s["overall"].get("ci_high"),
            ],
        )
        for s in audit["signatures"]
    ]
    return _table(
        ["stratum (source/origin)", *keys], rows, "caption precision by stratum, Wilson 95% intervals"
    ) + _table(
        ["signed by", "when", "corpus config", "precision", "ci low", "ci high"], signed, "signatures (t2a audit sign)"
    )


def _worst(report: Mapping[str, Any], scopes: list[Scope], clips: list[Mapping[str, Any]]) -> str:
    slugs = {s.name: s.slug for s in scopes[1:]}
    chosen = [
        (row, found) for row, found in zip(report["listening"], clips) if set(row.get("flags") or []) & set(WORST_FLAGS)
    ]
    chosen.sort(key=lambda item: (item[0].get("selected_score") is None, item[0].get("selected_score") or 0.0))
    rows = [(slugs.get(row["source"]), _listening_cells(row, found)) for row, found in chosen]
    head = ["clip", "listen", "frames", "labels", "candidates (selected highlighted)"]
    return _table(head, rows, "the lowest selected CLAP scores and the lowest margins over chance")


def _availability(report, scopes: list[Scope], _figures) -> str:
    avail = [s.data["availability"] for s in scopes]
    statuses = _ordered_keys((a["by_status"] for a in avail), AVAILABILITY_STATUSES)
    rows = [(s.slug, [s.name, a["rows"], *(a["by_status"].get(k, 0) for k in statuses)]) for s, a in zip(scopes, avail)]
    ann = [s.data["annotations"] for s in scopes]
    outcomes = _ordered_keys((a["by_status"] for a in ann), ANNOTATION_STATUSES)
    ann_rows = [
        (s.slug, [s.name, a["clips"], *(a["by_status"].get(k, 0) for k in outcomes), a["fallback"]])
        for s, a in zip(scopes, ann)
    ]

    reasons = [
        (s.slug, stage, r)
        for s in scopes[1:]
        for stage, key in (("ingest", "availability"), ("annotation", "annotations"))
        for r in s.data[key]["top_reasons"]
    ]
    body = "".join(
        f'<tr data-source="{_e(slug)}"><td>{_e(name)}</td><td>{_e(stage)}</td><td>{_e(r["status"])}</td>'
        f"<td>{_e(r['reason'])}</td><td>{_e(r['rows'])}</td></tr>\n"
        for slug, stage, r in reasons
        for name in [next(s.name for s in scopes if s.slug == slug)]
    )
    options = '<option value="*">every source</option>' + "".join(
        f'<option value="{_e(s.slug)}">{_e(s.name)}</option>' for s in scopes[1:]
    )
    table = (
        f"<details><summary>why rows did not become clips or captions: {len(reasons)} reasons</summary>"
        f'<label hidden class="filter">source <select data-filter="reasons">{options}</select></label>'
        '<table id="reasons"><thead><tr><th>source</th><th>stage</th><th>status</th><th>reason</th><th>rows</th></tr></thead>'
        f"<tbody>\n{body}</tbody></table></details>\n"
    )
    return (
        _table(["scope", "manifest rows", *statuses], rows, "manifest rows by ingest status")
        + _table(["scope", "clips", *outcomes, "fallback"], ann_rows, "annotated clips by outcome")
        + table
    )


def _scores(report, scopes: list[Scope], figures) -> str:
    t5 = [(s.slug, [s.name, *(s.data["scores"]["table5"].get(k) for k, _ in TABLE5)]) for s in scopes]
    experts = _ordered_keys((s.data["scores"]["win_rate"] for s in scopes), ())
    wins = [(s.slug, [s.name, *(s.data["scores"]["win_rate"].get(e) for e in experts)]) for s in scopes]
    return (
        _table(["scope", *(label for _, label in TABLE5)], t5, "mean CLAP score (Make-An-Audio App. A, Table 5)")
        + _table(["scope", *experts], wins, "win rate: share of selected captions by expert")
        + _per_scope(scopes, lambda s: _scope_scores(s, figures[s.slug]))
    )


def _scope_scores(scope: Scope, figures: Mapping[str, str]) -> str:
    scores = scope.data["scores"]
    rows = [_stats_row(f"candidates: {e}", st) for e, st in sorted(scores["by_expert"].items())]
    names = ("selected", "human", "chance", "margin_over_label", "margin_over_chance")
    rows += [_stats_row(name.replace("_", " "), scores[name]) for name in names]
    acc = scores["acceptance"]
    curve = [(None, [t, r]) for t, r in zip(acc["thresholds"], acc["rate"])]
    plots_html = "".join(
        _img(figures[k], f"{scope.name}: {k}", "plot")
        for k in ("scores", "calibration", "acceptance", "win_rate", "margins")
    )
    return (
        f'<div class="plots">{plots_html}</div>'
        + _table(["distribution", *STATS_COLUMNS], rows, "CLAP score statistics")
        + f"<p>configured threshold: <b>{_e(_fmt(acc['configured']))}</b></p>"
        + f"<details><summary>acceptance rate by threshold</summary>{_table(['threshold', 'rate'], curve)}</details>"
    )


# The retrieval figures' groups: every clip, then by how the row's retrieval expert ranked its bank.
DISTILLATION_GROUPS = (
    ("all", "all"),
    ("judge", "ranked by the judge (CLAP audio–text, query: audio)"),
    ("not_judge", "not by the judge (text–text over labels, query: labels)"),
    ("unknown", "ranking not recorded"),
)


def _distillation(report, scopes: list[Scope], _figures) -> str:
    """Make-An-Audio §3.2.1's two choices, from the candidates' stored scores (report.distillation)."""
    found = [(s, s.data.get("distillation")) for s in scopes]
    if not any(d for _, d in found):
        return "<p>not in this report.json: rebuild it with <code>t2a report</code></p>"
    rows = []
    for s, d in found:
        retrieval = (d or {}).get("retrieval") or {}
        for key, name in DISTILLATION_GROUPS:
            group = retrieval if key == "all" else (retrieval.get("by_judge") or {}).get(key)
            if not group or (key != "all" and not group["clips"]):
                continue
            t5 = group["table5"]
            wins, mean = group["wins"], group["mean"]
            rows.append(
                (
                    s.slug,
                    [
                        s.name,
                        name,
                        group["clips"],
                        wins["captioning"],
                        wins["retrieval"],
                        group["win_rate"]["retrieval"],
                    ]
                    + [mean["captioning"], mean["retrieval"], *(t5[k] for k in ("label_text", "captioning"))]
                    + [t5["retrieval"], t5["both_select"]],
                )
            )
    head = [
        "scope",
        "retrieval ranking",
        "clips with both",
        "captioning wins",
        "retrieval wins",
        "retrieval win rate",
        "mean captioning candidate",
        "mean retrieved candidate",
        "T5: original label text",
        "T5: captioning",
        "T5: retrieval",
        "T5: both + CLAP selection",
    ]
    caption = (
        "captioning vs retrieval on clips with both kinds of candidates: wins of the CLAP judgement and mean CLAP "
        "scores; T5 columns as Make-An-Audio App. A, Table 5 (best candidate of each expert)"
    )
    human_rows = []
    for s, d in found:
        kept = (d or {}).get("keep_human")
        if kept:
            replaced_by = ", ".join(f"{k} {n}" for k, n in kept["replaced_by"].items()) or "—"
            human_rows.append(
                (
                    s.slug,
                    [s.name, kept["clips"], kept["human"]["mean"], kept["best_other"]["mean"], kept["margin"]["mean"]]
                    + [kept["replaced"], kept["replaced_rate"], replaced_by],
                )
            )
    human_head = [
        "scope",
        "clips with human captions",
        "mean CLAP: best human",
        "mean CLAP: best other candidate",
        "mean margin (human − other)",
        "replaced with keep_human: false",
        "rate",
        "replaced by",
    ]
    setting = (report.get("provenance", {}).get("annotate", {}).get("selection") or {}).get("keep_human")
    return (
        _table(head, rows, caption)
        + _table(human_head, human_rows, "human captions vs the experts (selection rerun on the stored scores)")
        + f"<p>selection.keep_human in this run: <b>{_e(_fmt(setting))}</b></p>"
    )


def _labels(report, scopes: list[Scope], _figures) -> str:
    keys = ("clips_with_labels", "mentions_label", "mention_rate", "names_unlabelled_class", "unlabelled_class_rate")
    rows = [(s.slug, [s.name, *(s.data["labels"][k] for k in keys)]) for s in scopes]

    def examples(s: Scope) -> str:
        ex = [
            (None, [x["clip_id"], x["caption"], ", ".join(x["labels"]), ", ".join(x["named"])])
            for x in s.data["labels"]["examples"]
        ]
        return _table(["clip", "caption", "labels", "names unlabelled"], ex, "captions naming classes the clip lacks")

    head = ["scope", "clips with labels", "mention a label", "mention rate", "name an unlabelled class", "rate"]
    return _table(head, rows, "does the selected caption mention the clip's labels?") + _per_scope(scopes, examples)


def _text(report, scopes: list[Scope], figures) -> str:
    keys = ("captions", "vocabulary", "distinct_1", "distinct_2", "exact_duplicate_rate", "near_duplicate_rate")
    rows = [(s.slug, [s.name, *(s.data["text"][k] for k in keys)]) for s in scopes]

    def detail(s: Scope) -> str:
        text = s.data["text"]
        repeated = [(None, [r["text"], r["count"]]) for r in text["most_repeated"]]
        return (
            _img(figures[s.slug]["length"], f"{s.name}: caption length", "plot")
            + _table(["", *STATS_COLUMNS], [_stats_row("length (words)", text["length_words"])])
            + _table(["caption", "count"], repeated, "most repeated captions")
        )

    head = ["scope", "captions", "vocabulary", "distinct-1", "distinct-2", "exact duplicates", "near duplicates"]
    return _table(head, rows, "selected captions") + _per_scope(scopes, detail)


def _artefacts(report, scopes: list[Scope], _figures) -> str:
    kinds = _ordered_keys((s.data["artefacts"] for s in scopes), ARTEFACT_KINDS)
    empty = {"count": 0, "rate": None, "examples": []}

    def count(s: Scope, kind: str) -> str:
        a = s.data["artefacts"].get(kind, empty)
        return f"{a['count']} ({_fmt(a['rate'])})"

    def examples(s: Scope) -> str:
        found = s.data["artefacts"]
        ex = [(None, [k, x["clip_id"], x["caption"]]) for k in kinds for x in found.get(k, empty)["examples"]]
        return _table(["kind", "clip", "caption"], ex, "examples")

    rows = [(s.slug, [s.name, *(count(s, k) for k in kinds)]) for s in scopes]
    return _table(["scope", *kinds], rows, "captions with artefacts: count (rate)") + _per_scope(scopes, examples)


def _composition(report, scopes: list[Scope], _figures) -> str:
    keys = ("single_event", "multi_event", "no_labels")
    rows = [(s.slug, [s.name, *(s.data["composition"].get(k) for k in keys)]) for s in scopes]
    caption = (
        "clips by number of labelled events; the single-event clips are dynamic reprogramming's event "
        "database (its settings: provenance, augmentation)"
    )
    return _table(["scope", "single-event", "multi-event", "no labels"], rows, caption)


def _listening(report, scopes: list[Scope], clips: list[Mapping[str, Any]]) -> str:
    slugs = {s.name: s.slug for s in scopes[1:]}
    rows = [(slugs.get(row["source"]), _listening_cells(row, found)) for row, found in zip(report["listening"], clips)]
    head = ["clip", "listen", "frames", "labels", "candidates (selected highlighted)"]
    return _table(head, rows, f"{len(rows)} clips, stratified by source and score quantile")


def _listening_cells(row: Mapping[str, Any], found: Mapping[str, Any]) -> list[Raw]:
    flags = "".join(f'<span class="flag">{_e(f)}</span>' for f in row.get("flags") or [])
    clip = f"<code>{_e(row['clip_id'])}</code><br>{_e(row['source'])}<br>{_e(row['stratum'])}<br>{flags}"
    media = "".join(f'<p class="problem">{_e(p)}</p>' for p in found["problems"])
    if found["audio"]:
        media = f'<audio controls preload="none" src="{_e(found["audio"])}"></audio>' + media
    if found["spec"]:
        media += _img(found["spec"], f"log-mel spectrogram of {row['clip_id']}", "spec")
    frames = "".join(_img(f, f"frame of {row['clip_id']}", "frame") for f in found["frames"]) or "—"
    labels = (
        f"{_e(', '.join(row.get('labels') or []) or '—')}<br><small>label text: {_e(_fmt(row.get('label_text')))}"
        f"<br>events: {_e(_fmt(row.get('event_count')))}</small>"
    )
    items = "".join(_candidate(c, row) for c in row.get("candidates") or [])
    chosen = (
        f'<p class="chosen">{_e(_fmt(row.get("selected_caption")))} '
        f"<small>({_e(_fmt(row.get('selected_expert')))}, {_e(_fmt(row.get('selected_score')))})</small></p>"
    )
    return [Raw(clip), Raw(media), Raw(frames), Raw(labels), Raw(f"{chosen}<ol>{items}</ol>")]


def _candidate(c: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    selected = c.get("text") == row.get("selected_caption") and c.get("expert") == row.get("selected_expert")
    score = f"{_e(c.get('expert'))} · {_e(_fmt(c.get('clap_score')))}"
    return f"<li{' class=selected' if selected else ''}><small>{score}</small> {_e(c.get('text'))}</li>"


_SECTION_TITLES = {
    "verdict": ("Verdict", _verdict),
    "scores": ("CLAP scores", _scores),
    "distillation": ("Expert distillation", _distillation),
    "quality": ("Audio quality", _quality),
    "licences": ("Licences", _licences),
    "labels": ("Labels", _labels),
    "text": ("Text", _text),
    "artefacts": ("Artefacts", _artefacts),
    "composition": ("Composition", _composition),
    "availability": ("Availability", _availability),
    "audit": ("Auditors' review", _audit),
    "provenance": ("Provenance", _provenance),
}
_CLIP_SECTIONS = {"worst": ("Worst captions", _worst), "listening": ("Listening table", None)}

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5rem 3rem;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:.4rem 0;z-index:1}
nav a{margin-right:.8rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:13px}
caption{text-align:left;font-weight:600;padding:.2rem 0}
th,td{border:1px solid #ddd;padding:.2rem .45rem;vertical-align:top;text-align:left}
thead th{background:#f3f3f3}
table.kv{margin:0}table.kv th{background:#f8f8f8;font-weight:600;white-space:nowrap}
.plots img,img.plot{max-width:520px;width:100%;margin:0 .5rem .5rem 0}
.scope{border-left:3px solid #e6e6e6;padding-left:.8rem;margin:1rem 0}
img.spec{display:block;width:360px;margin-top:.3rem}img.frame{width:112px;margin:0 .2rem .2rem 0}
li.selected{background:#fff3b0;font-weight:600}.chosen{margin:0 0 .3rem}
.flag{display:inline-block;background:#c62828;color:#fff;border-radius:3px;padding:0 .3rem;
margin:.1rem .2rem 0 0;font-size:12px}
.problem{color:#c62828;margin:.2rem 0}
.verdict{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:.6rem}
.card{border:1px solid #ddd;border-radius:4px;padding:.5rem .7rem;background:#fafafa}
.card .title{font-size:12px;text-transform:uppercase;color:#555}.card .value{font-size:24px;font-weight:700}
.card p{margin:.2rem 0 0}details>summary{cursor:pointer;font-weight:600}
"""

# The selector shows one scope (or all); `?selfcheck` loads every image and audio file and writes
# the verdict into <body data-assets-ok>, which the headless-browser test reads from the DOM.
_JS = """
(function () {
  var form = document.getElementById("scope-form"), select = document.getElementById("scope");
  form.hidden = false;
  document.querySelectorAll("select[data-filter]").forEach(function (filter) {
    filter.parentNode.hidden = false;
    filter.addEventListener("change", function () {
      var rows = document.querySelectorAll("#" + filter.getAttribute("data-filter") + " tr[data-source]");
      rows.forEach(function (row) {
        row.hidden = filter.value !== "*" && row.getAttribute("data-source") !== filter.value;
      });
    });
  });
  select.addEventListener("change", function () {
    document.querySelectorAll("[data-scope]").forEach(function (el) {
      el.hidden = select.value !== "*" && el.getAttribute("data-scope") !== select.value;
    });
  });
  function loads(el) {
    return new Promise(function (resolve) {
      var src = el.getAttribute("src"), probe = el.tagName === "IMG" ? new Image() : new Audio();
      var ok = el.tagName === "IMG" ? function () { return probe.naturalWidth > 0; }
                                    : function () { return probe.duration > 0; };
      probe.addEventListener(el.tagName === "IMG" ? "load" : "loadedmetadata", function () {
        resolve(ok() ? null : src);
      });
      probe.addEventListener("error", function () { resolve(src); });
      if (el.tagName !== "IMG") probe.preload = "metadata";
      probe.src = el.src;
    });
  }
  if (/[?&]selfcheck\\b/.test(location.search)) {
    var media = Array.prototype.slice.call(document.querySelectorAll("img, audio"));
    Promise.all(media.map(loads)).then(function (results) {
      var failed = results.filter(function (r, i) { return r !== null && results.indexOf(r) === i; });
      document.body.setAttribute("data-assets-checked", String(media.length));
      document.body.setAttribute("data-assets-failed", failed.join(" "));
      document.body.setAttribute("data-assets-ok", String(media.length > 0 && failed.length === 0));
    });
  }
})();
"""


def _csp() -> str:
    """Only the page's own script (by hash) may run; media and images only from the folder."""
    digest = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
    return (
        f"default-src 'none'; img-src 'self' file:; media-src 'self' file:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def build_page(
    report: Mapping[str, Any],
    scopes: list[Scope],
    figures: Mapping[str, Mapping[str, str]],
    clips: list[Mapping[str, Any]],
) -> str:
    """index.html. figures: {scope slug: {plot name: relative path}}; clips: one per listening row."""
    title = f"Caption-quality report: {report['corpus']}"
    body = ""
    for sid in SECTIONS:
        if sid in _CLIP_SECTIONS:
            name, make = _CLIP_SECTIONS[sid]
            content = (make or _listening)(report, scopes, clips)
        else:
            name, make = _SECTION_TITLES[sid]
            content = make(report, scopes, figures)
        body += f'<section id="{sid}"><h2>{_e(name)}</h2>\n{content}</section>\n'
    nav = "".join(f'<a href="#{sid}">{_e(sid)}</a>' for sid in SECTIONS)
    options = '<option value="*">every scope</option>' + "".join(
        f'<option value="{_e(s.slug)}">{_e(s.name)}</option>' for s in scopes
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_csp())}">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{_e(title)}</title>\n'
        f"<style>{_CSS}</style></head>\n<body>\n<header><h1>{_e(title)}</h1>\n"
        f'<p>Every figure on this page is in <a href="report.json">report.json</a>.</p>\n<nav>{nav}</nav>\n'
        f'<form id="scope-form" hidden><label>show <select id="scope">{options}</select></label></form>\n'
        f"</header>\n<main>\n{body}</main>\n<script>{_JS}</script>\n</body></html>\n"
    )
