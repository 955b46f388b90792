"""Which campaigns touched each opportunity, and how the credit for it is split.

An opportunity is *touched* by a campaign when one of the campaign's touches of the same
account falls in the ``window_days`` before the opportunity's creation (touch date <= creation
date). Three labelled views split each touched opportunity's credit among its campaigns:

* ``first_touch`` - all of it to the campaign whose touch came first in the window;
* ``last_touch`` - all of it to the campaign whose touch came last before creation;
* ``even_split`` - equal shares to every distinct campaign that touched it (a campaign that
  reached five contacts of the account counts once, so touching more people buys no credit).

Ties in touch date are broken by campaign id, so the split is deterministic. None of these
views is causal: a campaign that reaches accounts about to buy anyway gets credit in all
three. The pilot's control group (:mod:`abm_ml.roi.pilot`) is what measures cause.
"""

from __future__ import annotations

import pandas as pd

from abm_ml.roi.tables import CAMPAIGN_ID, OPPORTUNITY_ID, TOUCHED_AT
from abm_ml.schema import ACCOUNT_ID, CLOSED_AT, CREATED_AT, OUTCOME, WON

MODELS = ("first_touch", "last_touch", "even_split")
MODEL_LABELS = {
    "first_touch": "first touch",
    "last_touch": "last touch",
    "even_split": "even split (multi-touch)",
}


def new_logos(opportunities: pd.DataFrame) -> pd.Series:
    """True for each won opportunity that is its account's first win (by close date) in the data."""
    won = opportunities[opportunities[OUTCOME] == WON].sort_values(
        [CLOSED_AT, OPPORTUNITY_ID], kind="stable"
    )
    first = won.drop_duplicates(ACCOUNT_ID, keep="first")
    return opportunities[OPPORTUNITY_ID].isin(first[OPPORTUNITY_ID])


def touched_opportunities(
    touches: pd.DataFrame, opportunities: pd.DataFrame, window_days: int
) -> pd.DataFrame:
    """One row per (opportunity, campaign) with the campaign's first and last touch in the window.

    Returns:
        ``opportunity_id, campaign_id, first_touch_at, last_touch_at``.
    """
    pairs = touches[[CAMPAIGN_ID, ACCOUNT_ID, TOUCHED_AT]].merge(
        opportunities[[OPPORTUNITY_ID, ACCOUNT_ID, CREATED_AT]], on=ACCOUNT_ID
    )
    lag = pairs[CREATED_AT] - pairs[TOUCHED_AT]
    pairs = pairs[(lag >= pd.Timedelta(0)) & (lag <= pd.Timedelta(days=window_days))]
    return (
        pairs.groupby([OPPORTUNITY_ID, CAMPAIGN_ID], sort=True)[TOUCHED_AT]
        .agg(first_touch_at="min", last_touch_at="max")
        .reset_index()
    )


def credits(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each (opportunity, campaign) pair's share of the opportunity under each view.

    Args:
        pairs: As :func:`touched_opportunities` returns.

    Returns:
        ``pairs`` with one column per view in :data:`MODELS` (shares of one opportunity sum to 1).
    """
    out = pairs.copy()
    first = out.sort_values(["first_touch_at", CAMPAIGN_ID], kind="stable").drop_duplicates(
        OPPORTUNITY_ID, keep="first"
    )
    last = out.sort_values(["last_touch_at", CAMPAIGN_ID], kind="stable").drop_duplicates(
        OPPORTUNITY_ID, keep="last"
    )
    out["first_touch"] = out.index.isin(first.index).astype(float)
    out["last_touch"] = out.index.isin(last.index).astype(float)
    out["even_split"] = 1.0 / out.groupby(OPPORTUNITY_ID)[CAMPAIGN_ID].transform("size")
    return out
