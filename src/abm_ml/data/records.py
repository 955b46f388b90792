"""The scoring side of the input boundary: a CRM export read as the model was trained on it.

A trained scorer carries the input part of its dataset spec (:class:`InputSpec`): which columns
hold the row id, the account id and the amount, the placeholders that mean "missing", the
number and date formats, the CSV separator and encoding. :func:`read_records` reads a file
with the same reader as training (:mod:`abm_ml.data.readers`) and :func:`canonical_records`
parses it with the same parsers (:mod:`abm_ml.data.parsing`), so a file in the CRM's own
export format is scored as it is, and a row scores exactly as it did in the training frame.
Files in canonical form (``account_id``, ``amount``, feature names) are read too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from abm_ml.data.parsing import (
    clean_text,
    clean_value,
    parse_dates,
    parse_feature_value,
    parse_feature_values,
    parse_number_value,
    parse_numbers,
)
from abm_ml.data.readers import iter_table, read_table
from abm_ml.data.spec import DatasetSpec, SourceSpec
from abm_ml.errors import AbmInputError
from abm_ml.modeling.feature_info import FeatureInfo
from abm_ml.schema import ACCOUNT_ID, AMOUNT, CREATED_AT, ROW_ID


class InputSpec(BaseModel):
    """The part of a dataset spec that says how to read one row of the CRM's export."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    row_id: str | None = None
    account_id: str | None = None
    label: str | None = None
    closed_labels: list[str] = Field(default_factory=list)
    """The label's won and lost values: a row carrying one is a closed deal, not ranked."""
    amount: str | None = None
    amount_decimal: Literal[".", ","] = "."
    decimal: Literal[".", ","] = "."
    created_at: str | None = None
    created_at_formats: list[str] = Field(default_factory=list)
    missing_values: list[str] = Field(default_factory=list)
    sep: str | None = None
    encoding: str | None = None
    has_dates: bool = False
    has_velocity: bool = False

    @classmethod
    def from_dataset_spec(cls, spec: DatasetSpec) -> InputSpec:
        """The input part of ``spec`` (plain values only, so it pickles with the model)."""
        return cls(
            row_id=spec.row_id,
            account_id=spec.account_id,
            label=spec.label.column,
            closed_labels=[]
            if spec.label.present_means_won
            else [*spec.label.won, *spec.label.lost],
            amount=spec.amount.column if spec.amount else None,
            amount_decimal=spec.amount_decimal,
            decimal=spec.number_decimal,
            created_at=spec.created_at.column if spec.created_at else None,
            created_at_formats=list(spec.created_at.formats) if spec.created_at else [],
            missing_values=sorted(spec.missing_tokens),
            sep=spec.source.sep,
            encoding=spec.source.encoding,
            has_dates=spec.has_dates,
            has_velocity=spec.has_velocity,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A model pickled before a field existed loads with that field's default, so models
        # registered by an older version keep scoring.
        defaults = {
            name: info.get_default(call_default_factory=True)
            for name, info in type(self).model_fields.items()
        }
        state = {**state, "__dict__": defaults | state.get("__dict__", {})}
        super().__setstate__(state)

    @property
    def tokens(self) -> frozenset[str]:
        return frozenset(self.missing_values)

    def id_columns(self) -> list[tuple[str, str]]:
        """(spec role, column) of the ids a scoring file may carry, account first."""
        roles = [("account_id", self.account_id), ("row_id", self.row_id)]
        return [(role, column) for role, column in roles if column]


@dataclass(frozen=True)
class ScoringRecords:
    """Records in canonical form, and per row the first problem that keeps it from being scored.

    Attributes:
        frame: the input's columns plus ``account_id``, ``row_id`` (when known), ``amount``,
            ``created_at`` (when the file has it) and one parsed column per feature.
        problems: the reason a row cannot be scored (an unreadable number, yes/no or date), or NA.
        amount_column: the file's column the amounts were read from, or None.
    """

    frame: pd.DataFrame
    problems: pd.Series
    amount_column: str | None


def _column(records: pd.DataFrame, names: Sequence[str | None]) -> str | None:
    """The first of ``names`` that the records have."""
    return next((n for n in names if n and n in records.columns), None)


def _ids(records: pd.DataFrame, spec: InputSpec) -> dict[str, pd.Series]:
    """Row and account ids: the spec's columns, else the canonical ones; blank accounts use the row id."""
    out: dict[str, pd.Series] = {}
    row_column = _column(records, [spec.row_id, ROW_ID])
    if row_column:
        out[ROW_ID] = clean_text(records[row_column], frozenset({""}))
    account_column = _column(records, [spec.account_id, ACCOUNT_ID])
    if account_column:
        account = clean_text(records[account_column], spec.tokens | {""})
        if ROW_ID in out:
            account = account.where(account.notna(), out[ROW_ID])
        out[ACCOUNT_ID] = account
    elif ROW_ID in out:
        out[ACCOUNT_ID] = out[ROW_ID]
    return out


def canonical_records(
    records: pd.DataFrame, features: Sequence[FeatureInfo], spec: InputSpec
) -> ScoringRecords:
    """Parse raw records (the CRM's own columns or canonical ones) as training parsed them.

    Parsing canonical records again changes nothing, so the scorer can call this on any input.
    """
    records = records.reset_index(drop=True)
    tokens = spec.tokens
    problems = pd.Series(pd.NA, index=records.index, dtype=object)

    def add(bad: pd.Series, words: str, raw: pd.Series) -> None:
        """'<words>: <value>' for the rows newly found bad (texts built for those rows only)."""
        bad = bad.to_numpy(dtype=bool)
        if not bad.any():  # the common case: no isna() over the problems per column
            return
        fresh = bad & problems.isna().to_numpy()
        if fresh.any():
            problems[fresh] = (f"{words}: " + raw[fresh].astype(str)).to_numpy(dtype=object)

    parsed: dict[str, pd.Series] = _ids(records, spec)
    amount_column = _column(records, [spec.amount, AMOUNT])
    if amount_column:
        raw = clean_text(records[amount_column], tokens)
        amount, bad = parse_numbers(raw, decimal=spec.amount_decimal)
        add(bad, f"unparseable number in {amount_column!r}", raw)
        parsed[AMOUNT] = amount
    else:
        parsed[AMOUNT] = pd.Series(np.nan, index=records.index)
    created_column = _column(records, [spec.created_at, CREATED_AT])
    if created_column:
        raw = clean_text(records[created_column], tokens)
        parsed[CREATED_AT], _ = parse_dates(raw, spec.created_at_formats)
    for feature in features:
        column = _column(records, [feature.column, feature.name])
        if column is None:
            parsed[feature.name] = pd.Series(np.nan, index=records.index)
            continue
        raw = clean_text(records[column], tokens)
        values, bad, problem = parse_feature_values(raw, feature.type, decimal=spec.decimal)
        add(bad, f"{problem} in {column!r}", raw)
        parsed[feature.name] = values
    others = records.drop(columns=[c for c in parsed if c in records.columns])
    frame = pd.concat([pd.DataFrame(parsed, index=records.index), others], axis=1)
    return ScoringRecords(frame=frame, problems=problems, amount_column=amount_column)


_ABSENT = object()
"""A record's value for a key it does not have (None is a value: a blank)."""


def _key(record: Mapping[str, Any], names: Sequence[str | None]) -> str | None:
    """The first of ``names`` that the record has."""
    for name in names:  # a loop, not next() over a generator: this runs thrice a record
        if name and name in record:
            return name
    return None


def canonical_record(
    record: Mapping[str, Any], features: Sequence[FeatureInfo], spec: InputSpec
) -> dict[str, Any]:
    """One record parsed as :func:`canonical_records` parses a one-row frame of it.

    The one-record scoring path: ids, ``amount`` and one parsed value per feature, read value
    by value with the scalar twins of the column parsers, without building a frame.
    """
    return record_parser(features, spec)(record)


class RecordParser:
    """:func:`canonical_record` for one (features, spec), with what depends on them done once.

    Each feature gets a parser chosen by its type when this is made, with a shortcut for
    the values a JSON request carries most (a float for a number, a bool for a yes/no, a
    string for a category) that gives what the general parser gives; every other value goes
    through :func:`~abm_ml.data.parsing.clean_value` and
    :func:`~abm_ml.data.parsing.parse_feature_value` as before.
    """

    def __init__(self, features: Sequence[FeatureInfo], spec: InputSpec) -> None:
        self.spec = spec
        self.tokens = spec.tokens
        self.row_keys = [spec.row_id, ROW_ID]
        self.account_keys = [spec.account_id, ACCOUNT_ID]
        self.amount_keys = [spec.amount, AMOUNT]
        self.blank = frozenset({""})  # a blank row id is missing; placeholders are not
        self.account_tokens = self.tokens | self.blank
        self.fields = [
            (f.name, f.column, _value_parser(f.type, self.tokens, spec.decimal)) for f in features
        ]

    def __call__(self, record: Mapping[str, Any]) -> dict[str, Any]:
        spec, tokens = self.spec, self.tokens
        out: dict[str, Any] = {}
        row_key = _key(record, self.row_keys)
        if row_key:
            out[ROW_ID] = clean_value(record[row_key], self.blank)
        account_key = _key(record, self.account_keys)
        if account_key:
            account = clean_value(record[account_key], self.account_tokens)
            if ROW_ID in out and isinstance(account, float) and math.isnan(account):
                account = out[ROW_ID]
            out[ACCOUNT_ID] = account
        elif ROW_ID in out:
            out[ACCOUNT_ID] = out[ROW_ID]
        amount_key = _key(record, self.amount_keys)
        out[AMOUNT] = (
            parse_number_value(clean_value(record[amount_key], tokens), decimal=spec.amount_decimal)
            if amount_key
            else np.nan
        )
        get = record.get
        for name, column, parse in self.fields:
            # The one-record path of every served request: a plain loop, no per-feature lists.
            value = get(column, _ABSENT)
            if value is _ABSENT:
                value = get(name, _ABSENT)
            out[name] = np.nan if value is _ABSENT else parse(value)
        return out


def _value_parser(kind: str, tokens: frozenset[str], decimal: str) -> Callable[[object], object]:
    """``parse_feature_value(clean_value(value, tokens), kind)`` of one raw value, for ``kind``."""

    def general(value: object) -> object:
        return parse_feature_value(clean_value(value, tokens), kind, decimal=decimal)

    if kind == "numeric":

        def numeric(value: object) -> object:
            if type(value) is float:  # as parsed: itself, NaN as NaN
                return np.nan if math.isnan(value) else value
            return general(value)

        return numeric
    if kind == "boolean":

        def boolean(value: object) -> object:
            if type(value) is bool:  # a number: non-zero is yes
                return 1.0 if value else 0.0
            return general(value)

        return boolean

    def categorical(value: object) -> object:
        if type(value) is str:  # stripped, NaN when a placeholder, else the text itself
            text = value.strip()
            return np.nan if text.lower() in tokens else text
        return general(value)

    return categorical


_PARSERS: dict[tuple[int, int], tuple[Sequence[FeatureInfo], InputSpec, RecordParser]] = {}
"""Record parsers by the ids of their features and spec (held, so the ids stay theirs)."""


def record_parser(features: Sequence[FeatureInfo], spec: InputSpec) -> RecordParser:
    """The :class:`RecordParser` of ``features`` and ``spec``, made once per pair of objects."""
    key = (id(features), id(spec))
    cached = _PARSERS.get(key)
    if cached is None or cached[0] is not features or cached[1] is not spec:
        if len(_PARSERS) > 64:  # scorers come and go in tests and notebooks
            _PARSERS.clear()
        cached = (features, spec, RecordParser(features, spec))
        _PARSERS[key] = cached
    return cached[2]


def closed_deals(records: pd.DataFrame, spec: InputSpec | None) -> pd.Series:
    """Per record, the won or lost label value it carries (a closed deal), else NA.

    Only when the records have the spec's label column: a file of accounts without it has no
    closed deals.
    """
    if spec is None or not spec.closed_labels or not spec.label or spec.label not in records:
        return pd.Series(pd.NA, index=records.index, dtype=object)
    text = clean_text(records[spec.label], spec.tokens).astype("string")
    return text.where(text.isin(spec.closed_labels).fillna(False)).astype(object)


def require_id_column(records: pd.DataFrame, spec: InputSpec | None, name: str) -> None:
    """Raise one clear error when the records have no column to identify accounts by.

    Raises:
        AbmInputError: naming the columns looked for, the spec's first (e.g. 'Account Name').
    """
    wanted = [column for _, column in spec.id_columns()] if spec else []
    wanted += [ACCOUNT_ID, ROW_ID]
    if _column(records, wanted):
        return
    if spec and spec.id_columns():
        role, column = spec.id_columns()[0]
        message = (
            f"no id column: expected {column!r} (the spec's `{role}`) or {ACCOUNT_ID!r}; "
            f"the file has {_shown([c for c in records.columns if not c.startswith('_')])}"
        )
    else:
        message = f"no id column: expected {ACCOUNT_ID!r} or {ROW_ID!r}"
    raise AbmInputError(message, source=name, field="account_id")


def _shown(columns: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(c) for c in columns[:limit])
    return shown + (f" and {len(columns) - limit} more" if len(columns) > limit else "")


def read_records(
    source: str | Path,
    spec: InputSpec | None = None,
    *,
    table: str | None = None,
    query: str | None = None,
    allow_short_rows: bool = False,
) -> pd.DataFrame:
    """Read accounts from a CSV/Parquet file or a SQLAlchemy URL with the training reader.

    The spec's separator and encoding are used when it sets them (sniffed otherwise).
    """
    return read_table(_source_part(source, spec, table, query, allow_short_rows)).frame


def iter_records(
    source: str | Path,
    spec: InputSpec | None = None,
    *,
    table: str | None = None,
    query: str | None = None,
    allow_short_rows: bool = False,
    rows: int = 100_000,
) -> Iterator[pd.DataFrame]:
    """:func:`read_records` in frames of at most ``rows`` rows (see :func:`iter_table`)."""
    return iter_table(_source_part(source, spec, table, query, allow_short_rows), rows)


def _source_part(
    source: str | Path,
    spec: InputSpec | None,
    table: str | None,
    query: str | None,
    allow_short_rows: bool,
) -> SourceSpec:
    text = str(source)
    if "://" in text:
        return SourceSpec(url=text, table=table, query=query)
    return SourceSpec(
        path=str(Path(text).resolve()),
        sep=spec.sep if spec else None,
        encoding=spec.encoding if spec else None,
        allow_short_rows=allow_short_rows,
    )
