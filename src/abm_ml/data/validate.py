"""Validation that loses nothing: every input row is accepted or rejected with its reason.

`load_dataset(spec)` reads the spec's sources, joins them (:mod:`abm_ml.data.joins`), parses ids,
labels, dates, amounts and features one role after the other (the value parsers live in
:mod:`abm_ml.data.parsing`), and returns the accepted rows in canonical form (see
:mod:`abm_ml.schema`) with a rejects table (file, line, reason, original values) and a summary of
what happened. Errors in
the spec or the file as a whole (a missing column, an empty file, a label with one class) raise
:class:`~abm_ml.errors.AbmInputError` with one sentence naming the file and the field.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from abm_ml.data.joins import as_rejects, join_source
from abm_ml.data.parsing import (
    clean_text,
    infer_type,
    parse_dates,
    parse_feature_values,
    parse_numbers,
)
from abm_ml.data.readers import (
    ROW_PROBLEM,
    SOURCE_ROW,
    RawTable,
    read_table,
    require_columns,
)
from abm_ml.data.spec import DatasetSpec, FeatureSpec
from abm_ml.errors import AbmInputError
from abm_ml.modeling.feature_info import FeatureInfo
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


@dataclass
class ValidationSummary:
    """What validation did with every row, for the terminal, MLflow and the model card."""

    dataset: str
    sources: list[dict]
    rows_read: int
    accepted: int
    rejected: int
    rejected_by_reason: dict[str, int]
    outcomes: dict[str, int]
    features: dict[str, str]
    excluded: dict[str, str]
    notes: list[str] = field(default_factory=list)
    identical_rows: int = 0
    """Rows identical to an earlier row (all columns); kept without a row id unless the spec
    says ``duplicates: drop``, rejected with a row id (they repeat it)."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Dataset:
    """Accepted rows in canonical form plus everything needed to explain how they were made."""

    spec: DatasetSpec
    frame: pd.DataFrame
    features: list[FeatureInfo]
    rejects: pd.DataFrame
    summary: ValidationSummary
    sha256: str

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


class _Rejects:
    """Collects reasons per row; a row's first reason is the one counted in the summary."""

    def __init__(self, index: pd.Index):
        self.reasons = pd.Series(pd.NA, index=index, dtype=object)

    def add(self, mask: pd.Series | np.ndarray, reason: str | pd.Series) -> None:
        mask = pd.Series(np.asarray(mask, dtype=bool), index=self.reasons.index)
        fresh = mask & self.reasons.isna()
        if isinstance(reason, pd.Series):
            self.reasons[fresh] = reason[fresh]
        else:
            self.reasons[fresh] = reason

    @property
    def mask(self) -> pd.Series:
        return self.reasons.notna()


def _feature_specs(
    spec: DatasetSpec, columns: list[str], roles: dict[str, str]
) -> list[FeatureSpec]:
    """The declared features, then (when the spec asks) every column without another role."""
    features = list(spec.features)
    if spec.infer_remaining_features:
        taken = (
            set(roles.values()) | {f.column for f in features} | {e.column for e in spec.exclude}
        )
        for column in columns:
            if column not in taken and column != SOURCE_ROW:
                features.append(FeatureSpec(column=column))
    return features


def _describe(feature: FeatureSpec) -> str:
    return feature.description or feature.column.replace("_", " ").strip()


@dataclass
class _Sources:
    """The main source with its joins applied, and what the joins did.

    ``join_rejects`` also holds the malformed records of every source (set aside unread).
    """

    frame: pd.DataFrame
    name: str
    sources: list[dict]
    join_rejects: list[pd.DataFrame]
    notes: list[str]


def _set_aside_malformed(table: RawTable, rejects_out: list[pd.DataFrame]) -> RawTable:
    """The table without the records the reader found malformed (cut short, too wide); those
    go to ``rejects_out`` with their line and reason before any join or parsing sees them."""
    if ROW_PROBLEM not in table.frame.columns:
        return table
    frame = table.frame
    bad = frame[ROW_PROBLEM].notna()
    if bad.any():
        rows = frame[bad].drop(columns=[ROW_PROBLEM])
        rejects_out.append(as_rejects(rows, frame.loc[bad, ROW_PROBLEM].to_numpy(), table.name))
    kept = frame[~bad].drop(columns=[ROW_PROBLEM]).reset_index(drop=True)
    return RawTable(frame=kept, name=table.name, sha256=table.sha256)


