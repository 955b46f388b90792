"""Tests of the point-in-time feature builder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from abm_ml.features.columns import AS_OF, FEATURE_COLUMNS, FEATURE_DESCRIPTIONS, MODEL_FEATURES
from abm_ml.features.point_in_time import (
    build_features,
    build_scoring_rows,
    build_training_rows,
)
from abm_ml.schema import (
    ACCOUNT_ID,
    AMOUNT,
    CANONICAL_COLUMNS,
    CLOSED_AT,
    CREATED_AT,
    DAYS_TO_CLOSE,
    OPEN,
    OUTCOME,
    ROW_ID,
    WON,
)
from abm_ml.synthetic.generate import generate_world
from abm_ml.synthetic.world import World

SECOND = pd.Timedelta(seconds=1)
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(300, seed=21)


@pytest.fixture(scope="module")
def rows(world: World) -> pd.DataFrame:
    return build_training_rows(world)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy with categoricals as plain objects, so rows with new keys can be appended."""
    out = frame.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(object)
    return out


def _with(world: World, **extra: pd.DataFrame) -> World:
    """A copy of ``world`` with rows appended to some tables."""
    tables = {
        name: getattr(world, name)
        for name in ("accounts", "contacts", "activities", "intent", "opportunities")
    }
    for name, add in extra.items():
        tables[name] = pd.concat([_plain(tables[name]), add], ignore_index=True)
    return World(**tables, as_of=world.as_of, start=world.start, seed=world.seed)


def _without(world: World, table: str, index) -> World:
    tables = {
        name: getattr(world, name)
        for name in ("accounts", "contacts", "activities", "intent", "opportunities")
    }
    tables[table] = tables[table].drop(index=index).reset_index(drop=True)
    return World(**tables, as_of=world.as_of, start=world.start, seed=world.seed)


def _one(world: World, account: str, as_of: pd.Timestamp) -> pd.Series:
    cut = pd.DataFrame({ACCOUNT_ID: [account], AS_OF: [as_of]})
    return build_features(world, cut).iloc[0]


def _activity(account: str, when, channel: str, contact=None, pages=np.nan) -> pd.DataFrame:
    return pd.DataFrame(
        {
            ACCOUNT_ID: [account],
            "contact_id": [contact],
            "occurred_at": [pd.Timestamp(when)],
            "channel": [channel],
            "pages": np.array([pages], np.float32),
            "seconds_on_site": np.array([np.nan], np.float32),
        }
    )


# --- shape and contract ------------------------------------------------------------------------


def test_training_rows_contract(world: World, rows: pd.DataFrame):
    opp = world.opportunities
    assert len(rows) == len(opp)
    for col in (*CANONICAL_COLUMNS, "source", *FEATURE_COLUMNS):
        assert col in rows.columns, col
    assert AS_OF not in rows.columns
    assert rows[ROW_ID].tolist() == opp["opportunity_id"].astype(str).tolist()
    assert rows[ACCOUNT_ID].tolist() == opp[ACCOUNT_ID].astype(str).tolist()
    is_open = rows[OUTCOME] == OPEN
    assert rows.loc[is_open, DAYS_TO_CLOSE].isna().all()
    closed = rows[~is_open]
    expected = (closed[CLOSED_AT] - closed[CREATED_AT]).dt.total_seconds() / 86_400
    np.testing.assert_allclose(closed[DAYS_TO_CLOSE], expected)
    assert (closed[DAYS_TO_CLOSE] > 0).all()
    np.testing.assert_allclose(rows[AMOUNT], opp[AMOUNT])


def test_feature_types(rows: pd.DataFrame):
    for name in MODEL_FEATURES:
        kind = FEATURE_DESCRIPTIONS[name]["type"]
        col = rows[name]
        if kind == "boolean":
            assert col.dtype == bool, name
        elif kind == "categorical":
            assert not isinstance(col.dtype, pd.CategoricalDtype), name
            assert col.map(type).eq(str).all(), name
        else:
            assert pd.api.types.is_numeric_dtype(col) and col.dtype != bool, name
    assert rows["committee_roles_covered"].between(0, 6).all()
    assert rows["committee_roles_engaged_90d"].between(0, 6).all()
    assert (rows["committee_roles_engaged_90d"] > 0).any()


