"""Draws of the CRM tables of the synthetic world: accounts, opportunities and contacts.

Each draw takes its own random stream and returns plain numpy arrays in a dict; the frames are
built in :mod:`abm_ml.synthetic.generate`. The planted effects on winning and on days to close
(the ``_WIN`` and ``_SPEED`` coefficients) act on the realised event counts drawn here.
"""

from __future__ import annotations

import numpy as np

from abm_ml.synthetic.names import (
    FIRST_NAMES,
    LAST_NAMES,
    NAME_FORMS,
    NAME_HEADS,
    NAME_TAILS,
    TITLES,
)
from abm_ml.synthetic.sampling import pick, pick_rows, sigmoid
from abm_ml.synthetic.world import ICP_INDUSTRIES, INDUSTRIES, ROLES, TOPICS

_INDUSTRY_P = (0.16, 0.12, 0.12, 0.16, 0.13, 0.09, 0.12, 0.10)  # in INDUSTRIES order
_REGION_P = (0.38, 0.24, 0.12, 0.16, 0.10)  # in REGIONS order
_ROLE = {r: i for i, r in enumerate(ROLES)}
HISTORY_DAYS = 90  # opportunities start this late so every one has a full look-back window
_MAX_OPPS_PER_ACCOUNT = 12

# Coefficients of the planted models; the docs quote them, the tests only rely on their signs.
_WIN = {
    "intercept": -6.0,
    "economic_buyer": 2.0,
    "champion": 1.6,
    "other_roles": 0.3,  # per extra committee role engaged (influencer, stakeholder, end user)
    "log1p_web_30d": 0.9,
    "log1p_meetings_30d": 0.3,
    "intent_surge_per_20": 0.7,
    "icp_industry": 0.65,
    "size_fit": 0.8,
    "uses_competitor": -1.0,
    "prior_won": 0.9,
    "unobserved_sd": 0.3,
}
_SPEED = {
    "median_days": 42.0,
    "log_amount": 0.38,  # per unit of log(amount / 20k)
    "procurement": 0.6,
    "segment": (-0.2, 0.0, 0.4),  # smb, mid_market, enterprise
    "inbound": -0.3,
    "per_meeting_30d": -0.12,  # capped at 6 meetings
    "lost": 0.15,
    "noise_sd": 0.3,
}


