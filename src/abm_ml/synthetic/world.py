"""Synthetic account-based-marketing world with planted, documented ground truth.

The generator draws a CRM-like world (accounts, contacts, dated engagement, weekly third-party
intent, opportunities) in which the drivers of winning and of deal speed are known, so the
training and explanation stages can be checked against the truth. See
``docs/synthetic_world.md`` for the tables and the planted effects.

Everything is vectorised with numpy: event counts are drawn per account or per opportunity and
expanded with ``np.repeat``; the only Python loops run over small fixed ranges (opportunity rank
within an account, weeks of intent, account chunks for intent).

The effects are planted through the *events*: a latent per-opportunity "seriousness" drives how
many web visits, meetings and committee contacts show up before the opportunity is created, and
the win probability is a function of those realised event counts. A feature builder that only
looks at the tables before the cut-off can therefore recover them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from abm_ml.schema import ACCOUNT_ID, AMOUNT, CLOSED_AT, CREATED_AT, LOST, OPEN, OUTCOME, WON

__all__ = [
    "CHANNELS",
    "INDUSTRIES",
    "NOISE_FEATURES",
    "PLANTED_SPEED_DRIVERS",
    "PLANTED_WIN_DRIVERS",
    "REGIONS",
    "ROLES",
    "SEGMENTS",
    "SOURCES",
    "TABLES",
    "TECH_STACKS",
    "TOPICS",
    "World",
    "generate_world",
    "load_world",
]

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

INDUSTRIES = (
    "software",
    "financial_services",
    "healthcare",
    "manufacturing",
    "retail",
    "education",
    "logistics",
    "public_sector",
)
_INDUSTRY_P = (0.16, 0.12, 0.12, 0.16, 0.13, 0.09, 0.12, 0.10)
ICP_INDUSTRIES = ("software", "financial_services", "healthcare")
REGIONS = ("north_america", "emea", "uk_ireland", "apac", "latam")
_REGION_P = (0.38, 0.24, 0.12, 0.16, 0.10)
TECH_STACKS = ("cloud_native", "hybrid", "on_prem")
SEGMENTS = ("smb", "mid_market", "enterprise")
ROLES = ("economic_buyer", "champion", "influencer", "stakeholder", "procurement", "end_user")
CHANNELS = (
    "web_visit",
    "content_download",
    "email_open",
    "email_click",
    "paid_impression",
    "video_completion",
    "event_attended",
    "webinar_attended",
    "sales_meeting",
)
TOPICS = (
    "account_based_marketing",
    "sales_intelligence",
    "marketing_automation",
    "revenue_operations",
)
SOURCES = ("inbound", "outbound", "partner", "event")
TABLES = ("accounts", "contacts", "activities", "intent", "opportunities")

_ROLE = {r: i for i, r in enumerate(ROLES)}
_CH = {c: i for i, c in enumerate(CHANNELS)}
_TITLES = {
    "economic_buyer": ("CFO", "CMO", "Chief Revenue Officer", "VP Finance", "VP Marketing"),
    "champion": ("Head of Marketing Ops", "Director of Demand Gen", "Head of RevOps", "ABM Lead"),
    "influencer": ("Marketing Manager", "Sales Ops Manager", "Data Analyst", "IT Architect"),
    "stakeholder": ("Head of Sales", "Director of IT", "Security Officer", "Head of Data"),
    "procurement": ("Procurement Manager", "Purchasing Lead", "Vendor Manager"),
    "end_user": ("SDR", "Account Executive", "Marketing Specialist", "Campaign Manager"),
}
_NAME_HEAD = (
    "Northwind",
    "Contoso",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Acme",
    "Vandelay",
    "Hooli",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Aperture",
    "Massive",
    "Pied Piper",
    "Dunder",
    "Blue Sun",
    "Monarch",
    "Nakatomi",
    "Paper Street",
    "Virtucon",
    "Zorg",
    "Sterling",
    "Bluth",
    "Prestige",
    "Gekko",
    "Kramerica",
    "Octan",
)
_NAME_TAIL = (
    "Systems",
    "Analytics",
    "Health",
    "Logistics",
    "Capital",
    "Labs",
    "Foods",
    "Industries",
    "Software",
    "Partners",
    "Retail",
    "Learning",
    "Networks",
    "Energy",
    "Dynamics",
    "Group",
)
_NAME_FORM = ("Inc", "Ltd", "GmbH", "LLC", "SA", "plc")
_FIRST = (
    "Alex",
    "Sam",
    "Jordan",
    "Taylor",
    "Morgan",
    "Casey",
    "Riley",
    "Jamie",
    "Robin",
    "Avery",
    "Dana",
    "Kim",
    "Lee",
    "Chris",
    "Pat",
    "Noor",
    "Mika",
    "Ines",
    "Lars",
    "Priya",
    "Tomas",
    "Yuki",
    "Omar",
    "Lena",
    "Raj",
    "Sofia",
    "Ben",
    "Ana",
    "Jonas",
    "Maya",
    "Leo",
    "Zoe",
    "Ivan",
    "Elif",
    "Hugo",
    "Aisha",
    "Nils",
    "Mei",
    "Diego",
    "Sara",
)
_LAST = (
    "Smith",
    "Garcia",
    "Muller",
    "Rossi",
    "Dubois",
    "Kowalski",
    "Tanaka",
    "Silva",
    "Novak",
    "Jensen",
    "Ahmed",
    "Okafor",
    "Kim",
    "Nguyen",
    "Patel",
    "Costa",
    "Berg",
    "Fischer",
    "Moreau",
    "Lopez",
    "Ivanova",
    "Schmidt",
    "Brown",
    "Wilson",
    "Haddad",
    "Santos",
    "Lind",
    "Weber",
    "Martin",
    "Rahman",
    "Olsen",
    "Park",
    "Ward",
    "Keller",
    "Sato",
    "Meyer",
    "Evans",
    "Reyes",
    "Kaur",
    "Visser",
)

# --------------------------------------------------------------------------------------------
# Planted ground truth (feature names are the columns produced by abm_ml.features.point_in_time)
# --------------------------------------------------------------------------------------------

PLANTED_WIN_DRIVERS: tuple[str, ...] = (
    "economic_buyer_engaged_90d",
    "champion_engaged_90d",
    "web_visits_30d",
    "uses_competitor",
    "intent_score_latest",
    "prior_won_deals",
    "industry",
    "intent_trend_4w",
    "employees",
    "committee_roles_engaged_90d",
    "sales_meetings_30d",
)
"""Features that carry the planted win effects, strongest first (see docs/synthetic_world.md)."""

PLANTED_SPEED_DRIVERS: tuple[str, ...] = (
    AMOUNT,
    "procurement_engaged_90d",
    "segment",
    "source",
    "sales_meetings_30d",
)
"""Features that carry the planted days-to-close effects, strongest first."""

NOISE_FEATURES: tuple[str, ...] = (
    "founded_year",
    "fiscal_year_end_month",
    "crm_data_quality",
    "has_parent",
)
"""Features drawn independently of everything planted: they must not matter."""

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

_DAY_S = 86_400
# Columns stored as category over a parent table's keys.
_KEY_COLUMNS = {
    "contacts": (ACCOUNT_ID,),
    "activities": (ACCOUNT_ID, "contact_id"),
    "intent": (ACCOUNT_ID,),
    "opportunities": (ACCOUNT_ID,),
}
_HISTORY_DAYS = 90  # opportunities start this late so every one has a full look-back window
_INTENT_CHUNK = 20_000
_MAX_OPPS_PER_ACCOUNT = 12


# --------------------------------------------------------------------------------------------
# World container
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class World:
    """A generated (or loaded) ABM world.

    Attributes:
        accounts: One row per account (``account_id`` is a plain string key).
        contacts: One row per CRM contact.
        activities: One row per engagement event.
        intent: Weekly third-party intent scores (only weeks a vendor reported).
        opportunities: One row per opportunity.
        as_of: End of the world; every event happened strictly before it.
        start: First day of the world.
        seed: Seed it was generated with (``None`` when unknown).

    Child tables store ``account_id`` (and ``activities.contact_id``) as ``category`` whose
    categories are the parent keys, so a million-account world stays small in memory.
    """

    accounts: pd.DataFrame
    contacts: pd.DataFrame
    activities: pd.DataFrame
    intent: pd.DataFrame
    opportunities: pd.DataFrame
    as_of: pd.Timestamp
    start: pd.Timestamp
    seed: int | None = None

    @property
    def n_accounts(self) -> int:
        """Number of accounts."""
        return len(self.accounts)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Return the tables by name, in :data:`TABLES` order."""
        return {name: getattr(self, name) for name in TABLES}

    def save(self, directory: str | Path) -> Path:
        """Write one Parquet file per table plus ``world.json``.

        Args:
            directory: Target folder, created when missing.

        Returns:
            The folder written to.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in self.tables().items():
            table = pa.Table.from_pandas(frame, preserve_index=False)
            for col in _KEY_COLUMNS.get(name, ()):
                # Arrow would copy a million-entry dictionary into every row group; plain
                # strings let Parquet dictionary-encode only the keys each row group uses.
                i = table.schema.get_field_index(col)
                if pa.types.is_dictionary(table.schema.field(i).type):
                    table = table.set_column(i, col, pc.cast(table.column(i), pa.string()))
            pq.write_table(table, out / f"{name}.parquet")
        meta = {
            "seed": self.seed,
            "n_accounts": self.n_accounts,
            "start": self.start.date().isoformat(),
            "end": self.as_of.date().isoformat(),
            "as_of": self.as_of.isoformat(),
            "tables": list(TABLES),
        }
        (out / "world.json").write_text(json.dumps(meta, indent=2) + "\n")
        return out


def load_world(directory: str | Path) -> World:
    """Read a world written by :meth:`World.save`.

    Args:
        directory: Folder holding the Parquet files and ``world.json``.

    Returns:
        The world, with the same dtypes as when it was saved.
    """
    src = Path(directory)
    meta = json.loads((src / "world.json").read_text())
    tables: dict[str, pd.DataFrame] = {}
    parents: dict[str, tuple[pa.Array, pd.CategoricalDtype]] = {}
    # Parents first: their keys turn the children's key columns back into categories.
    for name, key in (("accounts", ACCOUNT_ID), ("contacts", "contact_id")):
        table = pq.read_table(src / f"{name}.parquet")
        tables[name] = _read_keyed(table, name, parents)
        keys = pd.Index(tables[name][key].array)
        parents[key] = (table.column(key).combine_chunks(), pd.CategoricalDtype(keys))
    for name in ("activities", "intent", "opportunities"):
        tables[name] = _read_keyed(pq.read_table(src / f"{name}.parquet"), name, parents)
    return World(
        **{name: tables[name] for name in TABLES},
        as_of=pd.Timestamp(meta["as_of"]),
        start=pd.Timestamp(meta["start"]),
        seed=meta.get("seed"),
    )


def _read_keyed(table: pa.Table, name: str, parents: dict) -> pd.DataFrame:
    """Arrow table to pandas, key columns straight to category codes (no Python strings)."""
    key_cols = [c for c in _KEY_COLUMNS.get(name, ()) if c in parents]
    order = list(table.column_names)
    codes = {}
    for col in key_cols:
        pos = pc.index_in(table.column(col), value_set=parents[col][0])
        codes[col] = pos.fill_null(-1).to_numpy().astype(np.int32)
    frame = table.drop_columns(key_cols).to_pandas()
    for col in key_cols:
        frame[col] = pd.Categorical.from_codes(codes[col], dtype=parents[col][1])
    return frame[order]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _format_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Format integers as fixed-width ids ("A0000123") without a Python loop per id."""
    numbers = np.asarray(numbers, dtype=np.int64)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    buf = np.empty((len(numbers), len(head) + width), dtype=np.uint8)
    buf[:, : len(head)] = head
    rest = numbers.copy()
    for pos in range(width - 1, -1, -1):
        buf[:, len(head) + pos] = ord("0") + rest % 10
        rest //= 10
    fixed = buf.view(f"S{len(head) + width}").ravel()
    return fixed.astype(f"U{len(head) + width}").astype(object)


