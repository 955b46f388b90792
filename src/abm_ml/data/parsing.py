"""Value parsers shared by validation: numbers, dates, yes/no, missing placeholders, column types.

Each parser takes a column as read (text from a CSV, typed values from a SQL driver or Parquet)
and returns the parsed values with a mask of values that were present but could not be parsed,
so that validation can reject those rows with a reason instead of losing them. The parsers work
on the distinct values of a column only: CRM columns repeat a lot.
"""

from __future__ import annotations

import math
import re
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd

from abm_ml.modeling.feature_info import NO_WORDS, YES_WORDS, parse_yes_no, yes_no_value

_NUMBER_JUNK = re.compile(r"[\s$€£¥%]")
_CURRENCY_CODE = re.compile(r"^[A-Z]{3}(?=[\s\d(+-])|(?<=[\d)])\s*[A-Z]{3}$")
"""An ISO 4217 code before or after an amount: Salesforce's multi-currency 'USD 12,345.67',
'1.234,50 EUR'."""
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
_THOUSANDS_EU = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d*)?$")


def _by_unique(values: pd.Series, parse) -> pd.Series:
    """Apply ``parse`` (Series -> Series) to the distinct values only: CRM columns repeat a lot."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if values.dtype == object and len({type(u) for u in uniques.tolist()}) > 1:
        # Mixed types (a JSON body, a SQL driver): factorize takes False, 0 and 0.0 for one
        # value, and 1 for True, though each parses on its own. Every value, then.
        parsed = parse(pd.Series(values.to_numpy(dtype=object), dtype=object)).to_numpy()
        return pd.Series(parsed, index=values.index).where(codes >= 0, None)
    parsed_uniques = parse(pd.Series(uniques, dtype=object)).to_numpy()
    result = pd.Series(
        parsed_uniques.take(np.where(codes < 0, 0, codes))
        if len(uniques)
        else np.full(len(values), None),
        index=values.index,
    )
    return result.where(codes >= 0, None)


def missing_mask(values: pd.Series, tokens: frozenset[str]) -> pd.Series:
    """True where a value is missing or a missing placeholder (``tokens``, compared lower-cased)."""
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return values.isna()
    # Only text can be a placeholder: a SQL driver's dates, decimals and booleans are values.
    flags = _by_unique(
        values,
        lambda u: u.map(
            lambda v: v.strip().lower() in tokens if isinstance(v, str) else bool(pd.isna(v))
        ),
    )
    return values.isna() | flags.astype("boolean").fillna(True).astype(bool)


def clean_text(values: pd.Series, tokens: frozenset[str]) -> pd.Series:
    """Text with missing placeholders ('unknown', 'Select', blanks) turned into missing values."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values
    # One pass over the distinct values with the one-value cleaner (a plain loop: Series.map
    # with a lambda, twice, cost ~2.5 us per row on id columns, where every value is distinct).
    text = _by_unique(
        values, lambda u: pd.Series([clean_value(v, tokens) for v in u.tolist()], dtype=object)
    )
    return text.where(text.notna(), np.nan).astype(object)


def _parse_number_text(text: pd.Series, decimal: str) -> pd.Series:
    text = text.astype("string").str.strip().str.replace(_CURRENCY_CODE, "", regex=True)
    text = text.str.replace(_NUMBER_JUNK, "", regex=True)
    # Accounting negatives: (1,234) means -1234. Before the separators, whose patterns allow a sign.
    text = text.str.replace(r"^\((.*)\)$", r"-\1", regex=True)
    if decimal == ",":
        eu = text.str.fullmatch(_THOUSANDS_EU).fillna(False)
        text = text.where(~eu, text.str.replace(".", "", regex=False))
        text = text.str.replace(",", ".", regex=False)
    else:
        grouped = text.str.fullmatch(_THOUSANDS).fillna(False)
        text = text.where(~grouped, text.str.replace(",", "", regex=False))
    return pd.to_numeric(text, errors="coerce").astype(float).astype(object)


