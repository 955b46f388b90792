"""Dataset specs: one YAML file describes one CRM export, so a new dataset needs a spec, not code.

A spec says where the rows come from (a CSV or Parquet file, a SQL table or query, optionally
joined with a second source), which column is the row id, the label and its won/lost values,
the dates or duration that give the deal's velocity, the amount, the features with their types
and human descriptions (used in explanations), and the columns excluded because they leak the
outcome. Reading a spec validates it and resolves paths; it touches no data and no state.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from abm_ml.data.words import fold
from abm_ml.errors import AbmInputError
from abm_ml.schema import CANONICAL_COLUMNS

FeatureType = Literal["numeric", "categorical", "boolean"]

DEFAULT_MISSING_VALUES = ("", "na", "n/a", "nan", "null", "none", "#n/a", "-")

_ENV_PATTERN = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JoinSpec(_Strict):
    """A second source joined to the first (for example leads + closed deals)."""

    path: str | None = None
    url: str | None = None
    table: str | None = None
    query: str | None = None
    format: Literal["csv", "parquet", "sql"] | None = None
    sep: str | None = None
    encoding: str | None = None
    allow_short_rows: bool = False
    on: str | None = None
    left_on: str | None = None
    right_on: str | None = None
    how: Literal["left", "inner"] = "left"
    match: Literal["exact", "loose"] = Field(
        default="exact",
        description="'loose' ignores case, spaces and punctuation in keys ('GTXPro' = 'GTX Pro')",
    )

    @model_validator(mode="after")
    def _keys(self) -> JoinSpec:
        if not self.on and not (self.left_on and self.right_on):
            raise ValueError("a join needs `on` or both `left_on` and `right_on`")
        return self

    @property
    def left_key(self) -> str:
        return self.left_on or self.on  # type: ignore[return-value]

    @property
    def right_key(self) -> str:
        return self.right_on or self.on  # type: ignore[return-value]


class SourceSpec(_Strict):
    """Where rows come from: a file (CSV or Parquet) or a SQLAlchemy URL with a table or query."""

    path: str | None = None
    url: str | None = None
    table: str | None = None
    query: str | None = None
    format: Literal["csv", "parquet", "sql"] | None = None
    sep: str | None = Field(default=None, description="CSV separator; sniffed when absent")
    encoding: str | None = Field(
        default=None,
        description="Text encoding; UTF-8 (with or without BOM), UTF-16 (with BOM), then cp1252 when absent",
    )
    decimal: Literal[".", ","] | None = Field(
        default=None,
        description="Decimal mark of the file's numbers (numeric features and the amount): "
        "'.' (the default) or ',' as in many European exports ('1.234,5' or '1 234,5')",
    )
    allow_short_rows: bool = Field(
        default=False,
        description="Accept CSV rows with fewer fields than the header (missing trailing fields "
        "read as blanks); by default such a row is rejected as cut short",
    )
    join: list[JoinSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSpec:
        if bool(self.path) == bool(self.url):
            raise ValueError("give exactly one of `path` (CSV/Parquet) or `url` (SQLAlchemy URL)")
        if self.url and bool(self.table) == bool(self.query):
            raise ValueError("a SQL source needs exactly one of `table` or `query`")
        return self


class LabelSpec(_Strict):
    """The outcome column. Values in ``won`` and ``lost`` close a deal; others are open deals.

    With ``present_means_won`` the label is derived: a row is won when the column has a value
    (for example a closed-deal date after a join) and lost otherwise.
    """

    column: str
    won: list[str] = Field(default_factory=list)
    lost: list[str] = Field(default_factory=list)
    open: list[str] | None = Field(
        default=None, description="Open-deal values; when given, any other value is rejected"
    )
    present_means_won: bool = False

    @field_validator("won", "lost", "open", mode="before")
    @classmethod
    def _as_strings(cls, value: object) -> object:
        if isinstance(value, (str, int, float, bool)):
            value = [value]
        if isinstance(value, list):
            return [str(v) for v in value]
        return value

    @model_validator(mode="after")
    def _values(self) -> LabelSpec:
        if not self.present_means_won and (not self.won or not self.lost):
            raise ValueError(
                "the label needs both `won` and `lost` values (or `present_means_won: true`)"
            )
        overlap = set(self.won) & set(self.lost)
        if overlap:
            raise ValueError(f"values {sorted(overlap)} are listed as both won and lost")
        return self


class DateSpec(_Strict):
    column: str
    formats: list[str] = Field(
        default_factory=list,
        description="strftime formats tried in order, e.g. '%m/%d/%y' or '%d-%b-%y'; 'ISO' for ISO 8601",
    )


class DurationSpec(_Strict):
    column: str
    unit: Literal["days", "hours", "weeks"] = "days"


class AmountSpec(_Strict):
    column: str
    decimal: Literal[".", ","] | None = Field(
        default=None, description="Decimal mark of the amount; `source.decimal` when absent"
    )


class FeatureSpec(_Strict):
    """One feature column with its type and the words used to explain it."""

    column: str
    name: str | None = Field(
        default=None, description="Identifier used by the model; slug of `column` when absent"
    )
    type: FeatureType | None = Field(default=None, description="Inferred from the data when absent")
    description: str | None = None
    template: str | None = Field(
        default=None,
        description="Reason sentence with {value}, e.g. '{value:.0f} web visits in the last 30 days'",
    )
    true_text: str | None = None
    false_text: str | None = None
    missing_text: str | None = None
    known_after_outcome: bool = False
    monotone: Literal[-1, 0, 1] = 0

    @property
    def key(self) -> str:
        return self.name or slugify(self.column)


class ExcludeSpec(_Strict):
    column: str
    reason: str = "excluded by the spec"


class LeakageSpec(_Strict):
    """Thresholds of the leakage guard (see docs/spec.md and :mod:`abm_ml.data.leakage`)."""

    auc_threshold: Annotated[float, Field(gt=0.5, le=1.0)] = Field(
        default=0.95, description="Refuse a column whose single-feature ROC AUC reaches this"
    )
    missingness_auc_threshold: Annotated[float, Field(gt=0.5, le=1.0)] = Field(
        default=0.75,
        description="Refuse (or flag) a column whose blank-or-not alone reaches this ROC AUC",
    )
    missingness: Literal["refuse", "flag"] = Field(
        default="refuse", description="What a missingness leak does: refuse the column or warn"
    )
    suspicious_auc_threshold: Annotated[float, Field(gt=0.5, le=1.0)] = Field(
        default=0.80, description="Warn (keep the column) from this single-feature ROC AUC"
    )
    duration_proxy_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    name_patterns: bool = Field(
        default=True,
        description="Refuse columns whose names say they describe the deal up to its close, "
        "and warn on names that sound filled in after it (tags, status, reason, discount...)",
    )
    allow: list[str] = Field(
        default_factory=list, description="Columns allowed despite a leakage finding"
    )

    @model_validator(mode="after")
    def _ordered(self) -> LeakageSpec:
        if self.suspicious_auc_threshold > self.auc_threshold:
            raise ValueError(
                "`suspicious_auc_threshold` must not be above `auc_threshold` (it warns before refusing)"
            )
        return self


class SplitSpec(_Strict):
    test_fraction: Annotated[float, Field(gt=0.0, lt=0.9)] = 0.2
    valid_fraction: Annotated[float, Field(gt=0.0, lt=0.9)] = 0.15
    method: Literal["auto", "time", "stratified"] = "auto"


class MonitoringSpec(_Strict):
    """Thresholds of ``abm-ml monitor`` (see docs/operations.md and :mod:`abm_ml.monitoring`).

    Carried with the model (in its reference profile), so a scoring run is judged by the
    thresholds of the spec that trained it unless ``monitor --spec`` gives newer ones.
    """

    psi_alert: Annotated[float, Field(gt=0.0)] = Field(
        default=0.25, description="Alarm when a feature's PSI against the reference reaches this"
    )
    score_psi_alert: Annotated[float, Field(gt=0.0)] = Field(
        default=0.25, description="Alarm when the score distribution's PSI reaches this"
    )
    unseen_share: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        default=0.05,
        description="Alarm when the share of categories the model never saw grows by this much",
    )
    missing_increase: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        default=0.10, description="Alarm when a feature's share of missing values grows by this"
    )
    auc_drop: Annotated[float, Field(gt=0.0, lt=0.5)] = Field(
        default=0.05,
        description="Alarm when the ROC AUC estimated without labels falls by this much",
    )
    reference: Literal["first", "previous"] = Field(
        default="first", description="Which earlier scoring run a verdict compares with"
    )


_TABLE_KINDS = ("accounts", "contacts", "opportunities", "contact_roles", "activities", "intent")


class TableSpec(_Strict):
    """One CRM object's export (a file or a SQL table/query) and how its columns map.

    Under a preset (``tables.preset``) the object's export field names and value maps are the
    defaults; ``columns`` and ``values`` override them key by key.
    """

    object: str | None = Field(
        default=None, description="The preset's object, e.g. Task or CampaignMember"
    )
    path: str | None = Field(
        default=None, description="File (CSV/Parquet); the preset's file name in `tables.dir`"
    )
    url: str | None = None
    table: str | None = None
    query: str | None = None
    format: Literal["csv", "parquet", "sql"] | None = None
    sep: str | None = None
    encoding: str | None = None
    allow_short_rows: bool = False
    columns: dict[str, str] = Field(
        default_factory=dict, description="abm-ml column -> export field"
    )
    values: dict[str, str] = Field(
        default_factory=dict,
        description="export value -> abm-ml value (stage -> won/lost/open, type -> channel, "
        "role value -> role); '*' matches any other value, '-' marks a value abm-ml does not use",
    )
    channel: str | None = Field(
        default=None, description="Activities: the channel of every row (no type column)"
    )
    date_formats: list[str] = Field(
        default_factory=list, description="strftime formats of this table's dates; ISO 8601 first"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> TableSpec:
        if self.path and self.url:
            raise ValueError("give `path` or `url`, not both")
        if self.url and bool(self.table) == bool(self.query):
            raise ValueError("a SQL table needs exactly one of `table` or `query`")
        return self


class RoleRule(_Strict):
    """Job titles matching ``pattern`` (a case-insensitive regex) get ``role``."""

    pattern: str
    role: Literal[
        "economic_buyer", "champion", "influencer", "stakeholder", "procurement", "end_user"
    ]

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"pattern {value!r} is not a valid regex ({error})") from None
        return value


class TablesSpec(_Strict):
    """CRM objects (accounts, contacts, deals, activities...) the training rows are built from.

    See ``docs/crm-objects.md``. Rows are built as of each opportunity's creation into ``out``
    (``abm-ml rows``); the spec's ``source`` then reads them from there.
    """

    preset: Literal["salesforce", "hubspot"] | None = None
    dir: str | None = Field(
        default=None, description="Folder of the export files; the spec's folder when absent"
    )
    out: str = Field(description="Folder the built training and scoring rows are written to")
    as_of: str | None = Field(
        default=None, description="Date of the scoring rows; the latest event seen when absent"
    )
    accounts: TableSpec = Field(default_factory=TableSpec)
    opportunities: TableSpec = Field(default_factory=TableSpec)
    contacts: TableSpec | None = None
    contact_roles: TableSpec | None = None
    activities: list[TableSpec] = Field(default_factory=list)
    intent: TableSpec | None = None
    role_rules: list[RoleRule] | None = Field(
        default=None,
        description="Title -> role rules, first match wins; shipped defaults when absent",
    )

    @model_validator(mode="after")
    def _known(self) -> TablesSpec:
        from abm_ml.data.presets import TABLE_COLUMNS, allowed_values, object_preset

        for kind in _TABLE_KINDS:
            parts = getattr(self, kind)
            for i, part in enumerate(parts if isinstance(parts, list) else [parts]):
                if part is None:
                    continue
                where = f"{kind}[{i}]" if isinstance(parts, list) else kind
                try:
                    found = object_preset(self.preset, kind, part.object)
                except KeyError as error:
                    raise ValueError(f"{where}: {error.args[0]}") from None
                unknown = sorted(set(part.columns) - set(TABLE_COLUMNS[kind]))
                if unknown:
                    raise ValueError(
                        f"{where}: unknown column roles {unknown} "
                        f"(known: {', '.join(TABLE_COLUMNS[kind])})"
                    )
                if not (part.path or part.url or found):
                    raise ValueError(f"{where}: give its `path` or `url`")
                allowed = allowed_values(kind)
                wrong = sorted({v for v in part.values.values() if v not in allowed})
                if wrong:
                    raise ValueError(
                        f"{where}.values: {wrong} not among {', '.join(allowed) or 'nothing'}"
                    )
                if part.channel is not None and part.channel not in allowed_values("activities"):
                    raise ValueError(
                        f"{where}.channel: {part.channel!r} is not one of "
                        f"{', '.join(allowed_values('activities')[:-1])}"
                    )
        return self


def _tables_defaults(data: dict) -> dict:
    """A multi-table spec reads the rows it builds: source, ids, label and dates are known."""
    tables = data.get("tables")
    if not isinstance(tables, dict) or not isinstance(tables.get("out"), str):
        return data
    data = dict(data)
    data.setdefault("source", {"path": tables["out"].rstrip("/") + "/training_rows.parquet"})
    data.setdefault("row_id", "row_id")
    data.setdefault("account_id", "account_id")
    data.setdefault(
        "label", {"column": "outcome", "won": ["won"], "lost": ["lost"], "open": ["open"]}
    )
    data.setdefault("created_at", "created_at")
    data.setdefault("closed_at", "closed_at")
    data.setdefault("amount", "amount")
    if "features" not in data:
        from abm_ml.features.columns import default_feature_specs

        data["features"] = default_feature_specs()
    return data


class DatasetSpec(_Strict):
    """A validated dataset spec with its paths resolved relative to the spec file."""

    name: str
    description: str = ""
    source: SourceSpec
    row_id: str | None = Field(
        default=None, description="Unique row id; the row number when absent"
    )
    account_id: str | None = None
    label: LabelSpec
    created_at: DateSpec | None = None
    closed_at: DateSpec | None = None
    duration: DurationSpec | None = None
    amount: AmountSpec | None = None
    missing_values: list[str] = Field(default_factory=list)
    duplicates: Literal["keep", "drop"] = Field(
        default="keep",
        description="Without a row id: keep identical rows as distinct records, or reject them",
    )
    features: list[FeatureSpec] = Field(default_factory=list)
    infer_remaining_features: bool = False
    exclude: list[ExcludeSpec] = Field(default_factory=list)
    leakage: LeakageSpec = Field(default_factory=LeakageSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    icp: dict[str, list[str] | str] = Field(
        default_factory=dict,
        description="Ideal-customer-profile values per feature for the rule-based baseline score",
    )
    tables: TablesSpec | None = Field(
        default=None, description="CRM objects the rows are built from (docs/crm-objects.md)"
    )
    spec_path: str | None = Field(default=None, description="Set by load_spec; not written in YAML")
    _written: str = PrivateAttr(default="")

    @property
    def as_written(self) -> str:
        """The spec's YAML before ``${VAR}`` expansion and path resolution (what is logged).

        The resolved spec may hold a password expanded from the environment; this text does not.
        """
        return self._written

    @model_validator(mode="before")
    @classmethod
    def _from_tables(cls, data: object) -> object:
        return _tables_defaults(data) if isinstance(data, dict) else data

    @field_validator("created_at", "closed_at", mode="before")
    @classmethod
    def _date_shorthand(cls, value: object) -> object:
        return {"column": value} if isinstance(value, str) else value

    @field_validator("duration", mode="before")
    @classmethod
    def _duration_shorthand(cls, value: object) -> object:
        return {"column": value} if isinstance(value, str) else value

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_shorthand(cls, value: object) -> object:
        return {"column": value} if isinstance(value, str) else value

    @field_validator("features", mode="before")
    @classmethod
    def _feature_shorthand(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"column": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("exclude", mode="before")
    @classmethod
    def _exclude_shorthand(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"column": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        keys = [f.key for f in self.features]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"feature names {dupes} are used more than once")
        clash = sorted(set(keys) & set(CANONICAL_COLUMNS))
        if clash:
            raise ValueError(
                f"feature names {clash} clash with reserved column names "
                f"({', '.join(CANONICAL_COLUMNS)}); give the feature another `name:` "
                "(see docs/spec.md)"
            )
        for f in self.features:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", f.key):
                raise ValueError(f"feature name {f.key!r} must be letters, digits and underscores")
        if self.duration and self.closed_at:
            raise ValueError("give `closed_at` or `duration`, not both")
        if self.closed_at and not self.created_at:
            raise ValueError("`closed_at` needs `created_at`")
        excluded = {e.column for e in self.exclude}
        both = sorted(excluded & {f.column for f in self.features})
        if both:
            raise ValueError(f"columns {both} are both features and excluded")
        return self

    @property
    def missing_tokens(self) -> frozenset[str]:
        return frozenset(DEFAULT_MISSING_VALUES) | {v.strip().lower() for v in self.missing_values}

    @property
    def number_decimal(self) -> str:
        """The decimal mark of the file's numbers: `source.decimal`, else '.'."""
        return self.source.decimal or "."

    @property
    def amount_decimal(self) -> str:
        """The amount's decimal mark: its own, else the file's."""
        return (self.amount.decimal if self.amount else None) or self.number_decimal

    @property
    def has_dates(self) -> bool:
        return self.created_at is not None

    @property
    def has_velocity(self) -> bool:
        return self.duration is not None or self.closed_at is not None

    def role_columns(self) -> dict[str, str]:
        """Source columns that play a canonical role (id, label, dates, amount), by role."""
        roles: dict[str, str] = {"label": self.label.column}
        for role in ("row_id", "account_id"):
            column = getattr(self, role)
            if column:
                roles[role] = column
        for role in ("created_at", "closed_at", "duration", "amount"):
            part = getattr(self, role)
            if part is not None:
                roles[role] = part.column
        return roles


