"""The report's figures: SVG plots of report.json's aggregates and PNG spectrograms of sampled clips.

Every plot is drawn from numbers already in report.json (histogram edges/counts, acceptance
curve, win rates), never from the annotations, so the page shows exactly what the JSON carries.
Figures are `matplotlib.figure.Figure` objects on an Agg canvas: no pyplot state, no GUI backend.
The same report gives the same bytes: a fixed `svg.hashsalt` (element ids), no Date metadata, and
text drawn as paths (`svg.fonttype="path"`) so the page needs no font from anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.review.media import SPECTROGRAM_PROFILE, spectrogram_png

__all__ = ["SPECTROGRAM_PROFILE", "acceptance_curve", "histograms", "spectrogram_png", "win_rate_bars"]

_STYLE = {
    "svg.hashsalt": "t2a-report",
    "svg.fonttype": "path",
    "font.size": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_SVG_METADATA = {"Date": None, "Creator": None}


def _figure(width: float, height: float, left: float = 0.11, bottom: float = 0.17) -> Figure:
    # Fixed margins, not a layout engine: constrained layout doubles the time of every plot.
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left, right=0.97, bottom=bottom, top=0.9)
    return fig


def _save_svg(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(_STYLE):
        fig.savefig(path, format="svg", metadata=_SVG_METADATA)
    return path


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="0.4")


def _stairs(ax, stats: Mapping[str, Any], label: str) -> bool:
    """One STATS histogram as a step line of fractions (so experts with different n compare)."""
    hist = stats.get("histogram") or {}
    counts = np.asarray(hist.get("counts") or [], dtype=float)
    if not stats.get("n") or counts.sum() == 0:
        return False
    ax.stairs(counts / counts.sum(), np.asarray(hist["edges"], dtype=float), label=f"{label} (n={stats['n']})")
    return True


def histograms(series: Mapping[str, Mapping[str, Any]], path: Path, title: str, xlabel: str) -> Path:
    """Overlaid histograms, one per named STATS, as fractions of each series' n."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure(5.0, 2.6)
        ax = fig.add_subplot()
        drawn = [_stairs(ax, stats, name) for name, stats in series.items()]
        if any(drawn):
            ax.legend(loc="upper left", frameon=False)
        else:
            _no_data(ax, "values")
        ax.set(title=title, xlabel=xlabel, ylabel="fraction")
    return _save_svg(fig, path)


def acceptance_curve(acceptance: Mapping[str, Any], path: Path) -> Path:
    """Fraction of annotated clips whose best candidate clears each threshold; the configured one marked."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure(5.0, 2.6)
        ax = fig.add_subplot()
        rates = [np.nan if r is None else r for r in acceptance.get("rate") or []]
        if rates:
            ax.plot(acceptance["thresholds"], rates, marker=".", markersize=3)
        else:
            _no_data(ax, "annotated clips")
        configured = acceptance.get("configured")
        if configured is not None:
            ax.axvline(configured, color="tab:red", linestyle="--", label=f"configured {configured:.3f}")
            ax.legend(loc="lower left", frameon=False)
        ax.set(title="acceptance rate vs CLAP threshold", xlabel="threshold", ylabel="accepted", ylim=(0, 1.02))
    return _save_svg(fig, path)


def win_rate_bars(win_rate: Mapping[str, float], path: Path) -> Path:
    """Share of selected captions won by each expert."""
    with matplotlib.rc_context(_STYLE):
        experts = sorted(win_rate)
        fig = _figure(5.0, 1.0 + 0.3 * max(len(experts), 1), left=0.2, bottom=0.6 / (1.0 + 0.3 * max(len(experts), 1)))
        ax = fig.add_subplot()
        if experts:
            ax.barh(experts, [win_rate[e] for e in experts])
            ax.invert_yaxis()
        else:
            _no_data(ax, "selected captions")
        ax.set(title="win rate by expert", xlabel="share of selected captions", xlim=(0, 1))
    return _save_svg(fig, path)
