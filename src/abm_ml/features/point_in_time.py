"""Point-in-time feature builder shared by training and scoring.

Every feature of a row is computed only from what was known strictly before that row's
cut-off ``as_of``:

* activities with ``occurred_at < as_of``;
* contacts with ``created_at < as_of``; a contact holds a buying-committee role from its own
  ``created_at`` (role or title on the contact) or from ``max(contact created_at, contact
  role created_at)`` (a role on a deal, Salesforce's OpportunityContactRole); a contact's
  touch in the window counts for a role only when the role was on record before ``as_of``;
* intent weeks with ``week_start + 7 days <= as_of`` (complete weeks only);
* prior opportunities with ``closed_at < as_of``.

Account firmographics are a snapshot without history and are used as they are.

The builder reads :class:`~abm_ml.data.tables.CrmTables`, whoever produced them: a CRM export
read through a multi-table spec (:func:`abm_ml.data.tables.load_tables`) or the synthetic
world (:meth:`CrmTables.from_world`). Two row shapes come out of it:

* :func:`build_opportunity_rows`: each opportunity as of its creation (training rows);
* :func:`build_account_rows`: each account as of one or many dates (scoring rows, monthly
  snapshots), with the number of deals open at that date.

:func:`build_training_rows` and :func:`build_scoring_rows` keep the world-based entry points.

The feature names, order and descriptions live in :mod:`abm_ml.features.columns`; the sorted
event keys that make a window count two ``np.searchsorted`` calls live in
:mod:`abm_ml.features.events`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from abm_ml.data.roles import ROLES
from abm_ml.data.tables import CHANNELS, CrmTables
from abm_ml.features.columns import (
    AS_OF,
    CATEGORICAL,
    FEATURE_COLUMNS,
    FIRMOGRAPHIC_BOOL,
    FIRMOGRAPHIC_NUMERIC,
    NOISE,
    SOURCE,
    WINDOW_COUNTS,
)
from abm_ml.features.events import (
    NAT,
    NEVER,
    Events,
    as_str,
    factorize_codes,
    label_positions,
    pack_keys,
    positions,
    to_seconds,
)
from abm_ml.schema import (
    ACCOUNT_ID,
    AMOUNT,
    CLOSED_AT,
    CREATED_AT,
    DAYS_TO_CLOSE,
    LOST,
    OPEN,
    OUTCOME,
    ROW_ID,
    WON,
)

if TYPE_CHECKING:
    from abm_ml.synthetic.world import World

__all__ = [
    "OPEN_OPPORTUNITIES",
    "build_account_rows",
    "build_features",
    "build_opportunity_rows",
    "build_scoring_rows",
    "build_training_rows",
]

OPEN_OPPORTUNITIES = "open_opportunities"
"""Account rows: deals created before the as-of date and not closed before it."""


def _as_tables(source: CrmTables | World) -> CrmTables:
    return source if isinstance(source, CrmTables) else CrmTables.from_world(source)


# --------------------------------------------------------------------------------------------
# Feature builder
# --------------------------------------------------------------------------------------------


def build_features(world: CrmTables | World, cutoffs: pd.DataFrame) -> pd.DataFrame:
    """Compute account features as of each cut-off, from events strictly before it.

    Args:
        world: The tables read (a synthetic world is read as its tables).
        cutoffs: Columns ``account_id`` and ``as_of`` (timestamp); any other columns are
            passed through unchanged.

    Returns:
        One row per cut-off row, in the same order and with a fresh ``RangeIndex``: the
        cut-off columns followed by :data:`FEATURE_COLUMNS`.

    Raises:
        KeyError: If a required column is missing or an account is not in the world.
        ValueError: If an ``as_of`` is missing.
    """
    for col in (ACCOUNT_ID, AS_OF):
        if col not in cutoffs.columns:
            raise KeyError(f"cutoffs needs a {col!r} column")
    world = _as_tables(world)
    out = cutoffs.reset_index(drop=True).copy()
    acc_keys = pd.Index(world.accounts[ACCOUNT_ID].astype(str))
    acc = positions(out[ACCOUNT_ID], acc_keys)
    if (acc < 0).any():
        missing = out.loc[acc < 0, ACCOUNT_ID].astype(str).unique()[:5].tolist()
        raise KeyError(f"accounts not in the accounts table: {missing}")
    now = to_seconds(out[AS_OF])
    if (now == NAT).any():
        raise ValueError("every cut-off needs an as_of timestamp")

    # Sorted needles make the many searchsorted calls below walk memory in order.
    order = np.argsort(pack_keys(acc, now), kind="stable")
    acc, now = acc[order], now[order]
    feats: dict[str, np.ndarray] = {}
    act = _activity_arrays(world, acc_keys)
    feats.update(_activity_features(world, act, acc, now))
    feats.update(_committee_features(world, act, acc_keys, acc, now))
    del act
    feats.update(_intent_features(world, acc_keys, acc, now))
    feats.update(_firmographics(world, acc))
    feats.update(_deal_history(world, acc_keys, acc, now))
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    for name in FEATURE_COLUMNS:
        out[name] = feats.pop(name)[back]
    return out


def _activity_arrays(world: CrmTables, acc_keys: pd.Index) -> dict[str, np.ndarray]:
    """Account code, seconds, channel code and contact code of every activity, once."""
    act = world.activities
    return {
        "acc": positions(act[ACCOUNT_ID], acc_keys),
        "secs": to_seconds(act["occurred_at"]),
        "channel": label_positions(act["channel"], CHANNELS).astype(np.int8),
        "contact": positions(act["contact_id"], pd.Index(world.contacts["contact_id"].astype(str))),
    }


def _activity_features(world: CrmTables, act: dict, acc: np.ndarray, now: np.ndarray):
    a, t, ch = act["acc"], act["secs"], act["channel"]
    day = 86_400
    feats: dict[str, np.ndarray] = {}
    every = Events(a, t)
    for name, channel, days in WINDOW_COUNTS:
        if channel is None:
            feats[name] = every.count(acc, now - days * day, now)
    feats["total_touches"] = every.count(acc, np.full(len(acc), NEVER), now)
    last = every.last_before(acc, now)
    feats["days_since_last_touch"] = ((now - last) / day).astype(np.float32)
    del every
    for i, channel in enumerate(CHANNELS):
        sel = ch == i
        ev = Events(a[sel], t[sel])
        for name, c, days in WINDOW_COUNTS:
            if c == channel:
                feats[name] = ev.count(acc, now - days * day, now)
        if channel == "web_visit":
            pages = world.activities["pages"].to_numpy(dtype=np.float64, na_value=np.nan)[sel]
            ev = Events(a[sel], t[sel], pages)
            feats["web_pages_30d"] = ev.total(acc, now - 30 * day, now).astype(np.float32)
    return feats


def _committee_features(
    world: CrmTables, act: dict, acc_keys: pd.Index, acc: np.ndarray, now: np.ndarray
):
    con = world.contacts
    c_acc = positions(con[ACCOUNT_ID], acc_keys)
    c_created = to_seconds(con[CREATED_AT])
    c_role = label_positions(con["role"], ROLES)
    feats: dict[str, np.ndarray] = {}
    never = np.full(len(acc), NEVER)
    feats["contacts_in_crm"] = Events(c_acc, c_created).count(acc, never, now)

    # Role assignments (contact, role, known from): the contact's own role from its creation,
    # and each role it plays on a deal from when that was recorded (never before the contact).
    a_con = np.flatnonzero(c_role >= 0).astype(np.int64)
    a_role, a_from = c_role[a_con], c_created[a_con]
    roles_on_deals = world.contact_roles
    if roles_on_deals is not None and len(roles_on_deals):
        r_con = positions(roles_on_deals["contact_id"], pd.Index(as_str(con["contact_id"])))
        r_role = label_positions(roles_on_deals["role"], ROLES)
        r_from = to_seconds(roles_on_deals[CREATED_AT])
        ok = (r_con >= 0) & (r_role >= 0) & (r_from != NAT)
        r_con = r_con[ok].astype(np.int64)
        a_con = np.concatenate([a_con, r_con])
        a_role = np.concatenate([a_role, r_role[ok]])
        a_from = np.concatenate([a_from, np.maximum(r_from[ok], c_created[r_con])])
    a_acc = c_acc[a_con]
    has = np.stack(
        [
            Events(a_acc[a_role == r], a_from[a_role == r]).count(acc, never, now) > 0
            for r in range(len(ROLES))
        ],
        axis=1,
    )

    # Each identified touch counts once per role its contact holds.
    known = act["contact"] >= 0
    who = act["contact"][known]
    by_contact = np.argsort(a_con, kind="stable")
    sorted_con = a_con[by_contact]
    first = np.searchsorted(sorted_con, who, side="left")
    n_roles = np.searchsorted(sorted_con, who, side="right") - first
    touch = np.repeat(np.arange(len(who)), n_roles)
    offset = np.arange(len(touch)) - np.repeat(np.cumsum(n_roles) - n_roles, n_roles)
    assignment = by_contact[np.repeat(first, n_roles) + offset]
    del who, first, n_roles, offset
    e_acc = act["acc"][known][touch]
    e_secs = act["secs"][known][touch]
    e_from = a_from[assignment]
    e_role = a_role[assignment]
    del known, touch, assignment
    window = 90 * 86_400
    # A touch in [now - 90 d, now) counts for a role known before now. A touch after the role
    # was known is a plain window count; one before it counts while now is in (known from,
    # touch + 90 d]: starts before now minus ends before now (intervals with an end before
    # their start never count).
    after = e_secs >= e_from
    late = ~after & (e_from < e_secs + window)
    engaged = np.stack(
        [
            (
                Events(e_acc[after & (e_role == r)], e_secs[after & (e_role == r)]).count(
                    acc, now - window, now
                )
                + Events(e_acc[late & (e_role == r)], e_from[late & (e_role == r)]).count(
                    acc, never, now
                )
                - Events(e_acc[late & (e_role == r)], e_secs[late & (e_role == r)] + window).count(
                    acc, never, now
                )
            )
            > 0
            for r in range(len(ROLES))
        ],
        axis=1,
    )
    eb, ch, pr = (ROLES.index(r) for r in ("economic_buyer", "champion", "procurement"))
    feats["has_economic_buyer"] = has[:, eb]
    feats["has_champion"] = has[:, ch]
    feats["has_procurement"] = has[:, pr]
    feats["committee_roles_covered"] = has.sum(axis=1).astype(np.int8)
    feats["economic_buyer_engaged_90d"] = engaged[:, eb]
    feats["champion_engaged_90d"] = engaged[:, ch]
    feats["procurement_engaged_90d"] = engaged[:, pr]
    feats["committee_roles_engaged_90d"] = engaged.sum(axis=1).astype(np.int8)
    return feats


def _intent_features(world: CrmTables, acc_keys: pd.Index, acc: np.ndarray, now: np.ndarray):
    intent = world.intent
    week = 7 * 86_400
    # Weeks are numbered from a Monday; rows are rounded UP to a week so a row whose week is
    # not yet over is never mistaken for the last complete one.
    epoch = int(pd.Timestamp("1970-01-05").value // 1_000_000_000)
    i_acc = positions(intent[ACCOUNT_ID], acc_keys)
    i_week = to_seconds(intent["week_start"])
    nat = i_week == NAT
    i_week[nat] = epoch
    i_week -= epoch
    np.negative(i_week, out=i_week)
    np.floor_divide(i_week, week, out=i_week)
    np.negative(i_week, out=i_week)
    np.clip(i_week, 0, (1 << 31) - 1, out=i_week)
    i_topic = factorize_codes(intent["topic"])
    score = intent["score"].to_numpy(dtype=np.float32, na_value=np.nan)
    ok = (i_acc >= 0) & (i_topic >= 0) & ~np.isnan(score) & ~nat
    if not ok.all():
        i_acc, i_week, i_topic, score = i_acc[ok], i_week[ok], i_topic[ok], score[ok]
    del ok, nat
    # Highest score over topics per account-week; the table usually arrives sorted.
    key = i_acc.astype(np.int64)
    key <<= 32
    key += i_week
    if len(key) > 1 and not (key[1:] >= key[:-1]).all():
        order = np.argsort(key, kind="stable")
        key, score = key[order], score[order]
        del order
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, int)
    w_keys = key[starts]
    w_score = np.maximum.reduceat(score, starts) if len(key) else np.zeros(0, np.float32)
    del key, score

    last_complete = np.floor_divide(now - week - epoch, week)
    slots = []
    for back in range(4):
        q = (acc.astype(np.int64) << 32) + (last_complete - back)
        pos = np.searchsorted(w_keys, q)
        safe = np.minimum(pos, max(len(w_keys) - 1, 0))
        hit = (pos < len(w_keys)) & (w_keys[safe] == q) if len(w_keys) else np.zeros(len(q), bool)
        # Vendors report only above their threshold, so a missing week means "low": zero.
        slots.append(np.where(hit, w_score[safe] if len(w_keys) else 0.0, 0.0).astype(np.float64))
    s = np.stack(slots, axis=1)  # column 0 is the most recent week
    feats: dict[str, np.ndarray] = {
        "intent_score_latest": s[:, 0].astype(np.float32),
        "intent_score_avg_4w": s.mean(axis=1).astype(np.float32),
        # Least-squares slope over four equally spaced weeks, oldest to newest.
        "intent_trend_4w": ((3 * s[:, 0] + s[:, 1] - s[:, 2] - 3 * s[:, 3]) / 10.0).astype(
            np.float32
        ),
    }
    # Distinct topics reported in the window; vendors cover a handful, so loop over topics.
    n_topics = np.zeros(len(acc), np.int8)
    for k in np.unique(i_topic):
        ev = Events(i_acc[i_topic == k], i_week[i_topic == k])
        n_topics += ev.count(acc, last_complete - 3, last_complete + 1) > 0
    feats["intent_topics_active_4w"] = n_topics
    return feats


def _firmographics(world: CrmTables, acc: np.ndarray) -> dict[str, np.ndarray]:
    a = world.accounts
    feats: dict[str, np.ndarray] = {}
    for col in CATEGORICAL:
        feats[col] = as_str(a[col])[acc]
    for col in FIRMOGRAPHIC_NUMERIC:
        feats[col] = a[col].to_numpy(dtype=np.float64, na_value=np.nan)[acc]
    for col in FIRMOGRAPHIC_BOOL:
        feats[col] = a[col].astype("boolean").fillna(False).to_numpy(dtype=bool)[acc]
    feats["has_parent"] = a["parent_account_id"].notna().to_numpy()[acc]
    for col in NOISE:
        feats[col] = a[col].to_numpy()[acc]
    return feats


def _deal_history(world: CrmTables, acc_keys: pd.Index, acc: np.ndarray, now: np.ndarray):
    opp = world.opportunities
    o_acc = positions(opp[ACCOUNT_ID], acc_keys)
    closed = to_seconds(opp[CLOSED_AT])
    outcome = label_positions(opp[OUTCOME], (WON, LOST, OPEN))
    never = np.full(len(acc), NEVER)
    won = outcome == 0
    lost = outcome == 1
    return {
        "prior_won_deals": Events(o_acc[won], closed[won]).count(acc, never, now).astype(np.int16),
        "prior_lost_deals": Events(o_acc[lost], closed[lost])
        .count(acc, never, now)
        .astype(np.int16),
    }


# --------------------------------------------------------------------------------------------
# Training and scoring rows
# --------------------------------------------------------------------------------------------


def build_opportunity_rows(tables: CrmTables | World) -> pd.DataFrame:
    """One row per opportunity with the features as of its creation (the training rows).

    Args:
        tables: The tables to read (a synthetic world is read as its tables).

    Returns:
        Columns ``row_id`` (the opportunity id), ``account_id``, ``outcome``, ``created_at``,
        ``closed_at``, ``days_to_close`` (float days, NaN while open), ``amount``, ``source``,
        then :data:`FEATURE_COLUMNS`.
    """
    tables = _as_tables(tables)
    opp = tables.opportunities
    created = pd.to_datetime(opp[CREATED_AT])
    closed = pd.to_datetime(opp[CLOSED_AT])
    cutoffs = pd.DataFrame(
        {
            ROW_ID: as_str(opp["opportunity_id"]),
            ACCOUNT_ID: as_str(opp[ACCOUNT_ID]),
            OUTCOME: as_str(opp[OUTCOME]),
            CREATED_AT: created.to_numpy(),
            CLOSED_AT: closed.to_numpy(),
            DAYS_TO_CLOSE: ((closed - created).dt.total_seconds() / 86_400.0).to_numpy(),
            AMOUNT: opp[AMOUNT].to_numpy(dtype=np.float64, na_value=np.nan),
            SOURCE: as_str(opp[SOURCE]),
            AS_OF: created.to_numpy(),
        }
    )
    return build_features(tables, cutoffs).drop(columns=[AS_OF])


def build_account_rows(tables: CrmTables | World, as_of) -> pd.DataFrame:
    """One row per account and as-of date, with the features as of that date.

    The rows for monthly snapshots (propensity to buy within a horizon) and for scoring.

    Args:
        tables: The tables to read (a synthetic world is read as its tables).
        as_of: One date or a sequence of dates (anything ``pd.to_datetime`` accepts).

    Returns:
        Columns ``account_id``, ``as_of``, ``open_opportunities`` (deals created before
        ``as_of`` and not closed before it), then :data:`FEATURE_COLUMNS`; ordered by date,
        then by the accounts table's order.
    """
    tables = _as_tables(tables)
    dates = pd.DatetimeIndex(pd.to_datetime(np.atleast_1d(np.asarray(as_of, dtype=object))))
    if dates.isna().any():
        raise ValueError("every as_of date must be a date")
    ids = as_str(tables.accounts[ACCOUNT_ID])
    n = len(ids)
    when = np.repeat(dates.to_numpy(dtype="datetime64[ns]"), n)
    acc = np.tile(np.arange(n), len(dates))
    opp = tables.opportunities
    o_acc = positions(opp[ACCOUNT_ID], pd.Index(ids))
    opened = Events(o_acc, to_seconds(opp[CREATED_AT]))
    closed = Events(o_acc, to_seconds(opp[CLOSED_AT]))
    secs = to_seconds(pd.Series(when))
    never = np.full(len(acc), NEVER)
    cutoffs = pd.DataFrame(
        {
            ACCOUNT_ID: ids[acc],
            AS_OF: when,
            OPEN_OPPORTUNITIES: (
                opened.count(acc, never, secs) - closed.count(acc, never, secs)
            ).astype(np.int32),
        }
    )
    return build_features(tables, cutoffs)


def build_training_rows(world: CrmTables | World) -> pd.DataFrame:
    """One row per opportunity with the features as of its creation.

    The world-based name of :func:`build_opportunity_rows` (same columns).
    """
    return build_opportunity_rows(world)


def build_scoring_rows(world: CrmTables | World, as_of) -> pd.DataFrame:
    """One row per account with the features as of ``as_of``.

    The deal attributes come from the account's latest opportunity still open at ``as_of``;
    accounts without one get the median amount of their segment's deals created before
    ``as_of`` and source ``"outbound"`` (the rep would reach out).

    Args:
        world: The tables to read (a synthetic world is read as its tables).
        as_of: Scoring time (anything ``pd.Timestamp`` accepts).

    Returns:
        Columns ``row_id`` (= ``account_id``), ``account_id``, ``as_of``, ``amount``,
        ``source``, then :data:`FEATURE_COLUMNS`.
    """
    world = _as_tables(world)
    as_of = pd.Timestamp(as_of)
    accounts = world.accounts
    ids = as_str(accounts[ACCOUNT_ID])
    n = len(ids)
    opp = world.opportunities
    acc_keys = pd.Index(ids)
    o_acc = positions(opp[ACCOUNT_ID], acc_keys)
    created = pd.to_datetime(opp[CREATED_AT])
    closed = pd.to_datetime(opp[CLOSED_AT])
    amount = opp[AMOUNT].to_numpy(dtype=np.float64, na_value=np.nan)
    seen = (created < as_of).to_numpy()
    still_open = seen & ~(closed < as_of).to_numpy()

    # Expected deal size by segment from deals already created, overall median as fallback.
    segment = as_str(accounts["segment"])
    seg_of_opp = segment[np.maximum(o_acc, 0)]
    hist = pd.DataFrame(
        {"segment": seg_of_opp[seen & (o_acc >= 0)], "amount": amount[seen & (o_acc >= 0)]}
    )
    overall = float(np.nanmedian(hist["amount"])) if hist["amount"].notna().any() else 25_000.0
    by_seg = hist.groupby("segment")["amount"].median()
    exp_amount = (
        pd.Series(segment).map(by_seg).fillna(overall).to_numpy(dtype=np.float64, copy=True)
    )
    exp_source = np.full(n, "outbound", dtype=object)

    idx = np.flatnonzero(still_open & (o_acc >= 0))
    if len(idx):
        latest = (
            pd.DataFrame({"acc": o_acc[idx], "t": created.to_numpy()[idx], "i": idx})
            .sort_values(["acc", "t"])
            .drop_duplicates("acc", keep="last")
        )
        pick = latest["i"].to_numpy()
        exp_amount[latest["acc"].to_numpy()] = amount[pick]
        exp_source[latest["acc"].to_numpy()] = as_str(opp[SOURCE])[pick]
    cutoffs = pd.DataFrame(
        {
            ROW_ID: ids,
            ACCOUNT_ID: ids,
            AS_OF: np.full(n, as_of.to_datetime64()).astype("datetime64[ns]"),
            AMOUNT: exp_amount,
            SOURCE: exp_source,
        }
    )
    return build_features(world, cutoffs)