def slugify(column: str) -> str:
    """Turn a CRM column header into a model identifier: 'Opportunity Amount USD' -> 'opportunity_amount_usd'."""
    slug = re.sub(r"[^0-9a-z]+", "_", fold(column.strip())).strip("_")
    if not slug:
        slug = "feature"
    if slug[0].isdigit():
        slug = f"f_{slug}"
    return slug


def expand_env(text: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` from the environment."""

    def _sub(match: re.Match[str]) -> str:
        value = os.environ.get(match.group("name"))
        if value:
            return value
        return match.group("default") or ""

    return _ENV_PATTERN.sub(_sub, text)


def resolve_path(raw: str, base: Path) -> str:
    """Expand variables and resolve a relative path against the spec's folder."""
    expanded = Path(expand_env(raw)).expanduser()
    return str(expanded if expanded.is_absolute() else (base / expanded).resolve())


def _resolve_url(raw: str, base: Path) -> str:
    url = expand_env(raw)
    # sqlite:///relative.db and duckdb:///relative.duckdb are resolved against the spec's folder too.
    for scheme in ("sqlite:///", "duckdb:///"):
        if (
            url.startswith(scheme)
            and not url.startswith(scheme + "/")
            and not url.endswith(":memory:")
        ):
            return scheme + resolve_path(url[len(scheme) :], base)
    return url


def _format_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "spec"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"field `{where}`: {message}{more}"


def parse_spec(
    data: dict, *, spec_path: Path | None = None, text: str | None = None
) -> DatasetSpec:
    """Validate a spec given as a dict; resolve file paths against ``spec_path``'s folder.

    Args:
        data: the spec as written, before ``${VAR}`` expansion.
        spec_path: the spec file, whose folder relative paths are resolved against.
        text: the YAML text ``data`` was read from; kept as :attr:`DatasetSpec.as_written`
            (a YAML dump of ``data`` when absent).
    """
    source_name = str(spec_path) if spec_path else "spec"
    if not isinstance(data, dict):
        raise AbmInputError("a spec must be a YAML mapping", source=source_name)
    try:
        spec = DatasetSpec.model_validate(data)
    except ValidationError as error:
        raise AbmInputError(_format_error(error), source=source_name) from None
    base = spec_path.parent if spec_path else Path.cwd()

    def _resolve(part: SourceSpec | JoinSpec) -> dict:
        updates: dict = {}
        if part.path:
            updates["path"] = resolve_path(part.path, base)
        if part.url:
            updates["url"] = _resolve_url(part.url, base)
        return updates

    joins = [j.model_copy(update=_resolve(j)) for j in spec.source.join]
    source = spec.source.model_copy(update={**_resolve(spec.source), "join": joins})
    updates: dict = {"source": source, "spec_path": str(spec_path) if spec_path else None}
    if spec.tables is not None:
        updates["tables"] = _resolve_tables(spec.tables, base)
    resolved = spec.model_copy(update=updates)
    resolved._written = text if text is not None else yaml.safe_dump(data, sort_keys=False)
    return resolved


def _resolve_tables(tables: TablesSpec, base: Path) -> TablesSpec:
    """Export folder against the spec's folder; each table's file against the export folder."""
    from abm_ml.data.presets import object_preset

    folder = Path(resolve_path(tables.dir, base)) if tables.dir else base

    def _one(kind: str, part: TableSpec | None) -> TableSpec | None:
        if part is None:
            return None
        if part.url:
            return part.model_copy(update={"url": _resolve_url(part.url, base)})
        path = part.path or object_preset(tables.preset, kind, part.object).file  # type: ignore[union-attr]
        return part.model_copy(update={"path": resolve_path(path, folder)})

    updates: dict = {"dir": str(folder), "out": resolve_path(tables.out, base)}
    for kind in _TABLE_KINDS:
        part = getattr(tables, kind)
        if isinstance(part, list):
            updates[kind] = [_one(kind, p) for p in part]
        else:
            updates[kind] = _one(kind, part)
    return tables.model_copy(update=updates)


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 reads `on:` (a join key) and `no` (a label) as booleans."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate a YAML dataset spec.

    Raises:
        AbmInputError: the file is missing, is not YAML, or breaks the spec's rules; the message
            names the file and the field.
    """
    spec_path = Path(path)
    if not spec_path.is_file():
        raise AbmInputError("spec file not found", source=str(spec_path))
    text = spec_path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_SpecLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "spec"
        raise AbmInputError(
            f"not valid YAML ({getattr(error, 'problem', error)})",
            source=str(spec_path),
            field=where,
        ) from None
    return parse_spec(data, spec_path=spec_path.resolve(), text=text)