def test_feature_descriptions_are_complete():
    assert set(FEATURE_DESCRIPTIONS) == set(MODEL_FEATURES)
    for name, spec in FEATURE_DESCRIPTIONS.items():
        assert spec["description"], name
        if spec["type"] == "numeric":
            assert spec["template"].format(value=3.0), name
        elif spec["type"] == "boolean":
            assert spec["true_text"] and spec["false_text"], name
        else:
            assert spec["type"] == "categorical", name
            assert "software" in spec["template"].format(value="software"), name


def test_passthrough_and_row_order(world: World, rows: pd.DataFrame):
    sample = rows.sample(25, random_state=0)
    cut = pd.DataFrame(
        {
            ACCOUNT_ID: sample[ACCOUNT_ID].to_numpy(),
            AS_OF: sample[CREATED_AT].to_numpy(),
            "tag": sample[ROW_ID].to_numpy(),
        },
        index=sample.index * 7,
    )
    got = build_features(world, cut)
    assert got["tag"].tolist() == sample[ROW_ID].tolist()
    assert list(got.index) == list(range(25))
    pd.testing.assert_frame_equal(
        got[list(FEATURE_COLUMNS)], sample[list(FEATURE_COLUMNS)].reset_index(drop=True)
    )


def test_bad_cutoffs_raise(world: World):
    with pytest.raises(KeyError):
        build_features(world, pd.DataFrame({ACCOUNT_ID: ["A0000001"]}))
    with pytest.raises(KeyError):
        build_features(world, pd.DataFrame({ACCOUNT_ID: ["nope"], AS_OF: [world.as_of]}))
    with pytest.raises(ValueError):
        build_features(world, pd.DataFrame({ACCOUNT_ID: ["A0000001"], AS_OF: [pd.NaT]}))


# --- agrees with a slow, obvious implementation ------------------------------------------------


def test_matches_brute_force(world: World, rows: pd.DataFrame):
    act = _plain(world.activities)
    con = _plain(world.contacts)
    opp = _plain(world.opportunities)
    intent = _plain(world.intent)
    for _, row in rows.sample(40, random_state=1).iterrows():
        a, t = row[ACCOUNT_ID], row[CREATED_AT]
        mine = act[(act[ACCOUNT_ID] == a) & (act["occurred_at"] < t)]
        web = mine[mine["channel"] == "web_visit"]
        assert row["web_visits_30d"] == (web["occurred_at"] >= t - 30 * DAY).sum()
        assert row["web_visits_90d"] == (web["occurred_at"] >= t - 90 * DAY).sum()
        assert row["total_touches"] == len(mine)
        recent_meet = mine[
            (mine["channel"] == "sales_meeting") & (mine["occurred_at"] >= t - 30 * DAY)
        ]
        assert row["sales_meetings_30d"] == len(recent_meet)
        pages = web.loc[web["occurred_at"] >= t - 30 * DAY, "pages"].sum()
        assert row["web_pages_30d"] == pytest.approx(pages)
        if len(mine):
            gap = (t - mine["occurred_at"].max()) / DAY
            assert row["days_since_last_touch"] == pytest.approx(gap, abs=1e-4)
        else:
            assert np.isnan(row["days_since_last_touch"])

        known = con[(con[ACCOUNT_ID] == a) & (con[CREATED_AT] < t)]
        roles = set(known["role"])
        assert row["has_economic_buyer"] == ("economic_buyer" in roles)
        assert row["has_champion"] == ("champion" in roles)
        assert row["committee_roles_covered"] == len(roles)
        assert row["contacts_in_crm"] == len(known)
        touched = mine[
            (mine["occurred_at"] >= t - 90 * DAY) & mine["contact_id"].isin(known["contact_id"])
        ]
        engaged = set(known.set_index("contact_id").loc[touched["contact_id"], "role"])
        assert row["committee_roles_engaged_90d"] == len(engaged)
        assert row["economic_buyer_engaged_90d"] == ("economic_buyer" in engaged)

        done = opp[(opp[ACCOUNT_ID] == a) & (opp[CLOSED_AT] < t)]
        assert row["prior_won_deals"] == (done[OUTCOME] == WON).sum()
        assert row["prior_lost_deals"] == (done[OUTCOME] == "lost").sum()

        weeks = intent[(intent[ACCOUNT_ID] == a) & (intent["week_start"] + 7 * DAY <= t)]
        if len(weeks):
            last = weeks["week_start"].max()
            # The latest complete week is the latest week of the calendar, not of the data.
            latest_complete = t.normalize() - pd.Timedelta(days=t.weekday()) - 7 * DAY
            expected = weeks.loc[weeks["week_start"] == latest_complete, "score"].max()
            assert row["intent_score_latest"] == (0 if np.isnan(expected) else expected)
            assert last <= latest_complete
        else:
            assert row["intent_score_latest"] == 0


