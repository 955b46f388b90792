"""Small server-side charts for the account page: numbers in, SVG geometry out (no JS library).

The templates draw these as inline SVG, so the page works without a chart library and without
any script: a person who opens it sees the chart whether htmx loaded or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHART_WIDTH, CHART_HEIGHT, PAD = 640, 180, 28


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    score: int
    label: str


def history_points(history: list[dict[str, Any]]) -> list[Point]:
    """One point per stored run, oldest left; y from the 1-99 score (higher is up)."""
    scored = [h for h in history if h.get("score") is not None]
    if not scored:
        return []
    inner_w, inner_h = CHART_WIDTH - 2 * PAD, CHART_HEIGHT - 2 * PAD
    step = inner_w / (len(scored) - 1) if len(scored) > 1 else 0.0
    points = []
    for i, run in enumerate(scored):
        score = int(run["score"])
        x = PAD + (i * step if len(scored) > 1 else inner_w / 2)
        y = PAD + inner_h * (1 - score / 100)
        tier = run.get("abm_tier") or "?"
        label = f"{run['as_of']} (v{run['model_version']}): score {score}, {tier}"
        points.append(Point(round(x, 1), round(y, 1), score, label))
    return points


def polyline(points: list[Point]) -> str:
    return " ".join(f"{p.x},{p.y}" for p in points)


def factor_bars(reasons: dict[str, list[dict]] | None) -> list[dict[str, Any]]:
    """The stored factors, strongest push first, with bar geometry in percent of the widest."""
    if not reasons:
        return []
    factors = []
    for key in ("up", "down"):
        for reason in reasons.get(key) or []:
            points = float(reason.get("probability_points") or 0.0) * 100
            factors.append(
                {
                    "text": reason.get("text") or reason.get("feature"),
                    "feature": reason.get("feature"),
                    "value": reason.get("value"),
                    "points": points,
                    "up": points >= 0,
                }
            )
    factors.sort(key=lambda f: -abs(f["points"]))
    widest = max((abs(f["points"]) for f in factors), default=0.0) or 1.0
    for factor in factors:
        factor["width"] = round(100 * abs(factor["points"]) / widest, 1)
    return factors


def waterfall_bars(waterfall: Any) -> list[dict[str, Any]]:
    """Waterfall geometry: each step's bar from its start to its end, in percent of the span.

    The axis spans the lowest to the highest running propensity of the waterfall (base and
    propensity included), so small steps of an account far from the base stay visible.
    """
    if waterfall is None or waterfall.source != "model" or not waterfall.steps:
        return []
    levels = [waterfall.base, waterfall.propensity]
    levels += [s["start"] for s in waterfall.steps] + [s["end"] for s in waterfall.steps]
    low, high = min(levels), max(levels)
    span = (high - low) or 1.0
    bars = []
    for step in waterfall.steps:
        left = (min(step["start"], step["end"]) - low) / span
        width = abs(step["points"]) / span
        bars.append(
            {
                **step,
                "up": step["points"] >= 0,
                "x": round(100 * left, 2),
                # At least a hair wide: a step that rounds to nothing still shows where it is.
                "width": round(max(100 * width, 0.2), 2),
            }
        )
    return bars


def days_range(p10: float | None, p50: float | None, p90: float | None) -> dict[str, float] | None:
    """Positions (percent of the bar) of P10, P50 and P90 on a 0..P90 x 1.2 axis."""
    if p10 is None or p50 is None or p90 is None:
        return None
    top = max(p90 * 1.2, 1.0)
    return {
        "p10": round(100 * p10 / top, 1),
        "p50": round(100 * p50 / top, 1),
        "p90": round(100 * p90 / top, 1),
        "axis": top,
    }
