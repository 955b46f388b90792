"""The campaign ROI report: reach, engagement, influenced pipeline and revenue, cost ratios.

:func:`compute_roi` turns validated tables (:func:`abm_ml.roi.tables.load_tables`) into a
:class:`RoiReport`: one row per campaign and per channel for each attribution view of
:mod:`abm_ml.roi.attribution`, and the deal velocity of touched vs untouched won deals. The
report is analytics on CRM tables, not a model run: nothing is logged to MLflow.

Definitions (see ``docs/roi.md``):

* *reached*: distinct accounts with a touch of the campaign in the period; *target accounts
  reached* counts those flagged ``is_target``.
* *engaged*: reached accounts with a CRM activity within :data:`ENGAGED_DAYS` after a touch
  of the campaign when an activities table is given; otherwise reached accounts with a touch
  marked ``responded``; missing when neither is known.
* *opportunities touched*: opportunities created within ``window_days`` after a touch.
* *credited* opportunities, pipeline (amount of all credited opportunities), won revenue and
  new logos (an account's first win): shares of those opportunities under each view.
* *cost per engaged account / opportunity / new logo*: cost divided by the engaged accounts,
  credited opportunities, credited new logos (missing when the denominator is zero).
* *return on spend*: (credited won revenue - cost) / cost.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from abm_ml.modeling.bootstrap import Metric
from abm_ml.roi import attribution
from abm_ml.roi.stats import compare
from abm_ml.roi.tables import (
    CAMPAIGN_ID,
    IS_TARGET,
    OCCURRED_AT,
    OPPORTUNITY_ID,
    RESPONDED,
    TOUCHED_AT,
    RoiTables,
)
from abm_ml.schema import ACCOUNT_ID, AMOUNT, CLOSED_AT, CREATED_AT, OUTCOME, WON

WINDOW_DAYS = 90
"""Default attribution window: a touch influences opportunities created up to 90 days later."""
ENGAGED_DAYS = 90
"""An activity up to 90 days after a touch engages the account (the engagement features' window)."""
ROW_COLUMNS = (
    "model",
    "cost",
    "accounts_reached",
    "target_accounts_reached",
    "engaged_accounts",
    "opportunities_touched",
    "credited_opportunities",
    "credited_pipeline",
    "credited_won_deals",
    "credited_won_revenue",
    "credited_new_logos",
    "cost_per_engaged_account",
    "cost_per_opportunity",
    "cost_per_new_logo",
    "return_on_spend",
)


@dataclass
class RoiReport:
    """What ``abm-ml roi`` shows.

    Attributes:
        by_campaign: One row per campaign and attribution view (``campaign_id, name, channel``,
            ``content_cost`` when known, then :data:`ROW_COLUMNS`; ``cost`` includes content).
        by_channel: One row per channel and attribution view (``channel`` then :data:`ROW_COLUMNS`).
        velocity: Days to close of won deals, touched vs untouched, with intervals.
        period: ``start`` and ``end`` of the touches counted, and the window.
        accounting: Rows read, used and rejected per input table.
        notes: Caveats shown with the numbers (e.g. no ``responded`` column).
    """

    by_campaign: pd.DataFrame
    by_channel: pd.DataFrame
    velocity: dict[str, Any]
    period: dict[str, Any]
    accounting: dict[str, dict[str, int]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (NaN becomes None)."""

        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]

        return {
            "kind": "abm-ml campaign roi",
            "period": self.period,
            "attribution_views": attribution.MODEL_LABELS,
            "by_campaign": records(self.by_campaign),
            "by_channel": records(self.by_channel),
            "velocity": {
                k: (
                    {part: _plain(x) for part, x in v.to_dict().items()}
                    if isinstance(v, Metric)
                    else _plain(v)
                )
                for k, v in self.velocity.items()
            },
            "accounting": self.accounting,
            "notes": self.notes,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, pd.Timestamp):
        return str(value.date())
    return value


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    num, den = num.astype(float), den.astype(float)
    return (num / den).where(den > 0)


def _rows(
    key: str,
    campaigns: pd.DataFrame,
    touches: pd.DataFrame,
    credit: pd.DataFrame,
    target_ids: pd.Index,
    has_engagement: bool,
) -> pd.DataFrame:
    """Rows keyed by ``key`` (campaign or channel), one per attribution view."""
    keys = pd.Index(campaigns[key].drop_duplicates(), name=key)
    reach = touches.groupby(key)[ACCOUNT_ID]
    reached = reach.nunique().reindex(keys, fill_value=0)
    target = (
        touches[touches[ACCOUNT_ID].isin(target_ids)]
        .groupby(key)[ACCOUNT_ID]
        .nunique()
        .reindex(keys, fill_value=0)
    )
    if has_engagement:
        engaged = (
            touches[touches["engaged"]]
            .groupby(key)[ACCOUNT_ID]
            .nunique()
            .reindex(keys, fill_value=0)
            .astype(float)
        )
    else:
        engaged = pd.Series(np.nan, index=keys)
    touched = credit.groupby(key)[OPPORTUNITY_ID].nunique().reindex(keys, fill_value=0)
    cost = campaigns.groupby(key)["cost"].sum().reindex(keys)
    frames = []
    for model in attribution.MODELS:
        share = credit[model]
        sums = (
            credit.assign(
                credited_opportunities=share,
                credited_pipeline=share * credit[AMOUNT],
                credited_won_deals=share * credit["won"],
                credited_won_revenue=share * credit[AMOUNT] * credit["won"],
                credited_new_logos=share * credit["new_logo"],
            )
            .groupby(key)[
                [
                    "credited_opportunities",
                    "credited_pipeline",
                    "credited_won_deals",
                    "credited_won_revenue",
                    "credited_new_logos",
                ]
            ]
            .sum()
            .reindex(keys, fill_value=0.0)
        )
        frame = pd.DataFrame(
            {
                "model": model,
                "cost": cost,
                "accounts_reached": reached,
                "target_accounts_reached": target,
                "engaged_accounts": engaged,
                "opportunities_touched": touched,
            },
            index=keys,
        ).join(sums)
        frame["cost_per_engaged_account"] = _ratio(frame["cost"], frame["engaged_accounts"])
        frame["cost_per_opportunity"] = _ratio(frame["cost"], frame["credited_opportunities"])
        frame["cost_per_new_logo"] = _ratio(frame["cost"], frame["credited_new_logos"])
        frame["return_on_spend"] = _ratio(
            frame["credited_won_revenue"] - frame["cost"], frame["cost"]
        )
        frames.append(frame.reset_index())
    return pd.concat(frames, ignore_index=True)


def engaged_touches(
    touches: pd.DataFrame, activities: pd.DataFrame | None, days: int = ENGAGED_DAYS
) -> tuple[pd.Series, str | None]:
    """Which touches engaged their account, and the definition used (None when unknown).

    With activities, a touch engaged its account when the account has an activity (any
    channel) on the touch's day or up to ``days`` later; without, when it is marked
    ``responded``.
    """
    if activities is not None:
        order = touches[[ACCOUNT_ID, TOUCHED_AT]].reset_index().sort_values(TOUCHED_AT)
        nearest = pd.merge_asof(
            order,
            activities[[ACCOUNT_ID, OCCURRED_AT]].sort_values(OCCURRED_AT),
            left_on=TOUCHED_AT,
            right_on=OCCURRED_AT,
            by=ACCOUNT_ID,
            direction="forward",
        )
        within = (nearest[OCCURRED_AT] - nearest[TOUCHED_AT]) <= pd.Timedelta(days=days)
        flags = pd.Series(within.fillna(False).to_numpy(dtype=bool), index=nearest["index"])
        return flags.reindex(touches.index).astype(bool), (
            f"an activity of the account within {days} days after a touch"
        )
    if len(touches) and touches[RESPONDED].notna().all():
        return touches[RESPONDED].astype(bool), "a touch marked `responded`"
    return pd.Series(False, index=touches.index), None


def _velocity(
    touches: pd.DataFrame, opportunities: pd.DataFrame, window_days: int, n_boot: int, seed: int
) -> dict[str, Any]:
    """Median days to close of won deals touched (window before creation up to close) or not."""
    won = opportunities[opportunities[OUTCOME] == WON]
    pairs = touches[[ACCOUNT_ID, TOUCHED_AT]].merge(
        won[[OPPORTUNITY_ID, ACCOUNT_ID, CREATED_AT, CLOSED_AT]], on=ACCOUNT_ID
    )
    inside = (pairs[TOUCHED_AT] >= pairs[CREATED_AT] - pd.Timedelta(days=window_days)) & (
        pairs[TOUCHED_AT] <= pairs[CLOSED_AT]
    )
    touched = won[OPPORTUNITY_ID].isin(pairs.loc[inside, OPPORTUNITY_ID]).to_numpy()
    days = (won[CLOSED_AT] - won[CREATED_AT]).dt.days.to_numpy(dtype=float)
    result = compare(days, touched, "median", n_boot=n_boot, seed=seed)
    return {
        "won_deals_touched": int(touched.sum()),
        "won_deals_untouched": int((~touched).sum()),
        "median_days_touched": result["treated"],
        "median_days_untouched": result["untreated"],
        "difference_days": result["difference"],
    }


def compute_roi(
    tables: RoiTables,
    *,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    window_days: int = WINDOW_DAYS,
    n_boot: int = 2000,
    seed: int = 0,
) -> RoiReport:
    """Campaign and channel ROI over a period, under each attribution view.

    Args:
        tables: Validated inputs.
        start: First day of touches counted (default: the earliest touch).
        end: Last day of touches counted (default: the latest touch).
        window_days: Days after a touch within which a created opportunity counts as touched.
        n_boot: Bootstrap resamples for the velocity intervals.
        seed: Bootstrap seed.

    Returns:
        The report. Campaigns whose period does not overlap ``start..end`` are left out; a
        campaign that does is counted at its full cost.
    """
    if window_days < 0:
        raise ValueError("window_days must be >= 0")
    touches = tables.touches
    first = pd.Timestamp(start) if start is not None else touches[TOUCHED_AT].min()
    last = pd.Timestamp(end) if end is not None else touches[TOUCHED_AT].max()
    campaigns = tables.campaigns[
        (tables.campaigns["start"] <= last) & (tables.campaigns["end"] >= first)
    ]
    touches = touches[
        touches[TOUCHED_AT].between(first, last) & touches[CAMPAIGN_ID].isin(campaigns[CAMPAIGN_ID])
    ].merge(campaigns[[CAMPAIGN_ID, "channel"]], on=CAMPAIGN_ID)
    opportunities = tables.opportunities.assign(
        won=(tables.opportunities[OUTCOME] == WON).astype(float),
        new_logo=attribution.new_logos(tables.opportunities).astype(float),
    )
    pairs = attribution.touched_opportunities(touches, opportunities, window_days)
    credit = (
        attribution.credits(pairs)
        .merge(campaigns[[CAMPAIGN_ID, "channel"]], on=CAMPAIGN_ID)
        .merge(opportunities[[OPPORTUNITY_ID, AMOUNT, "won", "new_logo"]], on=OPPORTUNITY_ID)
    )
    target_ids = pd.Index(tables.accounts.loc[tables.accounts[IS_TARGET], ACCOUNT_ID])
    touches["engaged"], engagement = engaged_touches(touches, tables.activities)
    has_engagement = engagement is not None
    described = [CAMPAIGN_ID, "name", "channel"] + (
        ["content_cost"] if "content_cost" in campaigns.columns else []
    )
    by_campaign = campaigns[described].merge(
        _rows(CAMPAIGN_ID, campaigns, touches, credit, target_ids, has_engagement),
        on=CAMPAIGN_ID,
    )
    by_channel = _rows(
        "channel",
        campaigns.drop_duplicates(CAMPAIGN_ID),
        touches,
        credit,
        target_ids,
        has_engagement,
    )
    notes = [
        f"Engaged: {engagement}."
        if engagement
        else "Engaged accounts and cost per engaged account are not available: give an "
        "activities table or touches with a `responded` column."
    ]
    notes.append(
        "Attribution views share credit among the campaigns that touched an opportunity; "
        "they do not say what would have happened without the campaign. Use a pilot with a "
        "control group (abm-ml pilot) to measure lift."
    )
    return RoiReport(
        by_campaign=by_campaign,
        by_channel=by_channel,
        # Deals a touch of the period could have influenced, touched or not.
        velocity=_velocity(
            touches,
            tables.opportunities[
                tables.opportunities[CREATED_AT].between(
                    first, last + pd.Timedelta(days=window_days)
                )
            ],
            window_days,
            n_boot,
            seed,
        ),
        period={
            "start": str(first.date()),
            "end": str(last.date()),
            "window_days": window_days,
            "campaigns": len(campaigns),
        },
        accounting=tables.accounting(),
        notes=notes,
    )


def roi_table(report: RoiReport, by: str = "campaign") -> pd.DataFrame:
    """A compact wide table: one row per campaign (or channel), return on spend per view."""
    frame = report.by_campaign if by == "campaign" else report.by_channel
    key = [CAMPAIGN_ID, "name", "channel"] if by == "campaign" else ["channel"]
    even = frame[frame["model"] == "even_split"].set_index(key)
    wide = even[
        [
            "cost",
            "accounts_reached",
            "engaged_accounts",
            "opportunities_touched",
            "cost_per_new_logo",
        ]
    ].copy()
    for model in attribution.MODELS:
        wide[f"ros_{model}"] = frame[frame["model"] == model].set_index(key)["return_on_spend"]
    return wide.reset_index()


def write_json(report: RoiReport, path: Path) -> Path:
    """Write the report as JSON (strict: missing values are null, never NaN)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False), encoding="utf-8")
    return path
