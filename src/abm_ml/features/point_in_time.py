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

Implementation: each event table is turned once into a sorted int64 key
``account_code << 33 | (seconds + 2**32)``; a window count for many cut-offs is then two
``np.searchsorted`` calls. Times are compared at whole-second resolution, rounding both sides
down, so an event in the same second as the cut-off is left out rather than leaked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

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

__all__ = [
    "AS_OF",
    "DEAL_FEATURES",
    "FEATURE_COLUMNS",
    "FEATURE_DESCRIPTIONS",
    "MODEL_FEATURES",
    "SOURCE",
    "build_features",
    "build_scoring_rows",
    "build_training_rows",
]

AS_OF = "as_of"
SOURCE = "source"

# The world's vocabularies, in the order the event arrays are coded.
_CHANNELS = CHANNELS
_ROLES = ROLES

# (feature name, channel or None for every channel, window in days)
_WINDOW_COUNTS = (
    ("web_visits_7d", "web_visit", 7),
    ("web_visits_30d", "web_visit", 30),
    ("web_visits_90d", "web_visit", 90),
    ("email_opens_30d", "email_open", 30),
    ("email_clicks_30d", "email_click", 30),
    ("email_clicks_90d", "email_click", 90),
    ("content_downloads_90d", "content_download", 90),
    ("paid_impressions_30d", "paid_impression", 30),
    ("video_completions_90d", "video_completion", 90),
    ("events_attended_90d", "event_attended", 90),
    ("webinars_attended_90d", "webinar_attended", 90),
    ("sales_meetings_30d", "sales_meeting", 30),
    ("sales_meetings_90d", "sales_meeting", 90),
    ("touches_7d", None, 7),
    ("touches_30d", None, 30),
    ("touches_90d", None, 90),
)
_CATEGORICAL = ("industry", "region", "segment", "tech_stack")
_FIRMOGRAPHIC_NUMERIC = ("employees", "annual_revenue")
_FIRMOGRAPHIC_BOOL = ("uses_competitor", "owner_assigned")
_NOISE = ("founded_year", "fiscal_year_end_month", "crm_data_quality")

FEATURE_COLUMNS: tuple[str, ...] = (
    *(name for name, _, _ in _WINDOW_COUNTS),
    "web_pages_30d",
    "total_touches",
    "days_since_last_touch",
    "contacts_in_crm",
    "has_economic_buyer",
    "has_champion",
    "has_procurement",
    "committee_roles_covered",
    "economic_buyer_engaged_90d",
    "champion_engaged_90d",
    "procurement_engaged_90d",
    "committee_roles_engaged_90d",
    "intent_score_latest",
    "intent_score_avg_4w",
    "intent_trend_4w",
    "intent_topics_active_4w",
    *_CATEGORICAL,
    *_FIRMOGRAPHIC_NUMERIC,
    *_FIRMOGRAPHIC_BOOL,
    "has_parent",
    "prior_won_deals",
    "prior_lost_deals",
    *_NOISE,
)
"""Columns :func:`build_features` adds, in order."""

DEAL_FEATURES: tuple[str, ...] = (AMOUNT, SOURCE)
"""Attributes of the deal itself, known at creation and carried on training/scoring rows."""

MODEL_FEATURES: tuple[str, ...] = (*DEAL_FEATURES, *FEATURE_COLUMNS)
"""Every column a model may use: the deal attributes plus the account features."""


def _num(description: str, template: str) -> dict:
    return {"description": description, "template": template, "type": "numeric"}


def _flag(description: str, true_text: str, false_text: str) -> dict:
    return {
        "description": description,
        "type": "boolean",
        "true_text": true_text,
        "false_text": false_text,
    }


def _cat(description: str, template: str) -> dict:
    return {"description": description, "template": template, "type": "categorical"}


