"""Validation that loses nothing: every input row is accepted or rejected with its reason.

`load_dataset(spec)` reads the spec's sources, joins them, parses ids, labels, dates, amounts and
features, and returns the accepted rows in canonical form (see :mod:`abm_ml.schema`) with a
rejects table (file, line, reason, original values) and a summary of what happened. Errors in
the spec or the file as a whole (a missing column, an empty file, a label with one class) raise
:class:`~abm_ml.errors.AbmInputError` with one sentence naming the file and the field.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from abm_ml.data.readers import SOURCE_ROW, RawTable, read_table
from abm_ml.data.spec import DatasetSpec, FeatureSpec, JoinSpec
from abm_ml.errors import AbmInputError
from abm_ml.modeling.feature_info import NO_WORDS, YES_WORDS, FeatureInfo, parse_yes_no
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

_NUMBER_JUNK = re.compile(r"[\s$€£¥%]")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
_THOUSANDS_EU = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d*)?$")


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


def _by_unique(values: pd.Series, parse) -> pd.Series:
    """Apply ``parse`` (Series -> Series) to the distinct values only: CRM columns repeat a lot."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    parsed_uniques = parse(pd.Series(uniques, dtype=object)).to_numpy()
    result = pd.Series(
        parsed_uniques.take(np.where(codes < 0, 0, codes))
        if len(uniques)
        else np.full(len(values), None),
        index=values.index,
    )
    return result.where(codes >= 0, None)


def _missing_mask(values: pd.Series, tokens: frozenset[str]) -> pd.Series:
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


