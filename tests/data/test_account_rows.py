"""The point-in-time builder over canonical CRM tables: account rows as of dates, cut-offs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from abm_ml.data.tables import CrmTables
from abm_ml.features.columns import AS_OF, FEATURE_COLUMNS
from abm_ml.features.point_in_time import (
    OPEN_OPPORTUNITIES,
    build_account_rows,
    build_opportunity_rows,
    build_scoring_rows,
    build_training_rows,
)
from abm_ml.schema import ACCOUNT_ID, CLOSED_AT, CREATED_AT, OUTCOME
from abm_ml.synthetic.generate import generate_world

CUT = pd.Timestamp("2025-06-01 12:00:00")
SECOND = pd.Timedelta(seconds=1)
DAY = pd.Timedelta(days=1)


def _tables(**extra: pd.DataFrame) -> CrmTables:
    """Two accounts, a few contacts, deals and touches; ``extra`` rows appended per table."""
    t = {
        "accounts": pd.DataFrame(
            {
                ACCOUNT_ID: ["A1", "A2"],
                "industry": ["software", "retail"],
                "region": ["emea", None],
                "segment": ["smb", None],
                "tech_stack": [None, None],
                "employees": [50.0, np.nan],
                "annual_revenue": [1e6, np.nan],
                "uses_competitor": [True, None],
                "owner_assigned": [True, False],
                "parent_account_id": [None, "A1"],
                "founded_year": [np.nan, np.nan],
                "fiscal_year_end_month": [np.nan, np.nan],
                "crm_data_quality": [np.nan, np.nan],
            }
        ),
        "contacts": pd.DataFrame(
            {
                "contact_id": ["C1", "C2", "C3"],
                ACCOUNT_ID: ["A1", "A1", "A2"],
                "role": ["economic_buyer", None, "champion"],
                CREATED_AT: pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"]),
            }
        ),
        "activities": pd.DataFrame(
            {
                ACCOUNT_ID: ["A1", "A1", "A2"],
                "contact_id": ["C1", "C2", None],
                "occurred_at": pd.to_datetime(["2025-05-20", "2025-05-25", "2025-05-30"]),
                "channel": ["sales_meeting", "email_click", "web_visit"],
                "pages": [np.nan, np.nan, 3.0],
                "seconds_on_site": [np.nan, np.nan, 60.0],
            }
        ),
        "intent": pd.DataFrame(
            {
                ACCOUNT_ID: ["A1"],
                "week_start": pd.to_datetime(["2025-05-19"]),
                "topic": ["abm"],
                "score": [70.0],
            }
        ),
        "opportunities": pd.DataFrame(
            {
                "opportunity_id": ["O1", "O2"],
                ACCOUNT_ID: ["A1", "A1"],
                CREATED_AT: pd.to_datetime(["2025-01-10", "2025-04-01"]),
                CLOSED_AT: pd.to_datetime(["2025-03-01", pd.NaT]),
                OUTCOME: ["won", "open"],
                "amount": [1000.0, 2000.0],
                "source": ["inbound", "outbound"],
            }
        ),
        "contact_roles": pd.DataFrame(
            {
                "opportunity_id": ["O2"],
                "contact_id": ["C2"],
                ACCOUNT_ID: ["A1"],
                "role": ["procurement"],
                CREATED_AT: pd.to_datetime(["2025-05-28"]),
            }
        ),
    }
    for name, rows in extra.items():
        t[name] = pd.concat([t[name], rows], ignore_index=True)
    return CrmTables(**t)


def _row(tables: CrmTables, as_of=CUT, account: str = "A1") -> pd.Series:
    rows = build_account_rows(tables, as_of)
    return rows.set_index(ACCOUNT_ID).loc[account]


def test_account_rows_one_per_account_and_date_with_open_deals():
    dates = ["2025-03-15", CUT]
    rows = build_account_rows(_tables(), dates)
    assert list(rows.columns) == [ACCOUNT_ID, AS_OF, OPEN_OPPORTUNITIES, *FEATURE_COLUMNS]
    assert len(rows) == 4
    assert list(rows[ACCOUNT_ID]) == ["A1", "A2", "A1", "A2"]
    assert list(rows[AS_OF]) == [pd.Timestamp("2025-03-15")] * 2 + [CUT] * 2
    # O1 closed before mid-March and O2 was created after it; by the cut-off O2 is open.
    assert list(rows[OPEN_OPPORTUNITIES]) == [0, 0, 1, 0]
    assert list(rows["prior_won_deals"]) == [1, 0, 1, 0]


def test_roles_from_contacts_and_from_deal_contact_roles():
    row = _row(_tables())
    assert row["has_economic_buyer"] and not row["has_champion"]
    # C2 has no role of its own but is procurement on O2 from 28 May.
    assert row["has_procurement"]
    assert row["committee_roles_covered"] == 2
    # C2's email click of 25 May counts for procurement once the role is on record (28 May).
    assert row["procurement_engaged_90d"] and row["economic_buyer_engaged_90d"]
    before = _row(_tables(), pd.Timestamp("2025-05-28") - SECOND)
    assert not before["has_procurement"] and not before["procurement_engaged_90d"]
    assert _row(_tables(), pd.Timestamp("2025-05-28") + SECOND)["procurement_engaged_90d"]


def test_nothing_dated_after_the_cut_off_changes_a_row():
    base = _row(_tables())[list(FEATURE_COLUMNS)]
    late = _tables(
        activities=pd.DataFrame(
            {
                ACCOUNT_ID: ["A1", "A1"],
                "contact_id": ["C1", "C3"],
                "occurred_at": [CUT, CUT + DAY],
                "channel": ["web_visit", "sales_meeting"],
                "pages": [5.0, np.nan],
                "seconds_on_site": [100.0, np.nan],
            }
        ),
        contacts=pd.DataFrame(
            {
                "contact_id": ["C9"],
                ACCOUNT_ID: ["A1"],
                "role": ["champion"],
                CREATED_AT: [CUT + SECOND],
            }
        ),
        contact_roles=pd.DataFrame(
            {
                "opportunity_id": ["O2"],
                "contact_id": ["C1"],
                ACCOUNT_ID: ["A1"],
                "role": ["champion"],
                CREATED_AT: [CUT + SECOND],
            }
        ),
        # The week of 26 May ends on 2 June, after the cut-off: not a complete week yet.
        intent=pd.DataFrame(
            {
                ACCOUNT_ID: ["A1"],
                "week_start": [pd.Timestamp("2025-05-26")],
                "topic": ["abm"],
                "score": [99.0],
            }
        ),
        opportunities=pd.DataFrame(
            {
                "opportunity_id": ["O3"],
                ACCOUNT_ID: ["A1"],
                CREATED_AT: [pd.Timestamp("2025-02-01")],
                CLOSED_AT: [CUT + SECOND],
                OUTCOME: ["won"],
                "amount": [5.0],
                "source": ["inbound"],
            }
        ),
    )
    after = _row(late)[list(FEATURE_COLUMNS)]
    pd.testing.assert_series_equal(after, base)
    # The same additions do count once the cut-off has passed them.
    later = _row(late, CUT + 10 * DAY)
    assert later["has_champion"] and later["prior_won_deals"] == 2
    assert later["contacts_in_crm"] == 3
    assert _row(late, CUT + 7 * DAY)["intent_score_latest"] == 99.0


def test_a_contact_created_after_the_cut_off_never_counts_toward_coverage():
    late = _tables(
        contacts=pd.DataFrame(
            {
                "contact_id": ["C8"],
                ACCOUNT_ID: ["A2"],
                "role": ["procurement"],
                CREATED_AT: [CUT + SECOND],
            }
        ),
        # Its touch before the cut-off was recorded; the contact was entered only later.
        activities=pd.DataFrame(
            {
                ACCOUNT_ID: ["A2"],
                "contact_id": ["C8"],
                "occurred_at": [CUT - DAY],
                "channel": ["sales_meeting"],
                "pages": [np.nan],
                "seconds_on_site": [np.nan],
            }
        ),
    )
    row = _row(late, account="A2")
    assert not row["has_procurement"] and not row["procurement_engaged_90d"]
    assert row["contacts_in_crm"] == 1
    later = _row(late, CUT + DAY, account="A2")
    assert later["has_procurement"] and later["procurement_engaged_90d"]


def test_a_deal_closed_after_the_cut_off_is_not_a_prior_win():
    row = _row(_tables(), pd.Timestamp("2025-03-01") - SECOND)
    assert row["prior_won_deals"] == 0
    assert _row(_tables(), pd.Timestamp("2025-03-01") + SECOND)["prior_won_deals"] == 1


@pytest.fixture(scope="module")
def world():
    return generate_world(300, seed=5)


def test_world_wrappers_are_the_builder_over_the_worlds_tables(world):
    tables = CrmTables.from_world(world)
    pd.testing.assert_frame_equal(build_training_rows(world), build_opportunity_rows(tables))
    as_of = world.as_of - 30 * DAY
    scoring = build_scoring_rows(world, as_of)
    snapshot = build_account_rows(tables, [as_of - 60 * DAY, as_of])
    now = snapshot[snapshot[AS_OF] == as_of].reset_index(drop=True)
    pd.testing.assert_frame_equal(now[list(FEATURE_COLUMNS)], scoring[list(FEATURE_COLUMNS)])
    opp = world.opportunities
    open_now = (
        opp[(opp[CREATED_AT] < as_of) & ~(opp[CLOSED_AT] < as_of)]
        .groupby(ACCOUNT_ID, observed=False)
        .size()
    )
    expected = now[ACCOUNT_ID].map(open_now).fillna(0).astype(int)
    assert (now[OPEN_OPPORTUNITIES].to_numpy() == expected.to_numpy()).all()
    assert expected.sum() > 0