def parse_numbers(values: pd.Series, *, decimal: str = ".") -> tuple[pd.Series, pd.Series]:
    """Parse amounts like ' 1,234.50 ', '$12 000', '1.234,5' (with ``decimal=','``).

    Returns:
        The parsed floats and a mask of values that were present but could not be parsed.
    """
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype(float), pd.Series(False, index=values.index)
    text_only = isinstance(values.dtype, pd.StringDtype)  # a CSV's columns: no typed values
    parsed = _by_unique(values, lambda u: _parse_number_uniques(u, decimal, text_only))
    parsed = parsed.astype(float)
    bad = values.notna() & parsed.isna()
    return parsed, bad


def _parse_number_uniques(uniques: pd.Series, decimal: str, text_only: bool) -> pd.Series:
    """Distinct values as numbers: text through the text parser, typed values (a JSON body's
    numbers and booleans, a SQL driver's decimals) as the numbers they are."""
    parsed = _parse_plain_or_text(uniques, decimal)
    if not text_only:
        typed = [i for i, v in enumerate(uniques.tolist()) if not isinstance(v, str)]
        if typed:
            parsed.iloc[typed] = [_typed_number(uniques.iloc[i]) for i in typed]
    return parsed


def _parse_plain_or_text(uniques: pd.Series, decimal: str) -> pd.Series:
    """:func:`_parse_number_text`, with plain numbers ('24.59', '-3', '1e5') read directly.

    Most values of a CSV's number columns are plain, and the text parser's five passes of
    regular expressions cost ~10 s per million accounts. A value ``pd.to_numeric`` reads
    as it stands has no junk, parentheses or separators for the text parser to change, so
    both give the same number; with a decimal comma '1.234' means 1234, so no shortcut.
    """
    if decimal != "." or uniques.empty:
        return _parse_number_text(uniques, decimal)
    text = uniques.astype("string")
    plain = pd.to_numeric(text, errors="coerce").astype(float)
    rest = plain.isna() & text.notna()
    if rest.any():
        plain[rest] = _parse_number_text(uniques[rest], decimal).astype(float)
    return plain.astype(object)


def _typed_number(value: object) -> float:
    """A present value that is not text, as a number; NaN when it is none (a date, a list)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def parse_dates(values: pd.Series, formats: list[str]) -> tuple[pd.Series, pd.Series]:
    """Parse dates trying each format in order ('ISO' for ISO 8601); return values and a bad mask."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values)
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        return parsed.astype("datetime64[ns]"), pd.Series(False, index=values.index)

    def _parse(uniques: pd.Series) -> pd.Series:
        text = uniques.astype("string")
        parsed = pd.Series(pd.NaT, index=uniques.index, dtype="datetime64[ns]")
        # Dates that a SQL driver already typed (datetime.date objects) need no format.
        typed = uniques.map(lambda v: isinstance(v, date)).astype(bool)
        if typed.any():
            parsed.loc[typed] = (
                pd.to_datetime(uniques[typed], utc=True)
                .dt.tz_localize(None)
                .astype("datetime64[ns]")
            )
        for fmt in formats or ["ISO"]:
            todo = parsed.isna() & text.notna()
            if not todo.any():
                break
            if fmt.upper() == "ISO":
                attempt = pd.to_datetime(text[todo], errors="coerce", format="ISO8601", utc=True)
                attempt = attempt.dt.tz_convert("UTC").dt.tz_localize(None)
            else:
                attempt = pd.to_datetime(text[todo], errors="coerce", format=fmt)
            parsed.loc[todo] = attempt.astype("datetime64[ns]")
        return parsed.astype(object)

    parsed = pd.to_datetime(_by_unique(values, _parse)).astype("datetime64[ns]")
    bad = values.notna() & parsed.isna()
    return parsed, bad


def infer_type(values: pd.Series, *, decimal: str = ".") -> str:
    """Numeric when (almost) every present value is a number, boolean for yes/no columns, else categorical."""
    present = values.dropna()
    if present.empty:
        return "categorical"
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values):
        distinct = set(pd.unique(present))
        return (
            "boolean"
            if distinct <= {0, 1} and len(distinct) == 2 and values.dtype.kind in "iub"
            else "numeric"
        )
    lowered = set(present.astype(str).str.lower().unique()[:50])
    if (
        lowered <= (YES_WORDS | NO_WORDS)
        and lowered & YES_WORDS
        and lowered & NO_WORDS
        and not lowered <= {"0", "1"}
    ):
        return "boolean"
    parsed, bad = parse_numbers(present, decimal=decimal)
    if bad.mean() <= 0.02 and parsed.notna().any():
        return "numeric"
    return "categorical"