FEATURE_DESCRIPTIONS: dict[str, dict] = {
    AMOUNT: _num("expected deal size", "Deal size {value:,.0f}"),
    SOURCE: _cat("where the opportunity came from", "Opportunity source: {value}"),
    "web_visits_7d": _num(
        "web visits in the last 7 days", "{value:.0f} web visits in the last 7 days"
    ),
    "web_visits_30d": _num(
        "web visits in the last 30 days", "{value:.0f} web visits in the last 30 days"
    ),
    "web_visits_90d": _num(
        "web visits in the last 90 days", "{value:.0f} web visits in the last 90 days"
    ),
    "email_opens_30d": _num(
        "email opens in the last 30 days", "{value:.0f} email opens in the last 30 days"
    ),
    "email_clicks_30d": _num(
        "email clicks in the last 30 days", "{value:.0f} email clicks in the last 30 days"
    ),
    "email_clicks_90d": _num(
        "email clicks in the last 90 days", "{value:.0f} email clicks in the last 90 days"
    ),
    "content_downloads_90d": _num(
        "content downloads in the last 90 days", "{value:.0f} content downloads in the last 90 days"
    ),
    "paid_impressions_30d": _num(
        "paid ad impressions in the last 30 days", "{value:.0f} ad impressions in the last 30 days"
    ),
    "video_completions_90d": _num(
        "videos watched to the end in the last 90 days",
        "{value:.0f} videos watched to the end in the last 90 days",
    ),
    "events_attended_90d": _num(
        "events attended in the last 90 days", "{value:.0f} events attended in the last 90 days"
    ),
    "webinars_attended_90d": _num(
        "webinars attended in the last 90 days", "{value:.0f} webinars attended in the last 90 days"
    ),
    "sales_meetings_30d": _num(
        "sales meetings in the last 30 days", "{value:.0f} sales meetings in the last 30 days"
    ),
    "sales_meetings_90d": _num(
        "sales meetings in the last 90 days", "{value:.0f} sales meetings in the last 90 days"
    ),
    "touches_7d": _num("touches of any kind in the last 7 days", "{value:.0f} touches this week"),
    "touches_30d": _num(
        "touches of any kind in the last 30 days", "{value:.0f} touches in the last 30 days"
    ),
    "touches_90d": _num(
        "touches of any kind in the last 90 days", "{value:.0f} touches in the last 90 days"
    ),
    "web_pages_30d": _num(
        "web pages viewed in the last 30 days", "{value:.0f} web pages viewed in the last 30 days"
    ),
    "total_touches": _num("touches of any kind on record", "{value:.0f} touches on record"),
    "days_since_last_touch": _num(
        "days since the last touch (empty when never touched)",
        "Last touch {value:.0f} days ago",
    ),
    "contacts_in_crm": _num("contacts in the CRM", "{value:.0f} contacts in the CRM"),
    "has_economic_buyer": _flag(
        "economic buyer in CRM", "Economic buyer in CRM", "No economic buyer in CRM"
    ),
    "has_champion": _flag("champion in CRM", "Champion in CRM", "No champion in CRM"),
    "has_procurement": _flag(
        "procurement contact in CRM", "Procurement contact in CRM", "No procurement contact in CRM"
    ),
    "committee_roles_covered": _num(
        "buying-committee roles with a contact in the CRM (0-6)",
        "{value:.0f} of 6 buying-committee roles in the CRM",
    ),
    "economic_buyer_engaged_90d": _flag(
        "economic buyer engaged in the last 90 days",
        "Economic buyer engaged in the last 90 days",
        "Economic buyer not engaged in the last 90 days",
    ),
    "champion_engaged_90d": _flag(
        "champion engaged in the last 90 days",
        "Champion engaged in the last 90 days",
        "Champion not engaged in the last 90 days",
    ),
    "procurement_engaged_90d": _flag(
        "procurement engaged in the last 90 days",
        "Procurement engaged in the last 90 days",
        "Procurement not engaged in the last 90 days",
    ),
    "committee_roles_engaged_90d": _num(
        "buying-committee roles engaged in the last 90 days (0-6)",
        "{value:.0f} of 6 buying-committee roles engaged in the last 90 days",
    ),
    "intent_score_latest": _num(
        "highest third-party intent score over topics in the last complete week (0-100)",
        "Intent score {value:.0f}/100 last week",
    ),
    "intent_score_avg_4w": _num(
        "average of the weekly highest intent score over the last 4 complete weeks",
        "Average intent score {value:.0f}/100 over 4 weeks",
    ),
    "intent_trend_4w": _num(
        "slope of the weekly highest intent score over the last 4 complete weeks (points/week)",
        "Intent moving {value:+.1f} points a week over the last 4 weeks",
    ),
    "intent_topics_active_4w": _num(
        "intent topics reported in the last 4 complete weeks",
        "Researching {value:.0f} relevant topics",
    ),
    "industry": _cat("industry", "Industry: {value}"),
    "region": _cat("region", "Region: {value}"),
    "segment": _cat("segment by employee count", "Segment: {value}"),
    "tech_stack": _cat("where their systems run", "Tech stack: {value}"),
    "employees": _num("employees", "{value:,.0f} employees"),
    "annual_revenue": _num("annual revenue", "Annual revenue {value:,.0f}"),
    "uses_competitor": _flag(
        "a competitor's product is in use", "Uses a competitor's product", "No competitor in use"
    ),
    "owner_assigned": _flag(
        "an account owner is assigned", "Account owner assigned", "No account owner"
    ),
    "has_parent": _flag(
        "subsidiary of another account", "Part of a larger group", "Stand-alone company"
    ),
    "prior_won_deals": _num(
        "deals won with this account before", "{value:.0f} deals won with this account before"
    ),
    "prior_lost_deals": _num(
        "deals lost with this account before", "{value:.0f} deals lost with this account before"
    ),
    "founded_year": _num("year the company was founded", "Founded in {value:.0f}"),
    "fiscal_year_end_month": _num(
        "month their fiscal year ends", "Fiscal year ends in month {value:.0f}"
    ),
    "crm_data_quality": _num(
        "completeness score of the CRM record (0-1)", "CRM record {value:.0%} complete"
    ),
}