def _clean_text(values: pd.Series, tokens: frozenset[str]) -> pd.Series:
    """Text with missing placeholders ('unknown', 'Select', blanks) turned into missing values."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values
    text = _by_unique(values, lambda u: u.map(lambda v: v.strip() if isinstance(v, str) else v))
    return text.where(~_missing_mask(values, tokens), np.nan).astype(object)


def _parse_number_text(text: pd.Series, decimal: str) -> pd.Series:
    text = text.astype("string").str.replace(_NUMBER_JUNK, "", regex=True)
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
    parsed = _by_unique(values, lambda u: _parse_number_text(u, decimal)).astype(float)
    bad = values.notna() & parsed.isna()
    return parsed, bad


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


def infer_type(values: pd.Series) -> str:
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
    parsed, bad = parse_numbers(present)
    if bad.mean() <= 0.02 and parsed.notna().any():
        return "numeric"
    return "categorical"


def _suggest(column: str, available: list[str]) -> str:
    close = difflib.get_close_matches(column, available, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _require_columns(table: RawTable, columns: list[tuple[str, str]]) -> None:
    available = [c for c in table.frame.columns if c != SOURCE_ROW]
    for role, column in columns:
        if column not in table.frame.columns:
            raise AbmInputError(
                f"column {column!r} (the spec's `{role}`) is not in the file{_suggest(column, available)}",
                source=table.name,
            )


def _loose_key(values: pd.Series) -> pd.Series:
    return values.astype("string").str.casefold().str.replace(r"[^0-9a-z]", "", regex=True)


def _join(
    left: pd.DataFrame,
    right_table: RawTable,
    join: JoinSpec,
    rejects_out: list[pd.DataFrame],
    notes: list[str],
    left_name: str = "main source",
) -> pd.DataFrame:
    right = right_table.frame.rename(columns={SOURCE_ROW: f"{SOURCE_ROW}_join"})
    if join.left_key not in left.columns:
        raise AbmInputError(
            f"join key {join.left_key!r} is not in the main source",
            source=left_name,
            field="source.join",
        )
    _require_columns(right_table, [("source.join.on", join.right_key)])
    key_left = (
        _loose_key(left[join.left_key])
        if join.match == "loose"
        else left[join.left_key].astype("string")
    )
    key_right = (
        _loose_key(right[join.right_key])
        if join.match == "loose"
        else right[join.right_key].astype("string")
    )
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
            bad = right_table.frame[mask.values].copy()
            bad.insert(0, "reason", reason)
            bad.insert(0, "file", right_table.name)
            rejects_out.append(bad.rename(columns={SOURCE_ROW: "line"}))
    right = right[~(blank | duplicate | unmatched).values]
    if join.how == "inner":
        # An inner join drops main rows without a match: report them instead of losing them.
        dropped = ~key_left.isin(set(right["_join_key"])).fillna(False)
        if dropped.any():
            bad = left[dropped.values].copy()
            bad.insert(
                0, "reason", f"no matching row in {right_table.name} for join key {join.left_key!r}"
            )
            bad.insert(0, "file", left_name)
            rejects_out.append(bad.rename(columns={SOURCE_ROW: "line"}))

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


def _feature_specs(
    spec: DatasetSpec, columns: list[str], roles: dict[str, str], notes: list[str]
) -> list[FeatureSpec]:
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


def load_dataset(spec: DatasetSpec) -> Dataset:
    """Read, join and validate the spec's sources.

    Returns:
        A :class:`Dataset` whose ``frame`` holds the accepted rows, in source order, with the
        canonical columns and one column per feature (numeric as float, boolean as 0/1 float,
        categorical as text with missing values as NaN).

    Raises:
        AbmInputError: a missing file or column, an empty file, a label with one class.
    """
    tokens = spec.missing_tokens
    main = read_table(spec.source)
    roles = spec.role_columns()
    required = [(role, column) for role, column in roles.items()] + [
        ("features", f.column) for f in spec.features
    ]

    notes: list[str] = []
    join_rejects: list[pd.DataFrame] = []
    frame = main.frame
    sources = [{"name": main.name, "sha256": main.sha256, "rows": len(main.frame)}]
    for join in spec.source.join:
        right = read_table(join)
        sources.append({"name": right.name, "sha256": right.sha256, "rows": len(right.frame)})
        frame = _join(frame, right, join, join_rejects, notes, left_name=main.name)
    frame = frame.reset_index(drop=True)
    joined = RawTable(
        frame=frame, name=main.name if not spec.source.join else f"{main.name} (joined)", sha256=""
    )
    _require_columns(joined, required)

    rejects = _Rejects(frame.index)
    out = pd.DataFrame(index=frame.index)

    # Row id and duplicates: exact copies first, then repeated ids with different content.
    value_columns = [c for c in frame.columns if c != SOURCE_ROW]
    first_line = frame.groupby(value_columns, dropna=False, sort=False)[SOURCE_ROW].transform(
        "first"
    )
    exact = frame.duplicated(subset=value_columns, keep="first")
    rejects.add(exact, "exact duplicate of line " + first_line.astype(str))
    if spec.row_id:
        ids = _clean_text(frame[spec.row_id], frozenset({""})).astype("string")
        rejects.add(ids.isna(), f"missing row id {spec.row_id!r}")
        first_id_line = frame.groupby(ids, dropna=True, sort=False)[SOURCE_ROW].transform("first")
        repeated = ids.duplicated(keep="first") & ids.notna()
        rejects.add(
            repeated,
            f"duplicate {spec.row_id!r} (first at line "
            + first_id_line.astype("Int64").astype(str)
            + ")",
        )
        out[ROW_ID] = ids.astype(object)
    else:
        out[ROW_ID] = frame[SOURCE_ROW].astype(str).astype(object)

    if spec.account_id:
        account = _clean_text(frame[spec.account_id], tokens)
        out[ACCOUNT_ID] = account.where(account.notna(), "row:" + out[ROW_ID].astype(str)).astype(
            object
        )
        if account.isna().any():
            notes.append(
                f"{int(account.isna().sum())} rows have no {spec.account_id!r}; each is its own account"
            )
    else:
        out[ACCOUNT_ID] = out[ROW_ID]

    # Label -> outcome.
    label = spec.label
    raw_label = _clean_text(frame[label.column], tokens)
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
    out[OUTCOME] = pd.Series(outcome, index=frame.index, dtype=object)

    # Dates and velocity.
    out[CREATED_AT] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    out[CLOSED_AT] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    out[DAYS_TO_CLOSE] = np.nan
    for role in ("created_at", "closed_at"):
        part = getattr(spec, role)
        if part is None:
            continue
        raw = _clean_text(frame[part.column], tokens)
        parsed, bad = parse_dates(raw, part.formats)
        rejects.add(bad, f"unparseable date in {part.column!r}: " + raw.astype(str))
        out[role] = parsed
    if spec.created_at is not None:
        # Open deals without a created date (for example still prospecting) can still be scored.
        rejects.add(
            out[CREATED_AT].isna() & (out[OUTCOME] != OPEN),
            f"missing created date {spec.created_at.column!r}",
        )
    if spec.closed_at is not None:
        days = (out[CLOSED_AT] - out[CREATED_AT]).dt.total_seconds() / 86400.0
        rejects.add(
            days < 0,
            f"closed before created ({spec.closed_at.column!r} < {spec.created_at.column!r})",
        )  # type: ignore[union-attr]
        out[DAYS_TO_CLOSE] = days.where(out[OUTCOME] != OPEN)
    if spec.duration is not None:
        raw = _clean_text(frame[spec.duration.column], tokens)
        days, bad = parse_numbers(raw)
        rejects.add(bad, f"unparseable number in {spec.duration.column!r}: " + raw.astype(str))
        rejects.add(days < 0, f"negative duration in {spec.duration.column!r}")
        scale = {"days": 1.0, "hours": 1 / 24, "weeks": 7.0}[spec.duration.unit]
        out[DAYS_TO_CLOSE] = (days * scale).where(out[OUTCOME] != OPEN)

    if spec.amount is not None:
        raw = _clean_text(frame[spec.amount.column], tokens)
        amount, bad = parse_numbers(raw, decimal=spec.amount.decimal)
        rejects.add(bad, f"unparseable number in {spec.amount.column!r}: " + raw.astype(str))
        out[AMOUNT] = amount
    else:
        out[AMOUNT] = np.nan

    # Features.
    role_set = set(roles.values())
    feature_specs = _feature_specs(spec, list(frame.columns), roles, notes)
    infos: list[FeatureInfo] = []
    for feature in feature_specs:
        raw = _clean_text(frame[feature.column], tokens)
        kind = feature.type or infer_type(raw)
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
        if kind == "numeric":
            values, bad = parse_numbers(raw)
            rejects.add(bad, f"unparseable number in {feature.column!r}: " + raw.astype(str))
        elif kind == "boolean":
            values = parse_yes_no(raw)
            bad = raw.notna() & values.isna()
            rejects.add(bad, f"not a yes/no value in {feature.column!r}: " + raw.astype(str))
        else:
            values = raw.map(
                lambda v: (
                    v
                    if isinstance(v, str) or v is None or (isinstance(v, float) and np.isnan(v))
                    else str(v)
                )
            )
            values = values.astype(object).where(values.notna(), np.nan)
        out[feature.key] = values
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

    rejected_mask = rejects.mask
    reasons = rejects.reasons[rejected_mask].astype(str)
    main_rejects = frame[rejected_mask.values].copy()
    main_rejects.insert(0, "reason", reasons.values)
    main_rejects.insert(0, "file", joined.name)
    main_rejects = main_rejects.rename(columns={SOURCE_ROW: "line"})
    all_rejects = (
        pd.concat([main_rejects, *join_rejects], ignore_index=True)
        if join_rejects
        else main_rejects
    )
    first_col = ["file", "line", "reason"]
    all_rejects = all_rejects[first_col + [c for c in all_rejects.columns if c not in first_col]]

    accepted = out[~rejected_mask].reset_index(drop=True)
    outcomes = Counter(accepted[OUTCOME])
    if outcomes.get(WON, 0) == 0 or outcomes.get(LOST, 0) == 0:
        raise AbmInputError(
            f"the label has one class among accepted closed rows ({outcomes.get(WON, 0)} won, "
            f"{outcomes.get(LOST, 0)} lost); check the won/lost values",
            source=joined.name,
            field=f"label {label.column!r}",
        )

    summary = ValidationSummary(
        dataset=spec.name,
        sources=sources,
        rows_read=int(sum(s["rows"] for s in sources)),
        accepted=len(accepted),
        rejected=len(all_rejects),
        rejected_by_reason=_reason_counts(all_rejects["reason"]),
        outcomes={k: int(outcomes.get(k, 0)) for k in (WON, LOST, OPEN)},
        features={f.name: f.type for f in infos},
        excluded={e.column: e.reason for e in spec.exclude},
        notes=notes,
    )
    digest_input = "".join(s["sha256"] for s in sources) + spec.model_dump_json(
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
