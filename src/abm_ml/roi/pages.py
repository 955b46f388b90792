"""The ROI and pilot reports as self-contained HTML pages (and the numbers they show, as text)."""

from __future__ import annotations

import math
from pathlib import Path

from abm_ml.modeling.bootstrap import Metric
from abm_ml.reporting.formatting import fmt_int, fmt_pct, is_finite
from abm_ml.reporting.page import render
from abm_ml.roi.attribution import MODEL_LABELS
from abm_ml.roi.pilot import METRIC_LABELS, PilotReport
from abm_ml.roi.report import RoiReport

VERDICT_LABELS = {
    "lift": ("Lift measured", "good"),
    "harm": ("Negative lift", "danger"),
    "no_lift": ("No lift", "warn"),
    "too_few": ("Too few accounts to conclude", "warn"),
}
_RATES = {"engaged", "opened_opportunity", "won_deal", "win_rate"}


def fmt_times(value: object) -> str:
    """A return on spend as a multiple of the cost: 17.2 -> '17.2x'."""
    return f"{float(value):.1f}x" if is_finite(value) else "\u2013"


def fmt_metric(metric: Metric, kind: str = "number", *, signed: bool = False) -> str:
    """'12.3 % [8.1 %, 16.0 %]' for rates, '+4.2 [1.0, 7.5] pts' for differences of rates, '61 [54, 64]'
    for days, '1,234' for money; an en dash if missing. ``signed`` shows the sign of days and
    money (differences)."""
    if not is_finite(metric.value):
        return "\u2013"

    def one(value: float) -> str:
        if kind == "rate":
            return fmt_pct(value)
        if kind == "days":
            return f"{value:+,.0f}" if signed else fmt_int(value)
        if kind == "points":
            return f"{value * 100:+.1f}" if is_finite(value) else "\u2013"
        if not is_finite(value):
            return "\u2013"
        if kind == "money":
            return f"{value:+,.0f}" if signed else fmt_int(value)
        return f"{value:.1f}"

    unit = " pts" if kind == "points" else ""
    if metric.low == metric.value == metric.high or math.isnan(metric.low):
        return one(metric.value) + unit
    return f"{one(metric.value)} [{one(metric.low)}, {one(metric.high)}]{unit}"


def write_roi_html(report: RoiReport, path: Path) -> Path:
    """Render the ROI report to ``path``."""
    campaigns = report.by_campaign
    reach = campaigns[campaigns["model"] == "even_split"].to_dict("records")
    sections = []
    for key, frame, title, section_id in (
        ("campaign", campaigns, "Credit by attribution view, per campaign", "credit"),
        ("channel", report.by_channel, "Channels", "channels"),
    ):
        rows = []
        column = "campaign_id" if key == "campaign" else "channel"
        ordered = frame.assign(_view=frame["model"].map(list(MODEL_LABELS).index)).sort_values(
            [column, "_view"], kind="stable"
        )
        for i, record in enumerate(ordered.to_dict("records")):
            record["key"] = record["name"] if key == "campaign" else record["channel"]
            record["view"] = MODEL_LABELS[record["model"]]
            record["first"], record["span"] = i % len(MODEL_LABELS) == 0, len(MODEL_LABELS)
            record["ros"] = fmt_times(record["return_on_spend"])
            rows.append(record)
        sections.append(
            {
                "id": section_id,
                "title": title,
                "key_label": key.capitalize(),
                "caption": "Return on spend = (credited won revenue - cost) / cost, as a multiple of the "
                "cost. Fractional counts come from the even split.",
                "rows": rows,
            }
        )
    velocity = dict(report.velocity)
    for name in ("median_days_touched", "median_days_untouched", "difference_days"):
        velocity[name] = fmt_metric(velocity[name], "days", signed=name == "difference_days")
    return render(
        "roi_report.html.j2",
        path,
        title="Campaign ROI",
        period=report.period,
        reach=reach,
        sections=sections,
        velocity=velocity,
        accounting=report.accounting,
        notes=report.notes,
    )


def pilot_rows(report: PilotReport) -> list[dict[str, str]]:
    """One row of text per outcome: label, pilot, control and the difference with its interval."""
    rows = []
    for name, parts in report.metrics.items():
        kind = "rate" if name in _RATES else ("days" if name == "median_days_to_close" else "money")
        rows.append(
            {
                "name": name,
                "label": METRIC_LABELS[name],
                "pilot": fmt_metric(parts["pilot"], kind),
                "control": fmt_metric(parts["control"], kind),
                "difference": fmt_metric(
                    parts["difference"], "points" if kind == "rate" else kind, signed=True
                ),
            }
        )
    return rows


def write_pilot_html(report: PilotReport, path: Path) -> Path:
    """Render the pilot report to ``path``."""
    label, banner = VERDICT_LABELS[report.verdict]
    return render(
        "pilot_report.html.j2",
        path,
        title=f"Pilot report: {report.pilot.pilot_id}",
        pilot_id=report.pilot.pilot_id,
        model_version=report.pilot.model_version,
        ranking_as_of=report.pilot.ranking_as_of,
        seed=report.pilot.seed,
        period=report.period,
        banner=banner,
        verdict_label=label,
        message=report.message,
        balance=report.pilot.balance(),
        rows=pilot_rows(report),
        p_value="\u2013" if math.isnan(report.p_value) else f"{report.p_value:.3g}",
        needed_observed=fmt_int(report.needed_for_observed)
        if report.needed_for_observed
        else "\u2013 (no difference observed)",
        needed_min=fmt_int(report.needed_for_min_lift) if report.needed_for_min_lift else "\u2013",
        min_lift=f"{report.min_lift * 100:.0f} points",
        notes=report.notes,
    )