def _read_sources(spec: DatasetSpec) -> _Sources:
    """Read the main source and left/inner-join each declared source onto it."""
    main = read_table(spec.source)
    notes: list[str] = []
    join_rejects: list[pd.DataFrame] = []
    sources = [{"name": main.name, "sha256": main.sha256, "rows": len(main.frame)}]
    main = _set_aside_malformed(main, join_rejects)
    frame = main.frame
    for join in spec.source.join:
        right = read_table(join)
        sources.append({"name": right.name, "sha256": right.sha256, "rows": len(right.frame)})
        right = _set_aside_malformed(right, join_rejects)
        frame = join_source(frame, right, join, join_rejects, notes, left_name=main.name)
    return _Sources(
        frame=frame.reset_index(drop=True),
        name=main.name if not spec.source.join else f"{main.name} (joined)",
        sources=sources,
        join_rejects=join_rejects,
        notes=notes,
    )


def _row_ids(spec: DatasetSpec, frame: pd.DataFrame, rejects: _Rejects) -> tuple[pd.Series, int]:
    """Row ids and the number of rows identical to an earlier one.

    Without a row id, identical rows are distinct records (two deals can share every column
    of an export) and are kept unless the spec says ``duplicates: drop``; the row id is then
    the line in the file. With a row id, an identical row repeats its id and is rejected.
    """
    value_columns = [c for c in frame.columns if c != SOURCE_ROW]
    exact = frame.duplicated(subset=value_columns, keep="first")
    if spec.row_id or spec.duplicates == "drop":
        first_line = frame.groupby(value_columns, dropna=False, sort=False)[SOURCE_ROW].transform(
            "first"
        )
        rejects.add(exact, "exact duplicate of line " + first_line.astype(str))
    if not spec.row_id:
        return frame[SOURCE_ROW].astype(str).astype(object), int(exact.sum())
    ids = clean_text(frame[spec.row_id], frozenset({""})).astype("string")
    rejects.add(ids.isna(), f"missing row id {spec.row_id!r}")
    first_id_line = frame.groupby(ids, dropna=True, sort=False)[SOURCE_ROW].transform("first")
    repeated = ids.duplicated(keep="first") & ids.notna()
    rejects.add(
        repeated,
        f"duplicate {spec.row_id!r} (first at line "
        + first_id_line.astype("Int64").astype(str)
        + ")",
    )
    return ids.astype(object), int(exact.sum())


def _account_ids(
    spec: DatasetSpec, frame: pd.DataFrame, row_ids: pd.Series, notes: list[str]
) -> pd.Series:
    """Account ids; a row without one is its own account (said in a note, not rejected)."""
    if not spec.account_id:
        return row_ids
    account = clean_text(frame[spec.account_id], spec.missing_tokens)
    if account.isna().any():
        notes.append(
            f"{int(account.isna().sum())} rows have no {spec.account_id!r}; each is its own account"
        )
    return account.where(account.notna(), "row:" + row_ids.astype(str)).astype(object)


def _outcomes(spec: DatasetSpec, frame: pd.DataFrame, rejects: _Rejects) -> pd.Series:
    """The label column mapped to won/lost/open; values outside declared ones are rejected."""
    label = spec.label
    raw_label = clean_text(frame[label.column], spec.missing_tokens)
    if label.present_means_won:
        outcome = np.where(raw_label.notna(), WON, LOST)
    else:
        text = raw_label.astype("string")
        outcome = np.where(
            text.isin(label.won).fillna(False),
            WON,
            np.where(text.isin(label.lost).fillna(False), LOST, OPEN),
        )
        if label.open is not None:
            outside = (outcome == OPEN) & ~text.isin(label.open).fillna(False) & text.notna()
            rejects.add(
                outside,
                f"label {label.column!r} value outside the declared values: "
                + text.fillna("").astype(str),
            )
            rejects.add(text.isna(), f"missing label {label.column!r}")
    return pd.Series(outcome, index=frame.index, dtype=object)


