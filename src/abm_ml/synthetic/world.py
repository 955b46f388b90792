"""The synthetic ABM world: its tables, vocabularies and planted truth, saved and loaded.

:class:`World` holds the tables; :func:`load_world` reads what :meth:`World.save` wrote. The
generator (:func:`abm_ml.synthetic.generate.generate_world`) draws a CRM-like world (accounts, contacts, dated engagement, weekly third-party
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
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from abm_ml.data.roles import ROLES
from abm_ml.data.tables import CHANNELS
from abm_ml.schema import ACCOUNT_ID, AMOUNT

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
ICP_INDUSTRIES = ("software", "financial_services", "healthcare")
REGIONS = ("north_america", "emea", "uk_ireland", "apac", "latam")
TECH_STACKS = ("cloud_native", "hybrid", "on_prem")
SEGMENTS = ("smb", "mid_market", "enterprise")
TOPICS = (
    "account_based_marketing",
    "sales_intelligence",
    "marketing_automation",
    "revenue_operations",
)
SOURCES = ("inbound", "outbound", "partner", "event")
TABLES = ("accounts", "contacts", "activities", "intent", "opportunities")


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

# Columns stored as category over a parent table's keys.
_KEY_COLUMNS = {
    "contacts": (ACCOUNT_ID,),
    "activities": (ACCOUNT_ID, "contact_id"),
    "intent": (ACCOUNT_ID,),
    "opportunities": (ACCOUNT_ID,),
}


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