# --- point in time -----------------------------------------------------------------------------


def test_future_events_never_change_a_row(world: World, rows: pd.DataFrame):
    """Append activities, contacts, intent and deals on/after each account's last cut-off."""
    last_cut = rows.groupby(ACCOUNT_ID)[CREATED_AT].max()
    accounts = last_cut.index.to_numpy()
    at = last_cut.to_numpy()
    n = len(accounts)
    some_contact = world.contacts.groupby(ACCOUNT_ID, observed=True)["contact_id"].first()
    contact = some_contact.reindex(accounts).astype(object).to_numpy()
    activities = pd.concat(
        [
            pd.DataFrame(
                {
                    ACCOUNT_ID: accounts,
                    "contact_id": contact,
                    "occurred_at": at + offset,
                    "channel": channel,
                    "pages": np.float32(3.0) if channel == "web_visit" else np.float32(np.nan),
                    "seconds_on_site": np.float32(np.nan),
                }
            )
            for offset, channel in (
                (pd.Timedelta(0), "web_visit"),
                (pd.Timedelta(0), "sales_meeting"),
                (SECOND, "email_click"),
                (3 * DAY, "content_download"),
            )
        ],
        ignore_index=True,
    )
    new_ids = [f"C9{i:07d}" for i in range(n)]
    contacts = pd.DataFrame(
        {
            "contact_id": new_ids,
            ACCOUNT_ID: accounts,
            "role": "economic_buyer",
            "title": "CFO",
            CREATED_AT: at,
        }
    )
    week_start = pd.DatetimeIndex(at).normalize() - pd.to_timedelta(
        pd.DatetimeIndex(at).day_of_week, unit="D"
    )
    intent = pd.DataFrame(
        {
            ACCOUNT_ID: accounts,
            "week_start": week_start,
            "topic": "sales_intelligence",
            "score": np.int16(99),
        }
    )
    opportunities = pd.DataFrame(
        {
            "opportunity_id": [f"O9{i:07d}" for i in range(n)],
            ACCOUNT_ID: accounts,
            CREATED_AT: at - 20 * DAY,
            CLOSED_AT: at,
            OUTCOME: WON,
            AMOUNT: 50_000.0,
            "source": "inbound",
        }
    )
    future = _with(
        world,
        activities=activities,
        contacts=contacts,
        intent=intent,
        opportunities=opportunities,
    )
    again = build_training_rows(future)
    again = again[again[ROW_ID].isin(rows[ROW_ID])].reset_index(drop=True)
    pd.testing.assert_frame_equal(again, rows)


def test_future_events_do_change_a_later_row(world: World, rows: pd.DataFrame):
    """The same kind of additions must show up for a cut-off after them (the test has teeth)."""
    row = rows.iloc[0]
    a, t = row[ACCOUNT_ID], row[CREATED_AT]
    future = _with(
        world,
        activities=_activity(a, t, "web_visit", pages=2.0),
        contacts=pd.DataFrame(
            {
                "contact_id": ["C99999999"],
                ACCOUNT_ID: [a],
                "role": ["economic_buyer"],
                "title": ["CFO"],
                CREATED_AT: [t],
            }
        ),
    )
    before = _one(future, a, t)
    after = _one(future, a, t + SECOND)
    assert after["web_visits_30d"] == before["web_visits_30d"] + 1
    assert after["contacts_in_crm"] == before["contacts_in_crm"] + 1
    assert after["has_economic_buyer"]


