"""Joining extra sources onto the main one without losing a row.

Right-side rows with a blank, duplicate or unmatched key are rejected with their reason; an inner
join reports the main rows it drops; a note says how many right-side rows were used, so that rows
read = accepted + rejected + right-side rows used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from abm_ml.data.readers import SOURCE_ROW, RawTable, require_columns
from abm_ml.data.spec import JoinSpec
from abm_ml.errors import AbmInputError


def _join_key(values: pd.Series, match: str) -> pd.Series:
    """Key text; a loose match ignores case, spaces and punctuation ('ACME Inc.' = 'acme inc')."""
    if match == "loose":
        return values.astype("string").str.casefold().str.replace(r"[^0-9a-z]", "", regex=True)
    return values.astype("string")


def as_rejects(rows: pd.DataFrame, reason: str | np.ndarray, file: str) -> pd.DataFrame:
    """Rows as a rejects table: file, reason, then the source line and the original values."""
    bad = rows.copy()
    bad.insert(0, "reason", reason)
    bad.insert(0, "file", file)
    return bad.rename(columns={SOURCE_ROW: "line"})


def join_source(
    left: pd.DataFrame,
    right_table: RawTable,
    join: JoinSpec,
    rejects_out: list[pd.DataFrame],
    notes: list[str],
    left_name: str = "main source",
) -> pd.DataFrame:
    """Join ``right_table`` onto ``left`` as ``join`` says (many left rows to one right row).

    Rejected rows (of either side) are appended to ``rejects_out``; a note on the rows used is
    appended to ``notes``.

    Raises:
        AbmInputError: a join key column is missing.
    """
    right = right_table.frame.rename(columns={SOURCE_ROW: f"{SOURCE_ROW}_join"})
    if join.left_key not in left.columns:
        raise AbmInputError(
            f"join key {join.left_key!r} is not in the main source",
            source=left_name,
            field="source.join",
        )
    require_columns(right_table, [("source.join.on", join.right_key)])
    key_left = _join_key(left[join.left_key], join.match)
    key_right = _join_key(right[join.right_key], join.match)
    right = right.assign(_join_key=key_right.values)

    blank = key_right.isna() | (key_right == "")
    duplicate = key_right.duplicated(keep="first") & ~blank
    unmatched = ~key_right.isin(set(key_left.dropna())) & ~blank & ~duplicate
    for mask, reason in (
        (blank, f"blank join key {join.right_key!r}"),
        (duplicate, f"duplicate join key {join.right_key!r} (first occurrence used)"),
        (unmatched, f"no matching row in the main source for join key {join.right_key!r}"),
    ):
        if mask.any():
            rejects_out.append(as_rejects(right_table.frame[mask.values], reason, right_table.name))
    right = right[~(blank | duplicate | unmatched).values]
    if join.how == "inner":
        # An inner join drops main rows without a match: report them instead of losing them.
        dropped = ~key_left.isin(set(right["_join_key"])).fillna(False)
        if dropped.any():
            reason = f"no matching row in {right_table.name} for join key {join.left_key!r}"
            rejects_out.append(as_rejects(left[dropped.values], reason, left_name))

    overlap = sorted(
        (set(right.columns) & set(left.columns))
        - {join.right_key if join.right_key == join.left_key else ""}
    )
    if overlap:
        right = right.rename(columns={c: f"{c}_{Path(right_table.name).stem}" for c in overlap})
    right_key_col = (
        join.right_key
        if join.right_key not in overlap
        else f"{join.right_key}_{Path(right_table.name).stem}"
    )
    merged = left.assign(_join_key=key_left.values).merge(
        # A right key named like the left key repeats it (it would come back as `<key>_right`); a
        # differently named one is kept, since a spec may use it (e.g. as a present_means_won label).
        right.drop(columns=[right_key_col] if right_key_col == join.left_key else []),
        on="_join_key",
        how=join.how,
        suffixes=("", "_right"),
        validate="many_to_one",
    )
    # Right-side rows used are neither accepted nor rejected: say how many, so that the rows read
    # add up (rows read = accepted + rejected + right-side rows used).
    used = f"{len(right)} of its {len(right_table.frame)} rows used"
    if join.how == "left":
        matched = merged[f"{SOURCE_ROW}_join"].notna().sum()
        notes.append(f"join with {right_table.name}: {matched} of {len(left)} rows matched; {used}")
    else:
        notes.append(f"join with {right_table.name}: {used}")
    return merged.drop(columns=["_join_key", f"{SOURCE_ROW}_join"])