def _pick(rng: np.random.Generator, cum_p: np.ndarray, size: int) -> np.ndarray:
    """Draw category codes from one cumulative probability vector."""
    return np.searchsorted(cum_p, rng.random(size), side="right").clip(0, len(cum_p) - 1)


def _pick_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Draw one category code per row from a row-wise probability matrix."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(probs))[:, None]
    return (u > cum).sum(axis=1).astype(np.int8)


def _categorical(codes: np.ndarray, categories) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories))


def _to_timestamps(origin: pd.Timestamp, days: np.ndarray) -> np.ndarray:
    """Convert float days since ``origin`` to datetime64[ns], floored to whole seconds."""
    secs = np.floor(np.asarray(days, dtype=np.float64) * _DAY_S).astype(np.int64)
    return (origin.to_datetime64().astype("datetime64[s]") + secs.astype("timedelta64[s]")).astype(
        "datetime64[ns]"
    )


def _secs_to_timestamps(origin: pd.Timestamp, secs: np.ndarray) -> np.ndarray:
    """Turn int64 seconds since ``origin`` into datetime64[ns] in place (saves a copy at 30M)."""
    secs += int(origin.value // 1_000_000_000)
    secs *= 1_000_000_000
    return secs.view("datetime64[ns]")


def _to_dates(origin: pd.Timestamp, days: np.ndarray) -> np.ndarray:
    """Convert float days since ``origin`` to midnight datetime64[ns] (a CRM date field)."""
    whole = np.floor(np.asarray(days, dtype=np.float64)).astype(np.int64)
    return (origin.to_datetime64().astype("datetime64[D]") + whole.astype("timedelta64[D]")).astype(
        "datetime64[ns]"
    )


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


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


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
    if horizon < _HISTORY_DAYS + 30:
        raise ValueError("the world needs at least 120 days between start and end")

    # Independent streams per table, so changing one table's draws leaves the others alone.
    seeds = np.random.SeedSequence(seed).spawn(5)
    rng_acc, rng_opp, rng_con, rng_act, rng_int = (np.random.default_rng(s) for s in seeds)

    acc = _draw_accounts(rng_acc, n_accounts)
    opp = _draw_opportunities(rng_opp, acc, horizon)
    con = _draw_contacts(rng_con, acc, opp, horizon)
    act = _draw_activities(rng_act, acc, opp, con, horizon)
    intent = _draw_intent(rng_int, acc, opp, t0, t_end)

    accounts = _accounts_frame(acc)
    acc_dtype = pd.CategoricalDtype(accounts[ACCOUNT_ID].array)
    contacts = _contacts_frame(con, acc_dtype, t0)
    con_dtype = pd.CategoricalDtype(contacts["contact_id"].array)
    activities = pd.DataFrame(
        {
            ACCOUNT_ID: pd.Categorical.from_codes(act["acc"], dtype=acc_dtype),
            "contact_id": pd.Categorical.from_codes(act["contact"], dtype=con_dtype),
            "occurred_at": _secs_to_timestamps(t0, act.pop("secs")),
            "channel": _categorical(act["channel"], CHANNELS),
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
            "topic": _categorical(intent["topic"], TOPICS),
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


def _draw_accounts(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    industry = _pick(rng, np.cumsum(_INDUSTRY_P), n).astype(np.int8)
    region = _pick(rng, np.cumsum(_REGION_P), n).astype(np.int8)
    log_emp = rng.normal(np.log(150.0), 1.4, n)
    employees = np.clip(np.round(np.exp(log_emp)), 2, 400_000).astype(np.int32)
    log_emp = np.log(employees.astype(np.float64))
    segment = np.where(employees >= 1000, 2, np.where(employees >= 100, 1, 0)).astype(np.int8)
    revenue = np.round(employees * np.exp(rng.normal(np.log(180_000.0), 0.45, n)), -3)

    # Software buyers run in the cloud, the public sector and factories keep servers at home.
    p_cloud = np.where(industry == 0, 0.55, 0.3)
    p_prem = np.where(np.isin(industry, (3, 7)), 0.4, 0.18)
    probs = np.stack([p_cloud, 1.0 - p_cloud - p_prem, p_prem], axis=1)
    tech = _pick_rows(rng, probs)
    uses_competitor = rng.random(n) < 0.3

    is_sub = (rng.random(n) < 0.08) if n > 1 else np.zeros(n, bool)
    parents = np.flatnonzero(~is_sub)
    parent = np.full(n, -1, dtype=np.int64)
    if is_sub.any():
        parent[is_sub] = parents[rng.integers(0, len(parents), is_sub.sum())]

    owner_assigned = rng.random(n) < np.array([0.3, 0.55, 0.85])[segment]
    n_reps = int(np.clip(n // 250, 8, len(_FIRST) * len(_LAST)))
    rep_pool = np.array([f"{f} {s}" for f in _FIRST for s in _LAST], dtype=object)
    reps = np.sort(rep_pool[rng.permutation(len(rep_pool))[:n_reps]])
    owner = np.where(owner_assigned, rng.integers(0, n_reps, n), -1).astype(np.int32)

    names = np.array(
        [f"{h} {t} {f}" for h in _NAME_HEAD for t in _NAME_TAIL for f in _NAME_FORM], dtype=object
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


def _draw_opportunities(rng: np.random.Generator, acc: dict, horizon: float) -> dict:
    n = acc["n"]
    z = acc["interest"]
    years = (horizon - _HISTORY_DAYS) / 365.0
    rate = 0.4 * np.exp(0.55 * z + 0.15 * (acc["log_emp"] - np.log(150.0)))
    n_opp = np.minimum(rng.poisson(rate * years), _MAX_OPPS_PER_ACCOUNT)
    a = np.repeat(np.arange(n, dtype=np.int32), n_opp)
    m = len(a)
    t = rng.uniform(_HISTORY_DAYS, horizon, m)
    order = np.lexsort((t, a))
    a, t = a[order], t[order]
    first = np.repeat(np.cumsum(n_opp) - n_opp, n_opp)
    rank = np.arange(m) - first

    seg = acc["segment"][a]
    owned = acc["owner_assigned"][a]
    # Seriousness of this buying cycle: partly the account's interest, partly the deal's own.
    q = 0.6 * z[a] + 0.8 * rng.normal(0.0, 1.0, m)

    src_logits = np.stack([0.6 * q, 0.2 + 0.4 * owned, np.full(m, -0.9), np.full(m, -1.1)], axis=1)
    source = _pick_rows(rng, np.exp(src_logits))
    log_amount = (
        np.log(20_000.0)
        + 0.5 * (acc["log_emp"][a] - np.log(150.0))
        + 0.1 * q
        + rng.normal(0.0, 0.55, m)
    )
    amount = np.round(np.clip(np.exp(log_amount), 2_000, 5_000_000), -2)
    rel_amount = np.log(amount / 20_000.0)

    eb = rng.random(m) < _sigmoid(-1.0 + 1.0 * q + 0.3 * (seg == 2))
    champ = rng.random(m) < _sigmoid(-0.6 + 1.0 * q)
    proc = rng.random(m) < _sigmoid(-1.6 + 1.1 * (seg == 2) + 0.5 * (seg == 1) + 0.3 * rel_amount)
    n_other = rng.binomial(3, _sigmoid(-0.4 + 0.6 * q)).astype(np.int8)
    web30 = rng.poisson(np.exp(0.7 + 0.6 * q))
    web90 = rng.poisson(np.exp(0.2 + 0.4 * q))
    dl90 = rng.poisson(np.exp(-0.6 + 0.5 * q))
    clicks30 = rng.poisson(np.exp(-0.4 + 0.5 * q))
    meet30 = rng.poisson(np.exp(-1.2 + 0.5 * q + 0.8 * owned))
    surge = np.clip(rng.normal(8.0 + 14.0 * q, 6.0), 0.0, 70.0)
    topic = rng.integers(0, len(TOPICS), m).astype(np.int8)

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
        p = _sigmoid(lin[idx] + w["prior_won"] * (prior_won[idx] > 0))
        won[idx] = u_win[idx] < p
        p_win[idx] = p
        days[idx] = np.exp(log_days[idx] + s["lost"] * ~won[idx])
    days = np.clip(days, 3.0, 720.0)
    close = t + days
    is_open = close >= horizon
    return {
        "m": m,
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
        "won": won,
        "p_win": p_win,
        "close": close,
        "is_open": is_open,
    }


def _draw_contacts(rng: np.random.Generator, acc: dict, opp: dict, horizon: float) -> dict:
    n = acc["n"]
    n_bg = np.minimum(rng.poisson(1.0 + 1.2 * np.log10(acc["employees"])), 60)
    bg_acc = np.repeat(np.arange(n, dtype=np.int32), n_bg)
    k = len(bg_acc)
    bg_role = _pick(rng, np.cumsum([0.07, 0.08, 0.24, 0.27, 0.08, 0.26]), k).astype(np.int8)
    # Most CRMs predate the window; the rest of the contacts trickle in over time.
    before = rng.random(k) < 0.55
    bg_created = np.where(before, -rng.uniform(0.0, 1000.0, k), rng.uniform(0.0, horizon, k))

    # Buying-committee members of each deal enter the CRM in the months before it is created.
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

    title_pool = [t for r in ROLES for t in _TITLES[r]]
    title_start = np.cumsum([0] + [len(_TITLES[r]) for r in ROLES])[:-1]
    title_len = np.array([len(_TITLES[r]) for r in ROLES])
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


def _draw_activities(
    rng: np.random.Generator, acc: dict, opp: dict, con: dict, horizon: float
) -> dict:
    n = acc["n"]
    ch = _CH
    parts: list[tuple[np.ndarray, ...]] = []  # (acc, t, channel, contact, deep_visit)

    def pick_contact(a: np.ndarray, t: np.ndarray) -> np.ndarray:
        return _pick_contacts(rng, a, t, con["offset"], con["count"], con["created"])

    # Background engagement all period long: interested and bigger accounts engage more.
    rate = 0.015 * np.exp(0.5 * acc["interest"] + 0.2 * (acc["log_emp"] - np.log(150.0)))
    n_bg = rng.poisson(rate * horizon)
    a = np.repeat(np.arange(n, dtype=np.int32), n_bg)
    k = len(a)
    t = rng.uniform(0.0, horizon, k)
    mix = np.array([0.22, 0.05, 0.25, 0.07, 0.25, 0.05, 0.015, 0.035, 0.05])
    c = _pick(rng, np.cumsum(mix / mix.sum()), k).astype(np.int8)
    # Without an owner nobody books meetings; those touches are just newsletter opens.
    unowned_meeting = (c == ch["sales_meeting"]) & ~acc["owner_assigned"][a]
    c[unowned_meeting & (rng.random(k) < 0.8)] = ch["email_open"]
    identified_p = np.array([0.25, 0.9, 1.0, 1.0, 0.0, 0.3, 0.9, 0.95, 1.0])
    contact = np.where(rng.random(k) < identified_p[c], pick_contact(a, t), -1).astype(np.int32)
    # Executives ignore most marketing; their touches stay anonymous unless a deal is on.
    responsive = np.array([0.15, 0.4, 1.0, 0.7, 0.3, 1.0])
    role = con["role"][np.maximum(contact, 0)]
    contact[(contact >= 0) & (rng.random(k) >= responsive[role])] = -1
    parts.append((a, t, c, contact, np.zeros(k, bool)))

    # The buying cycle before each opportunity: counts drawn in _draw_opportunities.
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

    # Committee members engage after joining the CRM and before the deal is created.
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
    cc = committee_ch[_pick(rng, committee_mix, len(rows_r))]
    parts.append((opp["acc"][o_r], when, cc, rows_r.astype(np.int32), np.zeros(len(o_r), bool)))

    # During the deal: meetings (invisible to features as of creation) and late procurement.
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

    a = np.concatenate([p[0] for p in parts]).astype(np.int32, copy=False)
    secs = np.concatenate([np.floor(p[1] * _DAY_S).astype(np.int64) for p in parts])
    c = np.concatenate([p[2] for p in parts]).astype(np.int8, copy=False)
    contact = np.concatenate([p[3] for p in parts]).astype(np.int32, copy=False)
    deep = np.concatenate([p[4] for p in parts])
    parts.clear()  # drop the pieces before the big sort below
    keep = (secs >= 0) & (secs < int(horizon) * _DAY_S)
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


def _draw_intent(
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


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def _accounts_frame(acc: dict) -> pd.DataFrame:
    n = acc["n"]
    ids = _format_ids("A", np.arange(1, n + 1), 7)
    parent = np.where(acc["parent"] >= 0, ids[np.maximum(acc["parent"], 0)], None)
    return pd.DataFrame(
        {
            ACCOUNT_ID: ids,
            "name": acc["name"],
            "industry": _categorical(acc["industry"], INDUSTRIES),
            "region": _categorical(acc["region"], REGIONS),
            "employees": acc["employees"],
            "annual_revenue": acc["revenue"],
            "segment": _categorical(acc["segment"], SEGMENTS),
            "uses_competitor": acc["uses_competitor"],
            "tech_stack": _categorical(acc["tech"], TECH_STACKS),
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
            "contact_id": _format_ids("C", np.arange(1, k + 1), 8),
            ACCOUNT_ID: pd.Categorical.from_codes(con["acc"], dtype=acc_dtype),
            "role": _categorical(con["role"], ROLES),
            "title": _categorical(con["title"], con["title_pool"]),
            CREATED_AT: _to_dates(t0, con["created"]),
        }
    )


def _opportunities_frame(opp: dict, acc_dtype: pd.CategoricalDtype, t0: pd.Timestamp):
    m = opp["m"]
    outcome = np.where(opp["is_open"], 2, np.where(opp["won"], 0, 1)).astype(np.int8)
    closed = _to_timestamps(t0, opp["close"])
    closed[opp["is_open"]] = np.datetime64("NaT")
    return pd.DataFrame(
        {
            "opportunity_id": _format_ids("O", np.arange(1, m + 1), 8),
            ACCOUNT_ID: pd.Categorical.from_codes(opp["acc"], dtype=acc_dtype),
            CREATED_AT: _to_timestamps(t0, opp["t"]),
            CLOSED_AT: closed,
            OUTCOME: _categorical(outcome, (WON, LOST, OPEN)),
            AMOUNT: opp["amount"],
            "source": _categorical(opp["source"], SOURCES),
        }
    )