def test_contact_joining_at_the_cutoff_does_not_count_as_engaged(world: World, rows: pd.DataFrame):
    """A touch before the cut-off is known, but whose it was (the role) is not until the
    contact is on record."""
    row = rows[~rows["has_economic_buyer"]].iloc[0]
    a, t = row[ACCOUNT_ID], row[CREATED_AT]
    new = pd.DataFrame(
        {
            "contact_id": ["C99999999"],
            ACCOUNT_ID: [a],
            "role": ["economic_buyer"],
            "title": ["CFO"],
            CREATED_AT: [t],
        }
    )
    touch = _activity(a, t - DAY, "email_click", "C99999999")
    got = _one(_with(world, contacts=new, activities=touch), a, t)
    assert got["email_clicks_30d"] == row["email_clicks_30d"] + 1
    assert not got["has_economic_buyer"] and not got["economic_buyer_engaged_90d"]
    assert got["committee_roles_engaged_90d"] == row["committee_roles_engaged_90d"]
    new[CREATED_AT] = t - 2 * DAY
    got = _one(_with(world, contacts=new, activities=touch), a, t)
    assert got["has_economic_buyer"] and got["economic_buyer_engaged_90d"]


def test_boundary_on_the_cutoff_is_excluded(world: World, rows: pd.DataFrame):
    row = rows.iloc[len(rows) // 2]
    a, t = row[ACCOUNT_ID], row[CREATED_AT]
    base = _one(world, a, t)
    on = _with(world, activities=_activity(a, t, "web_visit", pages=1.0))
    assert _one(on, a, t)["web_visits_30d"] == base["web_visits_30d"]
    just_before = _with(world, activities=_activity(a, t - SECOND, "web_visit", pages=1.0))
    got = _one(just_before, a, t)
    assert got["web_visits_30d"] == base["web_visits_30d"] + 1
    assert got["days_since_last_touch"] == pytest.approx(1 / 86_400)
    too_old = _with(world, activities=_activity(a, t - 30 * DAY - SECOND, "web_visit"))
    assert _one(too_old, a, t)["web_visits_30d"] == base["web_visits_30d"]


def test_removing_an_activity_before_the_cutoff_changes_the_count(world: World, rows: pd.DataFrame):
    act = world.activities
    row = rows[rows["web_visits_30d"] > 0].iloc[0]
    a, t = row[ACCOUNT_ID], row[CREATED_AT]
    hit = act.index[
        (act[ACCOUNT_ID].astype(str) == a)
        & (act["channel"].astype(str) == "web_visit")
        & (act["occurred_at"] < t)
        & (act["occurred_at"] >= t - 30 * DAY)
    ]
    assert len(hit) == row["web_visits_30d"]
    fewer = _one(_without(world, "activities", hit[:1]), a, t)
    assert fewer["web_visits_30d"] == row["web_visits_30d"] - 1
    assert fewer["total_touches"] == row["total_touches"] - 1


def test_intent_counts_only_complete_weeks(world: World):
    a = world.accounts[ACCOUNT_ID].iloc[0]
    t = pd.Timestamp("2025-03-12 10:00")  # a Wednesday
    clean = _without(world, "intent", world.intent.index[world.intent[ACCOUNT_ID] == a])
    this_week = pd.Timestamp("2025-03-10")
    last_week = pd.Timestamp("2025-03-03")
    rows = pd.DataFrame(
        {
            ACCOUNT_ID: [a] * 3,
            "week_start": [this_week, last_week, last_week - 21 * DAY],
            "topic": ["sales_intelligence", "revenue_operations", "revenue_operations"],
            "score": np.array([95, 70, 40], np.int16),
        }
    )
    got = _one(_with(clean, intent=rows), a, t)
    assert got["intent_score_latest"] == 70  # the unfinished week of 10 March is not used
    assert got["intent_trend_4w"] == pytest.approx((3 * 70 - 3 * 40) / 10)
    assert got["intent_score_avg_4w"] == pytest.approx((70 + 40) / 4)
    assert got["intent_topics_active_4w"] == 1
    # A week becomes usable exactly when it is over.
    assert _one(_with(clean, intent=rows), a, this_week + 7 * DAY)["intent_score_latest"] == 95
    # A vendor week that does not start on a Monday is used only once it is over too.
    odd = rows.iloc[:1].assign(week_start=pd.Timestamp("2025-03-05"))  # a Wednesday
    assert _one(_with(clean, intent=odd), a, pd.Timestamp("2025-03-10"))["intent_score_latest"] == 0
    assert (
        _one(_with(clean, intent=odd), a, pd.Timestamp("2025-03-19"))["intent_score_latest"] == 95
    )


def test_prior_deals_count_only_when_closed_before(world: World):
    a = world.accounts[ACCOUNT_ID].iloc[1]
    t = pd.Timestamp("2025-06-01 12:00")
    base = _one(world, a, t)

    def deal(closed: pd.Timestamp) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "opportunity_id": ["O99999999"],
                ACCOUNT_ID: [a],
                CREATED_AT: [t - 60 * DAY],
                CLOSED_AT: [closed],
                OUTCOME: [WON],
                AMOUNT: [1000.0],
                "source": ["inbound"],
            }
        )

    assert (
        _one(_with(world, opportunities=deal(t)), a, t)["prior_won_deals"]
        == base["prior_won_deals"]
    )
    assert _one(_with(world, opportunities=deal(t - SECOND)), a, t)["prior_won_deals"] == (
        base["prior_won_deals"] + 1
    )


