"""What the model knows about each feature, and the one yes/no vocabulary.

This module is the contract between data loading and the served model: the packaged scorer
carries :class:`FeatureInfo` objects and parses booleans with :func:`parse_yes_no`, so serving
never imports the data-loading code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

YES_WORDS = frozenset({"true", "yes", "y", "t", "1", "1.0"})
"""Spellings of "yes" in CRM exports and requests (compared after strip and lower-case)."""
NO_WORDS = frozenset({"false", "no", "n", "f", "0", "0.0"})
"""Spellings of "no"."""


@dataclass(frozen=True)
class FeatureInfo:
    """A feature as the model sees it: identifier, type and the words that explain it."""

    name: str
    column: str
    type: str
    description: str
    template: str | None = None
    true_text: str | None = None
    false_text: str | None = None
    missing_text: str | None = None
    monotone: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def parse_yes_no(values: pd.Series) -> pd.Series:
    """Yes/no values as 1.0/0.0; anything else (blank, unknown word) as NaN.

    Numbers and booleans are taken as they are (non-zero is yes); text is compared with
    :data:`YES_WORDS` and :data:`NO_WORDS` after stripping and lower-casing.
    """
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        numbers = values.astype(float)
        return numbers.where(numbers.isna(), (numbers != 0).astype(float))
    # Each distinct value is read once: a yes/no column holds a handful of spellings. A column
    # of mixed values (a JSON body) may hold numbers and booleans too: read as numbers.
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    on_uniques = np.array([yes_no_value(u) for u in uniques.tolist()] + [np.nan])
    return pd.Series(on_uniques.take(codes), index=values.index, dtype=float)


def yes_no_value(value: object) -> float:
    """One present value read as yes/no: 1.0, 0.0, or NaN for anything else.

    Text is compared with :data:`YES_WORDS` and :data:`NO_WORDS` after stripping and
    lower-casing; numbers and booleans are yes when non-zero.
    """
    if isinstance(value, str):
        word = value.strip().lower()
        return 1.0 if word in YES_WORDS else 0.0 if word in NO_WORDS else np.nan
    try:
        return float(float(value) != 0)
    except (TypeError, ValueError):
        return np.nan  # a date or other object: not a yes/no value


def is_yes(value: object) -> bool:
    """One value (already known not to be missing) read as yes/no: the reasons' wording."""
    if isinstance(value, str):
        return value.strip().lower() in YES_WORDS
    return bool(float(value))