_SHIFT = 33
_OFFSET = 1 << 32  # lets seconds before 1970 pack without borrowing from the account bits
_NEG_INF = -_OFFSET
_NAT = np.iinfo(np.int64).min


# --------------------------------------------------------------------------------------------
# Low-level helpers
# --------------------------------------------------------------------------------------------


def _seconds(values) -> np.ndarray:
    """Datetimes to int64 seconds since 1970, floored; NaT becomes the int64 minimum."""
    ts = pd.to_datetime(values if isinstance(values, pd.Series) else pd.Series(values))
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = ts.to_numpy(dtype="datetime64[ns]").view(np.int64)
    nat = ns == _NAT
    secs = np.floor_divide(ns, 1_000_000_000)
    secs[nat] = _NAT
    return secs


def _pack(codes: np.ndarray, secs: np.ndarray) -> np.ndarray:
    keys = codes.astype(np.int64)
    keys <<= _SHIFT
    shifted = np.clip(secs, -_OFFSET, _OFFSET - 1)
    shifted += _OFFSET
    keys += shifted
    return keys


def _codes(values: pd.Series, keys: pd.Index) -> np.ndarray:
    """Positions of ``values`` in ``keys`` (-1 when absent), cheap for categoricals."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        raw = values.cat.codes.to_numpy()
        cats = values.cat.categories
        if cats.equals(keys):
            # Synthetic worlds share the parent keys as categories: codes are positions.
            return raw.astype(np.int32)
        cat_pos = keys.get_indexer(cats.astype(str)).astype(np.int32)
        out = np.full(len(raw), -1, dtype=np.int32)
        ok = raw >= 0
        out[ok] = cat_pos[raw[ok]]
        return out
    mask = values.isna().to_numpy()
    out = keys.get_indexer(values.astype(str)).astype(np.int32)
    out[mask] = -1
    return out


def _factorize(values: pd.Series) -> np.ndarray:
    """Integer codes of a categorical or text column (-1 for missing)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy().astype(np.int32)
    return pd.factorize(values)[0].astype(np.int32)


def _labels(values: pd.Series, labels: tuple[str, ...]) -> np.ndarray:
    """Positions of enum values in ``labels`` (-1 for anything else)."""
    return _codes(values, pd.Index(list(labels)))