def test_string_keys_give_the_same_features(world: World, rows: pd.DataFrame):
    """Loaders from CSV/SQL hand over plain strings, not categoricals."""
    plain = World(
        accounts=world.accounts,
        contacts=_plain(world.contacts),
        activities=_plain(world.activities),
        intent=_plain(world.intent),
        opportunities=_plain(world.opportunities),
        as_of=world.as_of,
        start=world.start,
    )
    pd.testing.assert_frame_equal(build_training_rows(plain), rows)


# --- scoring -----------------------------------------------------------------------------------


def test_scoring_rows(world: World):
    scored = build_scoring_rows(world, world.as_of)
    assert len(scored) == len(world.accounts)
    assert (scored[ROW_ID] == scored[ACCOUNT_ID]).all()
    assert scored[ACCOUNT_ID].tolist() == world.accounts[ACCOUNT_ID].astype(str).tolist()
    for col in (AMOUNT, "source", *FEATURE_COLUMNS):
        assert col in scored.columns
    assert scored[AMOUNT].notna().all() and (scored[AMOUNT] > 0).all()
    assert scored["source"].notna().all()
    # At the world's end every event is in the past.
    touches = world.activities.groupby(ACCOUNT_ID, observed=False).size()
    assert scored["total_touches"].tolist() == touches.reindex(scored[ACCOUNT_ID]).tolist()
    # Accounts with a deal still open carry that deal's amount and source.
    opp = world.opportunities
    still_open = opp[opp[OUTCOME].astype(str) == OPEN].sort_values(CREATED_AT)
    latest = still_open.drop_duplicates(ACCOUNT_ID, keep="last").set_index(
        still_open.drop_duplicates(ACCOUNT_ID, keep="last")[ACCOUNT_ID].astype(str)
    )
    got = scored.set_index(ACCOUNT_ID).loc[latest.index]
    np.testing.assert_allclose(got[AMOUNT], latest[AMOUNT])
    assert (got["source"] == latest["source"].astype(str)).all()


def test_scoring_rows_are_point_in_time(world: World):
    when = pd.Timestamp("2025-01-01")
    early = build_scoring_rows(world, when)
    later = _with(
        world, activities=_activity(world.accounts[ACCOUNT_ID].iloc[0], when, "web_visit")
    )
    pd.testing.assert_frame_equal(build_scoring_rows(later, when), early)
    assert (early[AS_OF] == when).all()
    assert (early["total_touches"] <= build_scoring_rows(world, world.as_of)["total_touches"]).all()
