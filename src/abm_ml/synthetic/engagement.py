"""Draws of the engagement tables of the synthetic world: activities and weekly intent.

Background engagement runs all period long; before each opportunity a burst of web visits,
downloads, clicks and meetings (counts drawn with the opportunity) and the buying committee's
touches plant the signal; during the deal, meetings and late procurement happen after the cut-off
(a point-in-time feature builder must not see them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from abm_ml.synthetic.sampling import DAY_SECONDS, pick
from abm_ml.synthetic.world import CHANNELS, TOPICS

_CH = {c: i for i, c in enumerate(CHANNELS)}
_INTENT_CHUNK = 20_000


def _pick_contacts(
    rng: np.random.Generator,
    acc: np.ndarray,
    when: np.ndarray,
    con_offset: np.ndarray,
    con_count: np.ndarray,
    con_created: np.ndarray,
) -> np.ndarray:
    """Attach a random contact of the account to each event (-1 when none existed yet)."""
    n_avail = con_count[acc]
    pos = con_offset[acc] + (rng.random(len(acc)) * n_avail).astype(np.int64)
    has = n_avail > 0
    pos = np.where(has, pos, 0)
    ok = has & (con_created[pos] <= when) if len(con_created) else np.zeros(len(acc), bool)
    return np.where(ok, pos, -1).astype(np.int32)


_Part = tuple[np.ndarray, ...]
"""One batch of events: (account, day, channel, contact, deep web visit)."""
_PickContact = Callable[[np.ndarray, np.ndarray], np.ndarray]


def draw_activities(
    rng: np.random.Generator, acc: dict, opp: dict, con: dict, horizon: float
) -> dict:
    """Engagement events, sorted by account then time, with pages and seconds of web visits.

    Returns:
        Arrays ``acc``, ``secs`` (seconds since the world's start), ``channel``, ``contact``
        (-1 when anonymous), ``pages`` and ``seconds`` (NaN except for web visits).
    """

    def pick_contact(a: np.ndarray, t: np.ndarray) -> np.ndarray:
        return _pick_contacts(rng, a, t, con["offset"], con["count"], con["created"])

    # The order of the batches is the order of the draws: changing it changes every world.
    parts = [_background(rng, acc, con, horizon, pick_contact)]
    parts += _before_deals(rng, opp, pick_contact)
    parts.append(_committee_touches(rng, opp, con))
    parts += _during_deals(rng, opp, con, horizon, pick_contact)
    return _sorted_events(rng, parts, horizon)


def _background(
    rng: np.random.Generator, acc: dict, con: dict, horizon: float, pick_contact: _PickContact
) -> _Part:
    """Engagement all period long: interested and bigger accounts engage more."""
    n = acc["n"]
    ch = _CH
    rate = 0.015 * np.exp(0.5 * acc["interest"] + 0.2 * (acc["log_emp"] - np.log(150.0)))
    n_bg = rng.poisson(rate * horizon)
    a = np.repeat(np.arange(n, dtype=np.int32), n_bg)
    k = len(a)
    t = rng.uniform(0.0, horizon, k)
    mix = np.array([0.22, 0.05, 0.25, 0.07, 0.25, 0.05, 0.015, 0.035, 0.05])
    c = pick(rng, np.cumsum(mix / mix.sum()), k).astype(np.int8)
    # Without an owner nobody books meetings; those touches are just newsletter opens.
    unowned_meeting = (c == ch["sales_meeting"]) & ~acc["owner_assigned"][a]
    c[unowned_meeting & (rng.random(k) < 0.8)] = ch["email_open"]
    identified_p = np.array([0.25, 0.9, 1.0, 1.0, 0.0, 0.3, 0.9, 0.95, 1.0])
    contact = np.where(rng.random(k) < identified_p[c], pick_contact(a, t), -1).astype(np.int32)
    # Executives ignore most marketing; their touches stay anonymous unless a deal is on.
    responsive = np.array([0.15, 0.4, 1.0, 0.7, 0.3, 1.0])
    role = con["role"][np.maximum(contact, 0)]
    contact[(contact >= 0) & (rng.random(k) >= responsive[role])] = -1
    return (a, t, c, contact, np.zeros(k, bool))


def _before_deals(rng: np.random.Generator, opp: dict, pick_contact: _PickContact) -> list[_Part]:
    """The buying cycle before each opportunity: counts drawn in draw_opportunities."""
    ch = _CH
    parts: list[_Part] = []

    def burst(counts: np.ndarray, lo: float, hi: float, channel: int, with_contact: bool) -> None:
        o = np.repeat(np.arange(opp["m"]), counts)
        when = opp["t"][o] - rng.uniform(lo, hi, len(o))
        ba = opp["acc"][o]
        who = pick_contact(ba, when) if with_contact else np.full(len(o), -1, np.int32)
        deep = np.full(len(o), channel == ch["web_visit"])
        parts.append((ba, when, np.full(len(o), channel, np.int8), who, deep))

    burst(opp["web30"], 0.0, 30.0, ch["web_visit"], False)
    burst(opp["web90"], 30.0, 90.0, ch["web_visit"], False)
    burst(opp["dl90"], 0.0, 90.0, ch["content_download"], True)
    burst(opp["clicks30"], 0.0, 30.0, ch["email_click"], True)
    burst(opp["meet30"], 0.0, 30.0, ch["sales_meeting"], True)
    return parts


def _committee_touches(rng: np.random.Generator, opp: dict, con: dict) -> _Part:
    """Committee members engage after joining the CRM and before the deal is created."""
    ch = _CH
    rows = con["pre_row"]
    o = con["pre_opp"]
    n_touch = 1 + rng.poisson(0.8, len(rows))
    rows_r = np.repeat(rows, n_touch)
    o_r = np.repeat(o, n_touch)
    t_deal = opp["t"][o_r]
    lo = np.maximum(con["created"][rows_r], t_deal - 89.0)
    when = lo + rng.random(len(rows_r)) * (t_deal - lo)
    committee_mix = np.cumsum([0.35, 0.2, 0.2, 0.15, 0.1])
    committee_ch = np.array(
        [
            ch["email_click"],
            ch["webinar_attended"],
            ch["sales_meeting"],
            ch["content_download"],
            ch["event_attended"],
        ],
        dtype=np.int8,
    )
    cc = committee_ch[pick(rng, committee_mix, len(rows_r))]
    return (opp["acc"][o_r], when, cc, rows_r.astype(np.int32), np.zeros(len(o_r), bool))


def _during_deals(
    rng: np.random.Generator, opp: dict, con: dict, horizon: float, pick_contact: _PickContact
) -> list[_Part]:
    """Meetings during the deal (invisible to features as of creation) and late procurement."""
    ch = _CH
    parts: list[_Part] = []
    deal_end = np.minimum(opp["close"], horizon)
    span = np.maximum(deal_end - opp["t"], 0.0)
    n_meet = np.minimum(rng.poisson(span / 30.0 * np.exp(0.2 * opp["q"])), 40)
    o = np.repeat(np.arange(opp["m"]), n_meet)
    when = opp["t"][o] + rng.random(len(o)) * span[o]
    ba = opp["acc"][o]
    parts.append(
        (
            ba,
            when,
            np.full(len(o), ch["sales_meeting"], np.int8),
            pick_contact(ba, when),
            np.zeros(len(o), bool),
        )
    )
    rows = con["late_row"]
    o = con["late_opp"]
    lo = np.maximum(con["created"][rows], opp["t"][o])
    when = lo + rng.random(len(o)) * np.maximum(deal_end[o] - lo, 0.0)
    parts.append(
        (
            opp["acc"][o],
            when,
            np.full(len(o), ch["email_click"], np.int8),
            rows.astype(np.int32),
            np.zeros(len(o), bool),
        )
    )
    return parts


def _sorted_events(rng: np.random.Generator, parts: list[_Part], horizon: float) -> dict:
    """Concatenate the batches, keep events inside the world, sort, draw web-visit depth."""
    ch = _CH
    a = np.concatenate([p[0] for p in parts]).astype(np.int32, copy=False)
    secs = np.concatenate([np.floor(p[1] * DAY_SECONDS).astype(np.int64) for p in parts])
    c = np.concatenate([p[2] for p in parts]).astype(np.int8, copy=False)
    contact = np.concatenate([p[3] for p in parts]).astype(np.int32, copy=False)
    deep = np.concatenate([p[4] for p in parts])
    parts.clear()  # drop the pieces before the big sort below
    keep = (secs >= 0) & (secs < int(horizon) * DAY_SECONDS)
    if not keep.all():
        a, secs, c, contact, deep = a[keep], secs[keep], c[keep], contact[keep], deep[keep]
    del keep
    # Sort by account then time with one int64 key: far cheaper than lexsort at 30M rows.
    key = a.astype(np.int64)
    key <<= 32
    key |= secs
    order = np.argsort(key, kind="stable")
    del key
    a, secs, c, contact, deep = a[order], secs[order], c[order], contact[order], deep[order]
    del order

    web = c == ch["web_visit"]
    n_web = int(web.sum())
    pages = np.full(len(a), np.nan, np.float32)
    seconds = np.full(len(a), np.nan, np.float32)
    pg = 1 + rng.poisson(np.where(deep[web], 2.5, 1.2))
    pages[web] = pg
    seconds[web] = np.round(pg * np.exp(rng.normal(np.log(40.0), 0.7, n_web)))
    return {
        "acc": a,
        "secs": secs,
        "channel": c,
        "contact": contact,
        "pages": pages,
        "seconds": seconds,
    }


def draw_intent(
    rng: np.random.Generator, acc: dict, opp: dict, t0: pd.Timestamp, t_end: pd.Timestamp
) -> dict:
    """Weekly intent per account and topic, reported only above the vendor's threshold."""
    n = acc["n"]
    first_monday = t0 + pd.Timedelta(days=(7 - t0.weekday()) % 7)
    n_weeks = max(int((t_end - first_monday).days // 7), 0)  # complete weeks only
    covered = np.flatnonzero(rng.random(n) < 0.7)
    n_topics = len(TOPICS)
    threshold = 40
    out_acc, out_week, out_topic, out_score = [], [], [], []
    # Week index of the last complete week before each deal is created.
    fm_days = (first_monday - t0).days
    last_week = np.floor((opp["t"] - fm_days) / 7.0).astype(np.int64) - 1
    ramp = np.arange(6)  # weeks back from the last complete one
    for lo in range(0, len(covered), _INTENT_CHUNK):
        ids = covered[lo : lo + _INTENT_CHUNK]
        mc = len(ids)
        level = (
            15.0 + 10.0 * acc["interest"][ids][:, None] + 6.0 * rng.normal(0.0, 1.0, (mc, n_topics))
        ).astype(np.float32)
        shocks = rng.normal(0.0, 8.0 * np.sqrt(1 - 0.7**2), (mc, n_weeks, n_topics)).astype(
            np.float32
        )
        score = np.empty_like(shocks)
        prev = rng.normal(0.0, 8.0, (mc, n_topics)).astype(np.float32)
        for w in range(n_weeks):
            prev = 0.7 * prev + shocks[:, w, :]
            score[:, w, :] = prev
        del shocks
        score += level[:, None, :]

        # Surging research before a deal: a six-week ramp up to its creation, then a fade.
        o_lo, o_hi = np.searchsorted(opp["acc"], [ids[0], ids[-1] + 1]) if mc else (0, 0)
        o = np.arange(o_lo, o_hi)
        local = np.searchsorted(ids, opp["acc"][o])
        hit = (local < mc) & (ids[np.minimum(local, mc - 1)] == opp["acc"][o])
        o, local = o[hit], local[hit]
        offsets = np.concatenate([-ramp, np.arange(1, 5)])
        shape = np.concatenate([1.0 - ramp / 6.0, 0.8 ** np.arange(1, 5)])
        wk = last_week[o][:, None] + offsets[None, :]
        val = opp["surge"][o][:, None] * shape[None, :]
        li = np.broadcast_to(local[:, None], wk.shape)
        tp = np.broadcast_to(opp["topic"][o][:, None], wk.shape)
        ok = (wk >= 0) & (wk < n_weeks)
        np.add.at(score, (li[ok], wk[ok], tp[ok]), val[ok].astype(np.float32))

        np.clip(score, 0.0, 100.0, out=score)
        i, w, tpc = np.nonzero(score >= threshold)
        out_acc.append(ids[i].astype(np.int32))
        out_week.append(w.astype(np.int32))
        out_topic.append(tpc.astype(np.int8))
        out_score.append(np.round(score[i, w, tpc]).astype(np.int16))
        del score
    cat = lambda xs, dt: np.concatenate(xs) if xs else np.empty(0, dt)
    week = cat(out_week, np.int32)
    week_start = (
        first_monday.to_datetime64().astype("datetime64[D]")
        + (week.astype(np.int64) * 7).astype("timedelta64[D]")
    ).astype("datetime64[ns]")
    return {
        "acc": cat(out_acc, np.int32),
        "week_start": week_start,
        "topic": cat(out_topic, np.int8),
        "score": cat(out_score, np.int16),
    }