def _dates_and_velocity(
    spec: DatasetSpec, frame: pd.DataFrame, outcome: pd.Series, rejects: _Rejects
) -> dict[str, pd.Series]:
    """Created and closed dates, and days to close (from the dates or a duration column)."""
    tokens = spec.missing_tokens
    dates = {
        role: pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
        for role in (CREATED_AT, CLOSED_AT)
    }
    days_to_close = pd.Series(np.nan, index=frame.index)
    for role in (CREATED_AT, CLOSED_AT):
        part = getattr(spec, role)
        if part is None:
            continue
        raw = clean_text(frame[part.column], tokens)
        parsed, bad = parse_dates(raw, part.formats)
        rejects.add(bad, f"unparseable date in {part.column!r}: " + raw.astype(str))
        dates[role] = parsed
    if spec.created_at is not None:
        # Open deals without a created date (for example still prospecting) can still be scored.
        rejects.add(
            dates[CREATED_AT].isna() & (outcome != OPEN),
            f"missing created date {spec.created_at.column!r}",
        )
    if spec.closed_at is not None:
        days = (dates[CLOSED_AT] - dates[CREATED_AT]).dt.total_seconds() / 86400.0
        rejects.add(
            days < 0,
            f"closed before created ({spec.closed_at.column!r} < {spec.created_at.column!r})",
        )  # type: ignore[union-attr]
        days_to_close = days.where(outcome != OPEN)
    if spec.duration is not None:
        raw = clean_text(frame[spec.duration.column], tokens)
        days = _numbers(raw, spec.duration.column, rejects)
        rejects.add(days < 0, f"negative duration in {spec.duration.column!r}")
        scale = {"days": 1.0, "hours": 1 / 24, "weeks": 7.0}[spec.duration.unit]
        days_to_close = (days * scale).where(outcome != OPEN)
    return {**dates, DAYS_TO_CLOSE: days_to_close}


def _numbers(raw: pd.Series, column: str, rejects: _Rejects, *, decimal: str = ".") -> pd.Series:
    """Parsed numbers; a value present but not a number rejects its row, naming column and value."""
    values, bad = parse_numbers(raw, decimal=decimal)
    rejects.add(bad, f"unparseable number in {column!r}: " + raw.astype(str))
    return values


def _amounts(spec: DatasetSpec, frame: pd.DataFrame, rejects: _Rejects) -> pd.Series:
    """Deal amounts (NaN everywhere when the spec declares none)."""
    if spec.amount is None:
        return pd.Series(np.nan, index=frame.index)
    raw = clean_text(frame[spec.amount.column], spec.missing_tokens)
    return _numbers(raw, spec.amount.column, rejects, decimal=spec.amount_decimal)


def _features(
    spec: DatasetSpec, frame: pd.DataFrame, rejects: _Rejects, notes: list[str]
) -> tuple[dict[str, pd.Series], list[FeatureInfo]]:
    """Feature columns by key, typed (declared or inferred), and their descriptions."""
    roles = spec.role_columns()
    role_set = set(roles.values())
    values_by_key: dict[str, pd.Series] = {}
    infos: list[FeatureInfo] = []
    for feature in _feature_specs(spec, list(frame.columns), roles):
        raw = clean_text(frame[feature.column], spec.missing_tokens)
        kind = feature.type or infer_type(raw, decimal=spec.number_decimal)
        if not feature.type and kind == "categorical":
            distinct = raw.nunique(dropna=True)
            if distinct > 0.9 * raw.notna().sum() and distinct > 50:
                notes.append(
                    f"column {feature.column!r} looks like an identifier ({distinct} distinct values); not used as a feature"
                )
                continue
        if feature.column in role_set and not (
            spec.amount and feature.column == spec.amount.column
        ):
            raise AbmInputError(
                f"column {feature.column!r} is both a feature and the spec's id/label/date",
                field="features",
            )
        values, bad, problem = parse_feature_values(raw, kind, decimal=spec.number_decimal)
        rejects.add(bad, f"{problem} in {feature.column!r}: " + raw.astype(str))
        values_by_key[feature.key] = values
        infos.append(
            FeatureInfo(
                name=feature.key,
                column=feature.column,
                type=kind,
                description=_describe(feature),
                template=feature.template,
                true_text=feature.true_text,
                false_text=feature.false_text,
                missing_text=feature.missing_text,
                monotone=feature.monotone,
            )
        )
    return values_by_key, infos


def _uninformative_features(accepted: pd.DataFrame, infos: list[FeatureInfo]) -> list[str]:
    """Notes on features that cannot inform any model: blank or single-valued in every accepted
    row. They stay in the spec (a later export may fill them); the user learns why they never
    show up among the reasons."""
    notes = []
    for info in infos:
        values = accepted[info.name]
        filled = int(values.notna().sum())
        if filled == 0:
            notes.append(
                f"column {info.column!r} is blank in every accepted row; it cannot inform the model"
            )
        elif values.nunique(dropna=True) == 1 and filled == len(values):
            notes.append(
                f"column {info.column!r} has the same value in every accepted row; "
                "it cannot inform the model"
            )
    return notes


