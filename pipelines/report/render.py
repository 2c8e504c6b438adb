"""report.json (schema t2a.report/1) → a self-contained folder that opens from disk, offline.

    out_dir/index.html             one page: provenance, availability, scores, labels, text,
                                   artefacts, composition, listening (ids of its sections)
    out_dir/report.json            the dict, deterministic JSON (sorted keys, indent 1)
    out_dir/assets/plots/<scope>/  SVG plots of each scope (the corpus, then each source)
    out_dir/assets/audio|spec|frames/   the listening table's clips: FLAC copies, mel PNGs, JPEGs

Every figure comes from the dict; nothing is recomputed from annotations, so the page and the
JSON agree and a 100k-clip corpus renders as fast as a small one (only the sampled listening rows
have files). All text is HTML-escaped (captions are model output and manifest text: untrusted),
every link is relative, and a Content-Security-Policy lets only the page's own script run. The
page works without script; the script adds a source selector and, on `index.html?selfcheck`, a
check that every image and audio file loads (the browser test reads its verdict from <body>).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.core.features import MelExtractor, get_profile
from pipelines.core.records import check_clip_id
from pipelines.report import plots
from pipelines.report.page import SECTIONS, Scope, build_page

__all__ = ["SCHEMA", "SECTIONS", "render", "write_json"]

SCHEMA = "t2a.report/1"
ASSETS = "assets"


def render(report: Mapping[str, Any], out_dir: Path, *, base_dir: Path | None = None) -> Path:
    """Write the report folder; returns the path of index.html.

    Clip audio and frame paths in the listening rows that are relative resolve against
    `base_dir` (default: the working directory).
    """
    if report.get("schema") != SCHEMA:
        found = report.get("schema")
        raise ValueError(f"report schema is {found!r}, this renderer reads {SCHEMA!r}: regenerate report.json")
    for row in report["listening"]:
        check_clip_id(row["clip_id"])  # names files under assets/: refuse a path before writing anything
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "report.json").exists():  # a previous report's clips must not linger in assets/
        shutil.rmtree(out_dir / ASSETS, ignore_errors=True)
    write_json(report, out_dir / "report.json")
    scopes = _scopes(report)
    figures = {scope.slug: _plot_scope(scope, out_dir) for scope in scopes}
    figures["all"].update(_plot_quality(report.get("quality"), out_dir))
    extractor = MelExtractor(get_profile(plots.SPECTROGRAM_PROFILE))
    clips = [_clip_assets(row, out_dir, Path(base_dir or "."), extractor) for row in report["listening"]]
    index = out_dir / "index.html"
    index.write_text(build_page(report, scopes, figures, clips), encoding="utf-8")
    return index


def write_json(report: Mapping[str, Any], path: Path) -> None:
    """Sorted keys, indent 1, no NaN (the schema has null for missing values): diffable by DVC."""
    try:
        text = json.dumps(report, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)
    except ValueError as err:
        raise ValueError(f"report has a NaN or infinite number ({err}); the schema wants null there") from None
    path.write_text(text + "\n", encoding="utf-8")


def _scopes(report: Mapping[str, Any]) -> list[Scope]:
    scopes = [Scope("all sources", "all", report["totals"])]
    for i, name in enumerate(sorted(report["sources"]), 1):
        safe = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        scopes.append(Scope(name, f"src{i:02d}-{safe}"[:60], report["sources"][name]))
    return scopes


def _plot_scope(scope: Scope, out_dir: Path) -> dict[str, str]:
    """Draws the scope's plots; returns {plot name: path relative to out_dir}."""
    folder = out_dir / ASSETS / "plots" / scope.slug
    scores = scope.data["scores"]
    made = {
        "scores": plots.histograms(
            scores["by_expert"], folder / "scores.svg", "candidate CLAP scores by expert", "CLAP score"
        ),
        "calibration": plots.histograms(
            {k: scores[k] for k in ("selected", "human", "chance")},
            folder / "calibration.svg",
            "selected vs human vs chance",
            "CLAP score",
        ),
        "acceptance": plots.acceptance_curve(scores["acceptance"], folder / "acceptance.svg"),
        "win_rate": plots.win_rate_bars(scores["win_rate"], folder / "win_rate.svg"),
        "margins": plots.histograms(
            {"over label text": scores["margin_over_label"], "over chance": scores["margin_over_chance"]},
            folder / "margins.svg",
            "selected caption's margin",
            "score difference",
        ),
        "length": plots.histograms(
            {"captions": scope.data["text"]["length_words"]}, folder / "length.svg", "caption length", "words"
        ),
    }
    return {name: path.relative_to(out_dir).as_posix() for name, path in made.items()}


def _plot_quality(quality: Mapping[str, Any] | None, out_dir: Path) -> dict[str, str]:
    """One histogram per quality measure (corpus-wide), when `t2a qc` has run."""
    if not quality:
        return {}
    folder = out_dir / ASSETS / "plots" / "quality"
    made = {
        f"quality_{name}": plots.histograms({name: stats}, folder / f"{name}.svg", name.replace("_", " "), name)
        for name, stats in quality["measures"].items()
    }
    return {name: path.relative_to(out_dir).as_posix() for name, path in made.items()}


def _clip_assets(row: Mapping[str, Any], out_dir: Path, base: Path, extractor: MelExtractor) -> dict[str, Any]:
    """Copies a listening row's audio and frames into assets/ and draws its spectrogram.

    A clip whose files are gone (cache pruned since annotation) gets a note, not a failed report.
    """
    clip_id = row["clip_id"]
    found: dict[str, Any] = {"audio": None, "spec": None, "frames": [], "problems": []}
    audio = base / row["audio"] if row.get("audio") else None
    if audio is not None and audio.is_file():
        found["audio"] = _copy(audio, out_dir, f"audio/{clip_id}.flac")
        try:
            plots.spectrogram_png(audio, out_dir / ASSETS / "spec" / f"{clip_id}.png", extractor)
            found["spec"] = f"{ASSETS}/spec/{clip_id}.png"
        except (RuntimeError, ValueError) as err:  # soundfile's errors are RuntimeErrors
            found["problems"].append(f"no spectrogram: {err}")
    else:
        found["problems"].append(f"audio not found: {row.get('audio')}")
    for i, frame in enumerate(row.get("frames") or []):
        if (base / frame).is_file():
            found["frames"].append(_copy(base / frame, out_dir, f"frames/{clip_id}_{i:02d}.jpg"))
        else:
            found["problems"].append(f"frame not found: {frame}")
    return found


def _copy(source: Path, out_dir: Path, relative: str) -> str:
    target = out_dir / ASSETS / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return f"{ASSETS}/{relative}"