def draw_accounts(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Firmographics, owners, names, noise columns and the latent buying interest of ``n`` accounts."""
    industry = pick(rng, np.cumsum(_INDUSTRY_P), n).astype(np.int8)
    region = pick(rng, np.cumsum(_REGION_P), n).astype(np.int8)
    log_emp = rng.normal(np.log(150.0), 1.4, n)
    employees = np.clip(np.round(np.exp(log_emp)), 2, 400_000).astype(np.int32)
    log_emp = np.log(employees.astype(np.float64))
    segment = np.where(employees >= 1000, 2, np.where(employees >= 100, 1, 0)).astype(np.int8)
    revenue = np.round(employees * np.exp(rng.normal(np.log(180_000.0), 0.45, n)), -3)

    # Software buyers run in the cloud, the public sector and factories keep servers at home.
    p_cloud = np.where(industry == 0, 0.55, 0.3)
    p_prem = np.where(np.isin(industry, (3, 7)), 0.4, 0.18)
    probs = np.stack([p_cloud, 1.0 - p_cloud - p_prem, p_prem], axis=1)
    tech = pick_rows(rng, probs)
    uses_competitor = rng.random(n) < 0.3

    is_sub = (rng.random(n) < 0.08) if n > 1 else np.zeros(n, bool)
    parents = np.flatnonzero(~is_sub)
    parent = np.full(n, -1, dtype=np.int64)
    if is_sub.any():
        parent[is_sub] = parents[rng.integers(0, len(parents), is_sub.sum())]

    owner_assigned = rng.random(n) < np.array([0.3, 0.55, 0.85])[segment]
    n_reps = int(np.clip(n // 250, 8, len(FIRST_NAMES) * len(LAST_NAMES)))
    rep_pool = np.array([f"{f} {s}" for f in FIRST_NAMES for s in LAST_NAMES], dtype=object)
    reps = np.sort(rep_pool[rng.permutation(len(rep_pool))[:n_reps]])
    owner = np.where(owner_assigned, rng.integers(0, n_reps, n), -1).astype(np.int32)

    names = np.array(
        [f"{h} {t} {f}" for h in NAME_HEADS for t in NAME_TAILS for f in NAME_FORMS], dtype=object
    )
    name = names[rng.integers(0, len(names), n)]

    # Pure noise: drawn last and from nothing, so they cannot correlate with anything planted.
    founded_year = rng.integers(1950, 2024, n).astype(np.int16)
    fiscal_month = rng.integers(1, 13, n).astype(np.int8)
    data_quality = np.round(rng.beta(2.0, 2.0, n), 3).astype(np.float32)

    # Latent buying interest: ICP accounts lean in a little more.
    icp = np.isin(industry, [INDUSTRIES.index(i) for i in ICP_INDUSTRIES])
    interest = rng.normal(0.0, 1.0, n) + 0.3 * icp
    size_fit = np.exp(-0.5 * ((log_emp - np.log(800.0)) / 1.0) ** 2)
    return {
        "n": n,
        "industry": industry,
        "region": region,
        "employees": employees,
        "log_emp": log_emp,
        "segment": segment,
        "revenue": revenue,
        "tech": tech,
        "uses_competitor": uses_competitor,
        "parent": parent,
        "owner_assigned": owner_assigned,
        "owner": owner,
        "reps": reps,
        "name": name,
        "founded_year": founded_year,
        "fiscal_month": fiscal_month,
        "data_quality": data_quality,
        "icp": icp,
        "interest": interest,
        "size_fit": size_fit,
    }


def draw_opportunities(rng: np.random.Generator, acc: dict, horizon: float) -> dict:
    """Opportunities per account, their pre-creation engagement counts, outcome and close day.

    Returns:
        Arrays sorted by account then creation day (``t``, days since the world's start).
    """
    n = acc["n"]
    z = acc["interest"]
    years = (horizon - HISTORY_DAYS) / 365.0
    rate = 0.4 * np.exp(0.55 * z + 0.15 * (acc["log_emp"] - np.log(150.0)))
    n_opp = np.minimum(rng.poisson(rate * years), _MAX_OPPS_PER_ACCOUNT)
    a = np.repeat(np.arange(n, dtype=np.int32), n_opp)
    m = len(a)
    t = rng.uniform(HISTORY_DAYS, horizon, m)
    order = np.lexsort((t, a))
    a, t = a[order], t[order]
    first = np.repeat(np.cumsum(n_opp) - n_opp, n_opp)
    rank = np.arange(m) - first

    seg = acc["segment"][a]
    owned = acc["owner_assigned"][a]
    # Seriousness of this buying cycle: partly the account's interest, partly the deal's own.
    q = 0.6 * z[a] + 0.8 * rng.normal(0.0, 1.0, m)

    src_logits = np.stack([0.6 * q, 0.2 + 0.4 * owned, np.full(m, -0.9), np.full(m, -1.1)], axis=1)
    source = pick_rows(rng, np.exp(src_logits))
    log_amount = (
        np.log(20_000.0)
        + 0.5 * (acc["log_emp"][a] - np.log(150.0))
        + 0.1 * q
        + rng.normal(0.0, 0.55, m)
    )
    amount = np.round(np.clip(np.exp(log_amount), 2_000, 5_000_000), -2)
    rel_amount = np.log(amount / 20_000.0)

    eb = rng.random(m) < sigmoid(-1.0 + 1.0 * q + 0.3 * (seg == 2))
    champ = rng.random(m) < sigmoid(-0.6 + 1.0 * q)
    proc = rng.random(m) < sigmoid(-1.6 + 1.1 * (seg == 2) + 0.5 * (seg == 1) + 0.3 * rel_amount)
    n_other = rng.binomial(3, sigmoid(-0.4 + 0.6 * q)).astype(np.int8)
    web30 = rng.poisson(np.exp(0.7 + 0.6 * q))
    web90 = rng.poisson(np.exp(0.2 + 0.4 * q))
    dl90 = rng.poisson(np.exp(-0.6 + 0.5 * q))
    clicks30 = rng.poisson(np.exp(-0.4 + 0.5 * q))
    meet30 = rng.poisson(np.exp(-1.2 + 0.5 * q + 0.8 * owned))
    surge = np.clip(rng.normal(8.0 + 14.0 * q, 6.0), 0.0, 70.0)
    topic = rng.integers(0, len(TOPICS), m).astype(np.int8)

    drawn = {
        "acc": a,
        "t": t,
        "q": q,
        "source": source,
        "amount": amount,
        "eb": eb,
        "champ": champ,
        "proc": proc,
        "n_other": n_other,
        "web30": web30,
        "web90": web90,
        "dl90": dl90,
        "clicks30": clicks30,
        "meet30": meet30,
        "surge": surge,
        "topic": topic,
    }
    won, p_win, days = _resolve_outcomes(rng, acc, drawn, rank, rel_amount)
    close = t + days
    is_open = close >= horizon
    return {
        "m": m,
        **drawn,
        "won": won,
        "p_win": p_win,
        "close": close,
        "is_open": is_open,
    }


def draw_contacts(rng: np.random.Generator, acc: dict, opp: dict, horizon: float) -> dict:
    """Background contacts, each deal's buying committee and late procurement, by account.

    Returns:
        Arrays sorted by account then creation day, plus where each deal's contacts ended up
        (``pre_row``/``late_row``) so the activities can prove their engagement.
    """
    n = acc["n"]
    n_bg = np.minimum(rng.poisson(1.0 + 1.2 * np.log10(acc["employees"])), 60)
    bg_acc = np.repeat(np.arange(n, dtype=np.int32), n_bg)
    k = len(bg_acc)
    bg_role = pick(rng, np.cumsum([0.07, 0.08, 0.24, 0.27, 0.08, 0.26]), k).astype(np.int8)
    # Most CRMs predate the window; the rest of the contacts trickle in over time.
    before = rng.random(k) < 0.55
    bg_created = np.where(before, -rng.uniform(0.0, 1000.0, k), rng.uniform(0.0, horizon, k))

    m = opp["m"]
    pre_opp, pre_role, pre_created = _committee_contacts(rng, opp)

    # Procurement often joins only during the deal: visible in the CRM, but after the cut-off.
    late = (~opp["proc"]) & (rng.random(m) < np.where(opp["won"], 0.5, 0.2))
    late_end = np.minimum(opp["close"], horizon)
    late &= late_end - opp["t"] > 2.0
    late_opp = np.flatnonzero(late)
    late_created = (
        opp["t"][late_opp]
        + 1.0
        + rng.random(len(late_opp)) * (late_end[late_opp] - opp["t"][late_opp] - 1.0)
    )

    c_acc = np.concatenate([bg_acc, opp["acc"][pre_opp], opp["acc"][late_opp]]).astype(np.int32)
    c_role = np.concatenate([bg_role, pre_role, np.full(len(late_opp), _ROLE["procurement"])])
    c_created = np.floor(np.concatenate([bg_created, pre_created, late_created]))
    order = np.lexsort((c_created, c_acc))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    c_acc, c_role, c_created = c_acc[order], c_role[order].astype(np.int8), c_created[order]
    count = np.bincount(c_acc, minlength=n)
    offset = np.cumsum(count) - count

    title_pool = [t for r in ROLES for t in TITLES[r]]
    title_start = np.cumsum([0] + [len(TITLES[r]) for r in ROLES])[:-1]
    title_len = np.array([len(TITLES[r]) for r in ROLES])
    title = (
        title_start[c_role] + rng.integers(0, 1 << 30, len(c_role)) % title_len[c_role]
    ).astype(np.int16)
    n_bg_pre = k + len(pre_opp)
    return {
        "acc": c_acc,
        "role": c_role,
        "created": c_created,
        "title": title,
        "title_pool": title_pool,
        "count": count,
        "offset": offset,
        # Final row of each deal contact, for the activities that prove their engagement.
        "pre_row": inverse[k:n_bg_pre],
        "pre_opp": pre_opp,
        "late_row": inverse[n_bg_pre:],
        "late_opp": late_opp,
    }


def _committee_contacts(
    rng: np.random.Generator, opp: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Buying-committee members of each deal enter the CRM in the months before it is created.

    Returns:
        The deal of each member, their role code and the day they entered the CRM.
    """
    m = opp["m"]
    other_order = np.argsort(rng.random((m, 3)), axis=1)
    other_roles = np.array([_ROLE["influencer"], _ROLE["stakeholder"], _ROLE["end_user"]])
    other_mask = np.arange(3)[None, :] < opp["n_other"][:, None]
    pre_opp = np.concatenate(
        [
            np.flatnonzero(opp["eb"]),
            np.flatnonzero(opp["champ"]),
            np.flatnonzero(opp["proc"]),
            np.repeat(np.arange(m), 3).reshape(m, 3)[other_mask],
        ]
    )
    pre_role = np.concatenate(
        [
            np.full(opp["eb"].sum(), _ROLE["economic_buyer"]),
            np.full(opp["champ"].sum(), _ROLE["champion"]),
            np.full(opp["proc"].sum(), _ROLE["procurement"]),
            other_roles[other_order][other_mask],
        ]
    ).astype(np.int8)
    pre_created = opp["t"][pre_opp] - rng.uniform(5.0, 120.0, len(pre_opp))
    return pre_opp, pre_role, pre_created


def _resolve_outcomes(
    rng: np.random.Generator, acc: dict, drawn: dict, rank: np.ndarray, rel_amount: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Win or lose each opportunity and draw its days to close, with the planted coefficients.

    Returns:
        Won flags, win probabilities and days to close (clipped to 3-720 days).
    """
    a, t, m = drawn["acc"], drawn["t"], len(drawn["acc"])
    eb, champ, proc, n_other = drawn["eb"], drawn["champ"], drawn["proc"], drawn["n_other"]
    web30, meet30, surge, source = drawn["web30"], drawn["meet30"], drawn["surge"], drawn["source"]
    seg = acc["segment"][a]
    w = _WIN
    lin = (
        w["intercept"]
        + w["economic_buyer"] * eb
        + w["champion"] * champ
        + w["other_roles"] * n_other
        + w["log1p_web_30d"] * np.log1p(web30)
        + w["log1p_meetings_30d"] * np.log1p(meet30)
        + w["intent_surge_per_20"] * surge / 20.0
        + w["icp_industry"] * acc["icp"][a]
        + w["size_fit"] * acc["size_fit"][a]
        + w["uses_competitor"] * acc["uses_competitor"][a]
        + w["unobserved_sd"] * rng.normal(0.0, 1.0, m)
    )
    s = _SPEED
    log_days = (
        np.log(s["median_days"])
        + s["log_amount"] * rel_amount
        + s["procurement"] * proc
        + np.asarray(s["segment"])[seg]
        + s["inbound"] * (source == 0)
        + s["per_meeting_30d"] * np.minimum(meet30, 6)
        + s["noise_sd"] * rng.normal(0.0, 1.0, m)
    )
    u_win = rng.random(m)

    # Prior wins depend on earlier outcomes of the same account, so resolve rank by rank;
    # earlier opportunities of an account sit right before it because of the sort above.
    won = np.zeros(m, bool)
    days = np.zeros(m)
    prior_won = np.zeros(m, np.int16)
    p_win = np.zeros(m)
    for r in range(int(rank.max()) + 1 if m else 0):
        idx = np.flatnonzero(rank == r)
        for j in range(1, r + 1):
            prev = idx - j
            prior_won[idx] += won[prev] & (t[prev] + days[prev] < t[idx])
        p = sigmoid(lin[idx] + w["prior_won"] * (prior_won[idx] > 0))
        won[idx] = u_win[idx] < p
        p_win[idx] = p
        days[idx] = np.exp(log_days[idx] + s["lost"] * ~won[idx])
    days = np.clip(days, 3.0, 720.0)
    return won, p_win, days