class _Events:
    """Sorted (account, time) keys of one kind of event, with optional running sums."""

    def __init__(self, codes: np.ndarray, secs: np.ndarray, weights: np.ndarray | None = None):
        ok = (codes >= 0) & (secs != _NAT)
        if not ok.all():
            codes, secs = codes[ok], secs[ok]
            weights = None if weights is None else np.asarray(weights)[ok]
        del ok
        keys = _pack(codes, secs)
        self.cumsum = None
        if weights is None:
            # World tables come sorted by account and time; skip the sort when they are.
            if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():
                keys.sort(kind="stable")
        else:
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            w = np.nan_to_num(np.asarray(weights, dtype=np.float64)[order])
            self.cumsum = np.concatenate([[0.0], np.cumsum(w)])
        self.keys = keys

    def _bounds(self, codes: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        return (
            np.searchsorted(self.keys, _pack(codes, lo), side="left"),
            np.searchsorted(self.keys, _pack(codes, hi), side="left"),
        )

    def count(self, codes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Events of each account with ``lo <= t < hi`` (seconds)."""
        a, b = self._bounds(codes, lo, hi)
        return (b - a).astype(np.int32)

    def total(self, codes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Sum of the weights of those events."""
        a, b = self._bounds(codes, lo, hi)
        return self.cumsum[b] - self.cumsum[a]

    def last_before(self, codes: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Seconds of the latest event before ``hi`` (NaN when none)."""
        idx = np.searchsorted(self.keys, _pack(codes, hi), side="left") - 1
        safe = np.maximum(idx, 0)
        found = (idx >= 0) & ((self.keys[safe] >> _SHIFT) == codes) if len(self.keys) else idx >= 0
        secs = (self.keys[safe] & ((1 << _SHIFT) - 1)) - _OFFSET if len(self.keys) else idx * 0
        return np.where(found, secs.astype(np.float64), np.nan)


def _as_str(values: pd.Series) -> np.ndarray:
    """Object array of strings (None for missing) from a categorical or text column."""
    out = values.astype(object).to_numpy(copy=True)
    out[pd.isna(out)] = None
    return out


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
    acc = _codes(out[ACCOUNT_ID], acc_keys)
    if (acc < 0).any():
        missing = out.loc[acc < 0, ACCOUNT_ID].astype(str).unique()[:5].tolist()
        raise KeyError(f"accounts not in the world: {missing}")
    now = _seconds(out[AS_OF])
    if (now == _NAT).any():
        raise ValueError("every cut-off needs an as_of timestamp")

    # Sorted needles make the many searchsorted calls below walk memory in order.
    order = np.argsort(_pack(acc, now), kind="stable")
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
        "acc": _codes(act[ACCOUNT_ID], acc_keys),
        "secs": _seconds(act["occurred_at"]),
        "channel": _labels(act["channel"], _CHANNELS).astype(np.int8),
        "contact": _codes(act["contact_id"], pd.Index(world.contacts["contact_id"].astype(str))),
    }


def _activity_features(world: World, act: dict, acc: np.ndarray, now: np.ndarray):
    a, t, ch = act["acc"], act["secs"], act["channel"]
    day = 86_400
    feats: dict[str, np.ndarray] = {}
    every = _Events(a, t)
    for name, channel, days in _WINDOW_COUNTS:
        if channel is None:
            feats[name] = every.count(acc, now - days * day, now)
    feats["total_touches"] = every.count(acc, np.full(len(acc), _NEG_INF), now)
    last = every.last_before(acc, now)
    feats["days_since_last_touch"] = ((now - last) / day).astype(np.float32)
    del every
    for i, channel in enumerate(_CHANNELS):
        sel = ch == i
        ev = _Events(a[sel], t[sel])
        for name, c, days in _WINDOW_COUNTS:
            if c == channel:
                feats[name] = ev.count(acc, now - days * day, now)
        if channel == "web_visit":
            pages = world.activities["pages"].to_numpy(dtype=np.float64, na_value=np.nan)[sel]
            ev = _Events(a[sel], t[sel], pages)
            feats["web_pages_30d"] = ev.total(acc, now - 30 * day, now).astype(np.float32)
    return feats


def _committee_features(
    world: World, act: dict, acc_keys: pd.Index, acc: np.ndarray, now: np.ndarray
):
    con = world.contacts
    c_acc = _codes(con[ACCOUNT_ID], acc_keys)
    c_created = _seconds(con[CREATED_AT])
    c_role = _labels(con["role"], _ROLES)
    feats: dict[str, np.ndarray] = {}
    never = np.full(len(acc), _NEG_INF)
    feats["contacts_in_crm"] = _Events(c_acc, c_created).count(acc, never, now)
    has = np.stack(
        [
            _Events(c_acc[c_role == r], c_created[c_role == r]).count(acc, never, now) > 0
            for r in range(len(_ROLES))
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
            _Events(e_acc[e_role == r], e_time[e_role == r]).count(acc, now - 90 * day, now) > 0
            for r in range(len(_ROLES))
        ],
        axis=1,
    )
    eb, ch, pr = (_ROLES.index(r) for r in ("economic_buyer", "champion", "procurement"))
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
    i_acc = _codes(intent[ACCOUNT_ID], acc_keys)
    i_week = _seconds(intent["week_start"])
    nat = i_week == _NAT
    i_week[nat] = epoch
    i_week -= epoch
    np.negative(i_week, out=i_week)
    np.floor_divide(i_week, week, out=i_week)
    np.negative(i_week, out=i_week)
    np.clip(i_week, 0, (1 << 31) - 1, out=i_week)
    i_topic = _factorize(intent["topic"])
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
        ev = _Events(i_acc[i_topic == k], i_week[i_topic == k])
        n_topics += ev.count(acc, last_complete - 3, last_complete + 1) > 0
    feats["intent_topics_active_4w"] = n_topics
    return feats


def _firmographics(world: World, acc: np.ndarray) -> dict[str, np.ndarray]:
    a = world.accounts
    feats: dict[str, np.ndarray] = {}
    for col in _CATEGORICAL:
        feats[col] = _as_str(a[col])[acc]
    for col in _FIRMOGRAPHIC_NUMERIC:
        feats[col] = a[col].to_numpy(dtype=np.float64, na_value=np.nan)[acc]
    for col in _FIRMOGRAPHIC_BOOL:
        feats[col] = a[col].fillna(False).to_numpy(dtype=bool)[acc]
    feats["has_parent"] = a["parent_account_id"].notna().to_numpy()[acc]
    for col in _NOISE:
        feats[col] = a[col].to_numpy()[acc]
    return feats


def _deal_history(world: World, acc_keys: pd.Index, acc: np.ndarray, now: np.ndarray):
    opp = world.opportunities
    o_acc = _codes(opp[ACCOUNT_ID], acc_keys)
    closed = _seconds(opp[CLOSED_AT])
    outcome = _labels(opp[OUTCOME], (WON, LOST, OPEN))
    never = np.full(len(acc), _NEG_INF)
    won = outcome == 0
    lost = outcome == 1
    return {
        "prior_won_deals": _Events(o_acc[won], closed[won]).count(acc, never, now).astype(np.int16),
        "prior_lost_deals": _Events(o_acc[lost], closed[lost])
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
            ROW_ID: _as_str(opp["opportunity_id"]),
            ACCOUNT_ID: _as_str(opp[ACCOUNT_ID]),
            OUTCOME: _as_str(opp[OUTCOME]),
            CREATED_AT: created.to_numpy(),
            CLOSED_AT: closed.to_numpy(),
            DAYS_TO_CLOSE: ((closed - created).dt.total_seconds() / 86_400.0).to_numpy(),
            AMOUNT: opp[AMOUNT].to_numpy(dtype=np.float64, na_value=np.nan),
            SOURCE: _as_str(opp[SOURCE]),
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
    ids = _as_str(accounts[ACCOUNT_ID])
    n = len(ids)
    opp = world.opportunities
    acc_keys = pd.Index(ids)
    o_acc = _codes(opp[ACCOUNT_ID], acc_keys)
    created = pd.to_datetime(opp[CREATED_AT])
    closed = pd.to_datetime(opp[CLOSED_AT])
    amount = opp[AMOUNT].to_numpy(dtype=np.float64, na_value=np.nan)
    seen = (created < as_of).to_numpy()
    still_open = seen & ~(closed < as_of).to_numpy()

    # Expected deal size by segment from deals already created, overall median as fallback.
    segment = _as_str(accounts["segment"])
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
        exp_source[latest["acc"].to_numpy()] = _as_str(opp[SOURCE])[pick]
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