def category_text(values: pd.Series) -> pd.Series:
    """Categories as text: typed values (numbers from a SQL driver) become strings, missing is NaN."""
    text = _by_unique(
        values, lambda u: u.map(lambda v: v if isinstance(v, str) else str(v)).astype(object)
    )
    return text.astype(object).where(text.notna(), np.nan)


# --------------------------------------------------------------------------------------------
# One value at a time: the one-record scoring path. Each gives what the column parser above
# gives for a one-record column holding that value (the scorer's test checks it on many records).
# --------------------------------------------------------------------------------------------

_PLAIN_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
"""Text every number parser reads alike: ``float`` needs no help from the column parser."""


def is_missing_value(value: object) -> bool:
    """None, NaN, NA or NaT: what the column parsers take for missing."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (str, int)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def clean_value(value: object, tokens: frozenset[str]) -> object:
    """:func:`clean_text` of one value: stripped text, NaN for missing values and placeholders."""
    if isinstance(value, str):
        text = value.strip()
        return np.nan if text.lower() in tokens else text
    return np.nan if is_missing_value(value) else value


@lru_cache(maxsize=4096)
def _number_text(text: str, decimal: str) -> float:
    """:func:`_parse_number_text` of one text; cached, CRM columns repeat their formats."""
    return float(_parse_number_text(pd.Series([text], dtype=object), decimal).iloc[0])


def parse_number_value(value: object, *, decimal: str = ".") -> float:
    """:func:`parse_numbers` of one (cleaned) value: NaN when missing or unreadable."""
    if isinstance(value, str):
        # With a decimal comma a point separates thousands ('1.234'): only the column parser
        # knows, so plain text is a shortcut only where both read it alike.
        if (decimal == "." or "." not in value) and _PLAIN_DECIMAL.fullmatch(value):
            return float(value)
        return _number_text(value, decimal)
    if is_missing_value(value):
        return np.nan
    return _typed_number(value)  # int, float, bool, numpy number: as a numeric column is read


def parse_yes_no_value(value: object) -> float:
    """:func:`~abm_ml.modeling.feature_info.parse_yes_no` of one value: 1.0, 0.0 or NaN."""
    if is_missing_value(value):
        return np.nan
    return yes_no_value(value)


def category_value(value: object) -> object:
    """:func:`category_text` of one value: text, or NaN when missing."""
    if isinstance(value, str):
        return value
    return np.nan if is_missing_value(value) else str(value)


def parse_feature_value(value: object, kind: str, *, decimal: str = ".") -> object:
    """:func:`parse_feature_values` of one (cleaned) value, without the problem mask."""
    if kind == "numeric":
        return parse_number_value(value, decimal=decimal)
    if kind == "boolean":
        return parse_yes_no_value(value)
    return category_value(value)


def parse_feature_values(
    raw: pd.Series, kind: str, *, decimal: str = "."
) -> tuple[pd.Series, pd.Series, str]:
    """A feature column (placeholders already cleaned) as the model takes it, by type.

    Training (:func:`abm_ml.data.validate.load_dataset`) and scoring
    (:func:`abm_ml.data.records.canonical_records`) both call this, so a value is read the
    same way in both.

    Returns:
        The values (numeric as float, boolean as 0/1 float, categorical as text or NaN), a mask
        of values present but unreadable, and the words describing such a value.
    """
    if kind == "numeric":
        values, bad = parse_numbers(raw, decimal=decimal)
        return values, bad, "unparseable number"
    if kind == "boolean":
        values = parse_yes_no(raw)
        return values, raw.notna() & values.isna(), "not a yes/no value"
    return category_text(raw), pd.Series(False, index=raw.index), "unreadable value"
