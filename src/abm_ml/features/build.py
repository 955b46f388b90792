"""Rows from a multi-table spec: read the CRM objects, build point-in-time rows, write them.

``abm-ml rows SPEC`` runs :func:`build_rows` then :func:`write_rows`: the training rows (each
opportunity as of its creation) land where the spec's ``source`` reads them, the scoring rows
(each account as of ``tables.as_of``) beside them for ``abm-ml rank``, and the rejects of every
table in ``table_rejects.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from abm_ml.data.spec import DatasetSpec
from abm_ml.data.tables import CrmTables, load_tables
from abm_ml.errors import AbmInputError
from abm_ml.features.point_in_time import build_opportunity_rows, build_scoring_rows

__all__ = ["BuiltRows", "build_rows", "write_rows"]

TRAINING_ROWS = "training_rows.parquet"
SCORING_ROWS = "scoring_rows.parquet"
TABLE_REJECTS = "table_rejects.csv"


@dataclass(eq=False)
class BuiltRows:
    """What a multi-table spec's tables gave: the tables (with rejects) and the two row sets."""

    tables: CrmTables
    training: pd.DataFrame
    scoring: pd.DataFrame
    as_of: pd.Timestamp


def build_rows(spec: DatasetSpec, as_of: str | pd.Timestamp | None = None) -> BuiltRows:
    """Read the spec's tables and build training and scoring rows.

    Args:
        spec: A loaded spec with a ``tables:`` part.
        as_of: Date of the scoring rows; ``tables.as_of``, else the latest event, when absent.

    Returns:
        The tables and rows.

    Raises:
        AbmInputError: The spec has no ``tables:``, a table cannot be read, or ``as_of`` is
            not a date.
    """
    if spec.tables is None:
        raise AbmInputError(
            "this spec has no `tables:` part (see docs/crm-objects.md)", source=spec.spec_path
        )
    tables = load_tables(spec.tables)
    when = as_of or spec.tables.as_of
    try:
        stamp = pd.Timestamp(when) if when else tables.latest_event()
    except ValueError:
        raise AbmInputError(f"as_of {when!r} is not a date", source=spec.spec_path) from None
    return BuiltRows(
        tables=tables,
        training=build_opportunity_rows(tables),
        scoring=build_scoring_rows(tables, stamp),
        as_of=stamp,
    )


def write_rows(built: BuiltRows, out: str | Path) -> dict[str, Path]:
    """Write the training rows, scoring rows and table rejects into ``out``.

    Returns:
        The written files by kind (``training``, ``scoring``, ``rejects``).
    """
    from abm_ml.modeling.ranking import neutralise_formulas

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "training": folder / TRAINING_ROWS,
        "scoring": folder / SCORING_ROWS,
        "rejects": folder / TABLE_REJECTS,
    }
    built.training.to_parquet(paths["training"], index=False)
    built.scoring.to_parquet(paths["scoring"], index=False)
    # Opened in Excel like the rankings: CRM values must not run there as formulas.
    neutralise_formulas(built.tables.rejects).to_csv(paths["rejects"], index=False)
    return paths