def _rejects_table(read: _Sources, rejects: _Rejects) -> pd.DataFrame:
    """Rejected rows of the main source then of the joined sources: file, line, reason, values."""
    rejected_mask = rejects.mask
    reasons = rejects.reasons[rejected_mask].astype(str)
    main_rejects = as_rejects(read.frame[rejected_mask.values], reasons.values, read.name)
    all_rejects = (
        pd.concat([main_rejects, *read.join_rejects], ignore_index=True)
        if read.join_rejects
        else main_rejects
    )
    first_col = ["file", "line", "reason"]
    return all_rejects[first_col + [c for c in all_rejects.columns if c not in first_col]]


def load_dataset(spec: DatasetSpec) -> Dataset:
    """Read, join and validate the spec's sources.

    Returns:
        A :class:`Dataset` whose ``frame`` holds the accepted rows, in source order, with the
        canonical columns and one column per feature (numeric as float, boolean as 0/1 float,
        categorical as text with missing values as NaN).

    Raises:
        AbmInputError: a missing file or column, an empty file, a label with one class.
    """
    read = _read_sources(spec)
    frame, notes = read.frame, read.notes
    required = list(spec.role_columns().items()) + [("features", f.column) for f in spec.features]
    require_columns(RawTable(frame=frame, name=read.name, sha256=""), required)

    # One role after the other; a row's first reason is the one reported.
    rejects = _Rejects(frame.index)
    out = pd.DataFrame(index=frame.index)
    out[ROW_ID], identical_rows = _row_ids(spec, frame, rejects)
    if identical_rows and not spec.row_id and spec.duplicates == "keep":
        notes.append(
            f"{identical_rows} rows are identical to an earlier row; kept as distinct records "
            "(no row id; set `duplicates: drop` to reject them)"
        )
    out[ACCOUNT_ID] = _account_ids(spec, frame, out[ROW_ID], notes)
    out[OUTCOME] = _outcomes(spec, frame, rejects)
    for column, values in _dates_and_velocity(spec, frame, out[OUTCOME], rejects).items():
        out[column] = values
    out[AMOUNT] = _amounts(spec, frame, rejects)
    feature_values, infos = _features(spec, frame, rejects, notes)
    for key, values in feature_values.items():
        out[key] = values

    all_rejects = _rejects_table(read, rejects)
    accepted = out[~rejects.mask].reset_index(drop=True)
    notes.extend(_uninformative_features(accepted, infos))
    outcomes = Counter(accepted[OUTCOME])
    if outcomes.get(WON, 0) == 0 or outcomes.get(LOST, 0) == 0:
        raise AbmInputError(
            f"the label has one class among accepted closed rows ({outcomes.get(WON, 0)} won, "
            f"{outcomes.get(LOST, 0)} lost); check the won/lost values",
            source=read.name,
            field=f"label {spec.label.column!r}",
        )

    summary = ValidationSummary(
        dataset=spec.name,
        sources=read.sources,
        rows_read=int(sum(s["rows"] for s in read.sources)),
        accepted=len(accepted),
        rejected=len(all_rejects),
        rejected_by_reason=_reason_counts(all_rejects["reason"]),
        outcomes={k: int(outcomes.get(k, 0)) for k in (WON, LOST, OPEN)},
        features={f.name: f.type for f in infos},
        excluded={e.column: e.reason for e in spec.exclude},
        notes=notes,
        identical_rows=identical_rows,
    )
    digest_input = "".join(s["sha256"] for s in read.sources) + spec.model_dump_json(
        exclude={"spec_path"}
    )
    return Dataset(
        spec=spec,
        frame=accepted,
        features=infos,
        rejects=all_rejects.reset_index(drop=True),
        summary=summary,
        sha256=hashlib.sha256(digest_input.encode()).hexdigest(),
    )


def _reason_counts(reasons: pd.Series) -> dict[str, int]:
    """Count reasons by kind: the value-specific tail after ':' or '(first at' is dropped."""
    kinds = reasons.astype(str).str.replace(
        r"(: .*$)|( \(first at line .*\)$)|( of line \d+$)", "", regex=True
    )
    return {k: int(v) for k, v in Counter(kinds).most_common()}
