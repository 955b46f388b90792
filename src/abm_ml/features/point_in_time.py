"""Point-in-time feature builder shared by training and scoring.

Every feature of a row is computed only from what was known strictly before that row's
cut-off ``as_of``:

* activities with ``occurred_at < as_of``;
* contacts with ``created_at < as_of`` (and a contact's engagement counts only from
  ``max(occurred_at, contact created_at) < as_of``, i.e. once both the touch and the role
  were on record);
* intent weeks with ``week_start + 7 days <= as_of`` (complete weeks only);
* prior opportunities with ``closed_at < as_of``.

Account firmographics are a snapshot without history and are used as they are.

The feature names, order and descriptions live in :mod:`abm_ml.features.columns`; the sorted
event keys that make a window count two ``np.searchsorted`` calls live in
:mod:`abm_ml.features.events`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

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
from abm_ml.synthetic.world import CHANNELS, ROLES

if TYPE_CHECKING:
    from abm_ml.synthetic.world import World

__all__ = ["build_features", "build_scoring_rows", "build_training_rows"]


# --------------------------------------------------------------------------------------------
# Feature builder
# --------------------------------------------------------------------------------------------


def build_features(world: World, cutoffs: pd.DataFrame) -> pd.DataFrame:
    """Compute account features as of each cut-off, from events strictly before it.

    Args:
        world: The world whose tables are read.
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
    out = cutoffs.reset_index(drop=True).copy()
    acc_keys = pd.Index(world.accounts[ACCOUNT_ID].astype(str))
    acc = positions(out[ACCOUNT_ID], acc_keys)
    if (acc < 0).any():
        missing = out.loc[acc < 0, ACCOUNT_ID].astype(str).unique()[:5].tolist()
        raise KeyError(f"accounts not in the world: {missing}")
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


def _activity_arrays(world: World, acc_keys: pd.Index) -> dict[str, np.ndarray]:
    """Account code, seconds, channel code and contact code of every activity, once."""
    act = world.activities
    return {
        "acc": positions(act[ACCOUNT_ID], acc_keys),
        "secs": to_seconds(act["occurred_at"]),
        "channel": label_positions(act["channel"], CHANNELS).astype(np.int8),
        "contact": positions(act["contact_id"], pd.Index(world.contacts["contact_id"].astype(str))),
    }


def _activity_features(world: World, act: dict, acc: np.ndarray, now: np.ndarray):
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
    world: World, act: dict, acc_keys: pd.Index, acc: np.ndarray, now: np.ndarray
):
    con = world.contacts
    c_acc = positions(con[ACCOUNT_ID], acc_keys)
    c_created = to_seconds(con[CREATED_AT])
    c_role = label_positions(con["role"], ROLES)
    feats: dict[str, np.ndarray] = {}
    never = np.full(len(acc), NEVER)
    feats["contacts_in_crm"] = Events(c_acc, c_created).count(acc, never, now)
    has = np.stack(
        [
            Events(c_acc[c_role == r], c_created[c_role == r]).count(acc, never, now) > 0
            for r in range(len(ROLES))
        ],
        axis=1,
    )

    known = act["contact"] >= 0
    who = act["contact"][known]
    e_acc = act["acc"][known]
    # A touch says something about the committee only once the contact (and role) is on record.
    e_time = np.maximum(act["secs"][known], c_created[who])
    e_role = c_role[who]
    del known, who
    day = 86_400
    engaged = np.stack(
        [
            Events(e_acc[e_role == r], e_time[e_role == r]).count(acc, now - 90 * day, now) > 0
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


def _intent_features(world: World, acc_keys: pd.Index, acc: np.ndarray, now: np.ndarray):
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


def _firmographics(world: World, acc: np.ndarray) -> dict[str, np.ndarray]:
    a = world.accounts
    feats: dict[str, np.ndarray] = {}
    for col in CATEGORICAL:
        feats[col] = as_str(a[col])[acc]
    for col in FIRMOGRAPHIC_NUMERIC:
        feats[col] = a[col].to_numpy(dtype=np.float64, na_value=np.nan)[acc]
    for col in FIRMOGRAPHIC_BOOL:
        feats[col] = a[col].fillna(False).to_numpy(dtype=bool)[acc]
    feats["has_parent"] = a["parent_account_id"].notna().to_numpy()[acc]
    for col in NOISE:
        feats[col] = a[col].to_numpy()[acc]
    return feats


def _deal_history(world: World, acc_keys: pd.Index, acc: np.ndarray, now: np.ndarray):
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


def build_training_rows(world: World) -> pd.DataFrame:
    """One row per opportunity with the features as of its creation.

    Args:
        world: The world to read.

    Returns:
        Columns ``row_id`` (the opportunity id), ``account_id``, ``outcome``, ``created_at``,
        ``closed_at``, ``days_to_close`` (float days, NaN while open), ``amount``, ``source``,
        then :data:`FEATURE_COLUMNS`.
    """
    opp = world.opportunities
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
    return build_features(world, cutoffs).drop(columns=[AS_OF])


def build_scoring_rows(world: World, as_of) -> pd.DataFrame:
    """One row per account with the features as of ``as_of``.

    The deal attributes come from the account's latest opportunity still open at ``as_of``;
    accounts without one get the median amount of their segment's deals created before
    ``as_of`` and source ``"outbound"`` (the rep would reach out).

    Args:
        world: The world to read.
        as_of: Scoring time (anything ``pd.Timestamp`` accepts).

    Returns:
        Columns ``row_id`` (= ``account_id``), ``account_id``, ``as_of``, ``amount``,
        ``source``, then :data:`FEATURE_COLUMNS`.
    """
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
