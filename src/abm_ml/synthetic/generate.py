"""`generate_world`: draw a synthetic ABM world with planted ground truth, seed in, tables out.

The draws live in :mod:`abm_ml.synthetic.crm` (accounts, opportunities, contacts) and
:mod:`abm_ml.synthetic.engagement` (activities, intent); this module runs them on independent
random streams and builds the frames of the :class:`~abm_ml.synthetic.world.World`.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from abm_ml.schema import ACCOUNT_ID, AMOUNT, CLOSED_AT, CREATED_AT, LOST, OPEN, OUTCOME, WON
from abm_ml.synthetic.crm import HISTORY_DAYS, draw_accounts, draw_contacts, draw_opportunities
from abm_ml.synthetic.engagement import draw_activities, draw_intent
from abm_ml.synthetic.sampling import (
    categorical,
    format_ids,
    secs_to_timestamps,
    to_dates,
    to_timestamps,
)
from abm_ml.synthetic.world import (
    CHANNELS,
    INDUSTRIES,
    REGIONS,
    ROLES,
    SEGMENTS,
    SOURCES,
    TECH_STACKS,
    TOPICS,
    World,
)


def generate_world(
    n_accounts: int = 5000,
    seed: int = 7,
    start: str | date = "2024-01-01",
    end: str | date = "2026-06-30",
) -> World:
    """Generate a synthetic ABM world with planted ground truth.

    Args:
        n_accounts: Number of accounts.
        seed: Seed of every random draw; the same seed gives identical frames.
        start: First day of the world.
        end: The world's end (``World.as_of``); every event happens strictly before it and
            opportunities not closed by then are ``open``.

    Returns:
        The generated :class:`World`.

    Raises:
        ValueError: If ``n_accounts`` < 1 or the period is shorter than 120 days.
    """
    if n_accounts < 1:
        raise ValueError("n_accounts must be >= 1")
    t0 = pd.Timestamp(start).normalize()
    t_end = pd.Timestamp(end).normalize()
    horizon = float((t_end - t0).days)
    if horizon < HISTORY_DAYS + 30:
        raise ValueError("the world needs at least 120 days between start and end")

    # Independent streams per table, so changing one table's draws leaves the others alone.
    seeds = np.random.SeedSequence(seed).spawn(5)
    rng_acc, rng_opp, rng_con, rng_act, rng_int = (np.random.default_rng(s) for s in seeds)

    acc = draw_accounts(rng_acc, n_accounts)
    opp = draw_opportunities(rng_opp, acc, horizon)
    con = draw_contacts(rng_con, acc, opp, horizon)
    act = draw_activities(rng_act, acc, opp, con, horizon)
    intent = draw_intent(rng_int, acc, opp, t0, t_end)

    accounts = _accounts_frame(acc)
    acc_dtype = pd.CategoricalDtype(accounts[ACCOUNT_ID].array)
    contacts = _contacts_frame(con, acc_dtype, t0)
    con_dtype = pd.CategoricalDtype(contacts["contact_id"].array)
    activities = pd.DataFrame(
        {
            ACCOUNT_ID: pd.Categorical.from_codes(act["acc"], dtype=acc_dtype),
            "contact_id": pd.Categorical.from_codes(act["contact"], dtype=con_dtype),
            "occurred_at": secs_to_timestamps(t0, act.pop("secs")),
            "channel": categorical(act["channel"], CHANNELS),
            "pages": act["pages"],
            "seconds_on_site": act["seconds"],
        },
        copy=False,
    )
    del act
    intent_df = pd.DataFrame(
        {
            ACCOUNT_ID: pd.Categorical.from_codes(intent["acc"], dtype=acc_dtype),
            "week_start": intent["week_start"],
            "topic": categorical(intent["topic"], TOPICS),
            "score": intent["score"],
        },
        copy=False,
    )
    del intent
    opportunities = _opportunities_frame(opp, acc_dtype, t0)
    return World(
        accounts=accounts,
        contacts=contacts,
        activities=activities,
        intent=intent_df,
        opportunities=opportunities,
        as_of=t_end,
        start=t0,
        seed=seed,
    )


def _accounts_frame(acc: dict) -> pd.DataFrame:
    n = acc["n"]
    ids = format_ids("A", np.arange(1, n + 1), 7)
    parent = np.where(acc["parent"] >= 0, ids[np.maximum(acc["parent"], 0)], None)
    return pd.DataFrame(
        {
            ACCOUNT_ID: ids,
            "name": acc["name"],
            "industry": categorical(acc["industry"], INDUSTRIES),
            "region": categorical(acc["region"], REGIONS),
            "employees": acc["employees"],
            "annual_revenue": acc["revenue"],
            "segment": categorical(acc["segment"], SEGMENTS),
            "uses_competitor": acc["uses_competitor"],
            "tech_stack": categorical(acc["tech"], TECH_STACKS),
            "parent_account_id": parent,
            "owner_assigned": acc["owner_assigned"],
            "owner": pd.Categorical.from_codes(acc["owner"], categories=acc["reps"]),
            "founded_year": acc["founded_year"],
            "fiscal_year_end_month": acc["fiscal_month"],
            "crm_data_quality": acc["data_quality"],
        }
    )


def _contacts_frame(con: dict, acc_dtype: pd.CategoricalDtype, t0: pd.Timestamp) -> pd.DataFrame:
    k = len(con["acc"])
    return pd.DataFrame(
        {
            "contact_id": format_ids("C", np.arange(1, k + 1), 8),
            ACCOUNT_ID: pd.Categorical.from_codes(con["acc"], dtype=acc_dtype),
            "role": categorical(con["role"], ROLES),
            "title": categorical(con["title"], con["title_pool"]),
            CREATED_AT: to_dates(t0, con["created"]),
        }
    )


def _opportunities_frame(opp: dict, acc_dtype: pd.CategoricalDtype, t0: pd.Timestamp):
    m = opp["m"]
    outcome = np.where(opp["is_open"], 2, np.where(opp["won"], 0, 1)).astype(np.int8)
    closed = to_timestamps(t0, opp["close"])
    closed[opp["is_open"]] = np.datetime64("NaT")
    return pd.DataFrame(
        {
            "opportunity_id": format_ids("O", np.arange(1, m + 1), 8),
            ACCOUNT_ID: pd.Categorical.from_codes(opp["acc"], dtype=acc_dtype),
            CREATED_AT: to_timestamps(t0, opp["t"]),
            CLOSED_AT: closed,
            OUTCOME: categorical(outcome, (WON, LOST, OPEN)),
            AMOUNT: opp["amount"],
            "source": categorical(opp["source"], SOURCES),
        }
    )
