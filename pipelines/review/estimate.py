"""Caption precision from the judgments: per stratum and for the corpus, with Wilson intervals.

Per stratum h: p_h = correct_h / n_h with the Wilson score interval. The corpus: the stratified
estimate p = Σ W_h p_h, W_h = N_h / N over the strata that have judgments (their share of the corpus
is reported as `coverage`), with a Wilson interval at Kish's effective sample size
n_eff = (Σ N_h)² / Σ (N_h² / n_h) — what the unequal weights leave of the n judgments. `precision`
counts a caption right only when judged correct; `lenient` also counts "partly".
"""

from __future__ import annotations

import math
from typing import Any

Z95 = 1.959963984540054


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float | None, float | None]:
    if n <= 0:
        return None, None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate(
    judgments: dict[str, dict[str, Any]], design: list[dict[str, Any]], strata: dict[str, dict[str, int]]
) -> dict[str, Any]:
    """judgments: clip id → latest judgment; design: the sampled clips (clip_id, stratum); strata: sizes."""
    by_stratum: dict[str, list[str]] = {name: [] for name in strata}
    for clip in design:
        judged = judgments.get(clip["clip_id"])
        if judged:
            by_stratum.setdefault(clip["stratum"], []).append(judged["judgment"])
    rows = {}
    for name, marks in sorted(by_stratum.items()):
        n = len(marks)
        correct, partly = marks.count("correct"), marks.count("partly")
        low, high = wilson(correct, n)
        rows[name] = {
            "population": strata.get(name, {}).get("population", 0),
            "sample_size": strata.get(name, {}).get("sample_size", 0),
            "judged": n,
            "correct": correct,
            "partly": partly,
            "wrong": marks.count("wrong"),
            "precision": correct / n if n else None,
            "lenient": (correct + partly) / n if n else None,
            "ci_low": low,
            "ci_high": high,
        }
    return {"strata": rows, "overall": _overall(rows)}


def _overall(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    judged = {name: r for name, r in rows.items() if r["judged"]}
    population = sum(r["population"] for r in rows.values())
    covered = sum(r["population"] for r in judged.values())
    n = sum(r["judged"] for r in judged.values())
    if not judged or covered == 0:
        return {
            "judged": n,
            "precision": None,
            "lenient": None,
            "ci_low": None,
            "ci_high": None,
            "n_effective": 0.0,
            "coverage": 0.0,
        }
    weights = {name: r["population"] / covered for name, r in judged.items()}
    precision = sum(weights[k] * r["precision"] for k, r in judged.items())
    lenient = sum(weights[k] * r["lenient"] for k, r in judged.items())
    n_eff = covered**2 / sum(r["population"] ** 2 / r["judged"] for r in judged.values())
    low, high = wilson(precision * n_eff, n_eff)
    return {
        "judged": n,
        "precision": precision,
        "lenient": lenient,
        "ci_low": low,
        "ci_high": high,
        "n_effective": n_eff,
        "coverage": covered / population if population else 0.0,
    }
