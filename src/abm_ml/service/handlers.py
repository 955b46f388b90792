"""The logic behind the BentoML scoring service (``serving/service.py`` only declares it).

Three parts:

* **Deployment.** :func:`deploy` imports a registered MLflow version (by alias or number) into
  the BentoML model store and records where it came from (MLflow model, version, alias, run,
  training date, headline metrics, the scorer's features) as the Bento model's labels and
  metadata, so the running service can say what it serves. :func:`serve` deploys when needed
  and runs ``bentoml serve`` with the right environment.
* **The input contract.** :class:`RecordSchema` builds a strict pydantic model of one account
  record from the scorer's features (categorical -> ``str``, numeric -> ``float | None``,
  boolean -> ``bool | float | None``; ``account_id: str`` required; ``amount: float | None``).
  :meth:`RecordSchema.parse_request` turns a raw HTTP body into validated records and raises
  :class:`ServingError` with the HTTP status (400 invalid JSON, 413 too large, 422 invalid) and,
  for a bad record, its index and field.
* **Calling the scorer.** :func:`score_rows` and :func:`explain_rows` wrap
  :meth:`AccountScorer.score <abm_ml.model.AccountScorer.score>` and
  :meth:`~abm_ml.model.AccountScorer.explain_full`: scoring logic exists once, in the scorer.

Everything here imports without MLflow; :func:`deploy` imports it when called.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from abm_ml import config as cfg
from abm_ml.errors import AbmInputError
from abm_ml.modeling.ranking import SORT_KEYS, rank_order
from abm_ml.schema import ACCOUNT_ID, AMOUNT

if TYPE_CHECKING:
    import bentoml

    from abm_ml.modeling.feature_info import FeatureInfo
    from abm_ml.modeling.scorer import AccountScorer

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Settings (environment)
# --------------------------------------------------------------------------------------------

ENV_BENTO_MODEL = "ABM_ML_BENTO_MODEL"
"""Bento model tag the service loads (default ``abm-account-scorer:latest``)."""
ENV_MAX_RECORDS = "ABM_ML_MAX_RECORDS"
ENV_MAX_BODY_BYTES = "ABM_ML_MAX_BODY_BYTES"
ENV_IGNORE_UNKNOWN = "ABM_ML_IGNORE_UNKNOWN_FIELDS"
ENV_API_TOKEN = "ABM_ML_API_TOKEN"
ENV_WORKERS = "ABM_ML_WORKERS"
ENV_RUNNER_WORKERS = "ABM_ML_RUNNER_WORKERS"
ENV_MAX_BATCH_SIZE = "ABM_ML_MAX_BATCH_SIZE"
ENV_MAX_LATENCY_MS = "ABM_ML_MAX_LATENCY_MS"
ENV_TIMEOUT_S = "ABM_ML_TIMEOUT_S"
ENV_BATCHING = "ABM_ML_ADAPTIVE_BATCHING"

DEFAULT_MAX_RECORDS = 1000
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_MAX_LATENCY_MS = 10_000
DEFAULT_TIMEOUT_S = 60
MAX_REPORTED_ERRORS = 50
EXPLAINS = (
    "SHAP contributions (LightGBM TreeSHAP) to the log-odds of the uncalibrated propensity model: "
    "base_value + sum(contributions) = raw_log_odds; propensity is the calibrated probability of that raw score."
)
ERROR_KEY = "__error__"
SERVICE_IMPORT = "abm_ml.service.bento:AbmScoringService"
"""What ``bentoml serve`` runs, relative to the project root (the working dir)."""

_TRUE = {"1", "true", "yes", "on"}


def _env_int(
    name: str, default: int, *, minimum: int = 1, env: Mapping[str, str] | None = None
) -> int:
    env = os.environ if env is None else env
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AbmInputError(f"must be an integer, got {raw!r}", field=name) from None
    if value < minimum:
        raise AbmInputError(f"must be at least {minimum}, got {value}", field=name)
    return value


def _env_flag(name: str, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get(name, "").strip().lower() in _TRUE


def bento_model_tag(env: Mapping[str, str] | None = None) -> str:
    """The Bento model the service loads: ``ABM_ML_BENTO_MODEL`` or ``<registered name>:latest``."""
    env = os.environ if env is None else env
    return env.get(ENV_BENTO_MODEL) or f"{bento_model_name(cfg.registered_model_name())}:latest"


@dataclass(frozen=True)
class Settings:
    """Request limits and access, read from the environment when a service instance starts."""

    max_records: int = DEFAULT_MAX_RECORDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ignore_unknown_fields: bool = False
    api_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            max_records=_env_int(ENV_MAX_RECORDS, DEFAULT_MAX_RECORDS, env=env),
            max_body_bytes=_env_int(ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES, env=env),
            ignore_unknown_fields=_env_flag(ENV_IGNORE_UNKNOWN, env),
            api_token=env.get(ENV_API_TOKEN) or None,
        )


@dataclass(frozen=True)
class ServiceConfig:
    """Process layout and adaptive batching, read when ``serving/service.py`` is imported."""

    workers: int = 1
    runner_workers: int = 1
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_latency_ms: int = DEFAULT_MAX_LATENCY_MS
    timeout_s: int = DEFAULT_TIMEOUT_S
    adaptive_batching: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceConfig:
        env = os.environ if env is None else env
        return cls(
            adaptive_batching=env.get(ENV_BATCHING, "1").strip().lower() in _TRUE,
            workers=_env_int(ENV_WORKERS, 1, env=env),
            runner_workers=_env_int(ENV_RUNNER_WORKERS, 1, env=env),
            max_batch_size=_env_int(ENV_MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_SIZE, minimum=2, env=env),
            max_latency_ms=_env_int(ENV_MAX_LATENCY_MS, DEFAULT_MAX_LATENCY_MS, env=env),
            timeout_s=_env_int(ENV_TIMEOUT_S, DEFAULT_TIMEOUT_S, env=env),
        )


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ServingError(AbmInputError):
    """A request the service refuses, with its HTTP status and, per bad field, index and field.

    ``errors`` holds ``{"index": record index or None, "field": name or None, "message", "type"}``.
    """

    def __init__(self, status: int, message: str, errors: Sequence[Mapping[str, Any]] = ()):
        self.status = status
        self.errors = [dict(e) for e in errors]
        first = self.errors[0] if self.errors else {}
        self.index = first.get("index")
        super().__init__(message)
        self.field = first.get("field")

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "errors": self.errors}


def _error(index: int | None, field_name: str | None, message: str, kind: str) -> dict[str, Any]:
    return {"index": index, "field": field_name, "message": message, "type": kind}


# --------------------------------------------------------------------------------------------
# The input contract
# --------------------------------------------------------------------------------------------


def _field_type(feature: FeatureInfo) -> Any:
    if feature.type == "categorical":
        return str | None
    if feature.type == "boolean":
        # JSON true/false or 1/0; strict mode still refuses "yes" and other strings.
        return bool | float | None
    return float | None


def _description(feature: FeatureInfo) -> str:
    kind = {
        "categorical": "category (text; unseen categories are accepted and treated as unknown)",
        "boolean": "boolean (true/false or 1/0)",
    }.get(feature.type, "number")
    return f"{feature.description} - {kind}; null or absent = missing"


@dataclass
class ValidatedRequest:
    """Records ready for the scorer, and the request's options."""

    records: list[dict[str, Any]]
    top: int | None = None
    sort_by: str = "priority"

    def frame(self, features: Sequence[FeatureInfo]) -> pd.DataFrame:
        return records_frame(self.records, features)


class RecordSchema:
    """The request contract that follows a scorer's features.

    Args:
        features: the model's features (``scorer.features``, or the dicts stored by
            :func:`deploy` in the Bento model's metadata).
        ignore_unknown_fields: drop fields the model does not know instead of refusing them.
    """

    def __init__(
        self,
        features: Sequence[FeatureInfo | Mapping[str, Any]],
        *,
        ignore_unknown_fields: bool = False,
    ):
        from abm_ml.modeling.feature_info import FeatureInfo

        self.features: list[FeatureInfo] = [
            f if isinstance(f, FeatureInfo) else FeatureInfo(**dict(f)) for f in features
        ]
        self.ignore_unknown_fields = ignore_unknown_fields
        fields: dict[str, Any] = {
            "id_": (
                str,
                Field(
                    ...,
                    alias=ACCOUNT_ID,
                    min_length=1,
                    description="Account id, returned with its scores",
                ),
            ),
            "amount_": (
                float | None,
                Field(
                    None,
                    alias=AMOUNT,
                    description="Expected deal amount; missing = the training median of won deals",
                ),
            ),
        }
        self._names = [ACCOUNT_ID, AMOUNT]
        for i, feature in enumerate(self.features):
            if feature.name in (ACCOUNT_ID, AMOUNT):
                continue
            fields[f"f{i}_"] = (
                _field_type(feature),
                Field(None, alias=feature.name, description=_description(feature)),
            )
            self._names.append(feature.name)
        self.model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            "AccountRecord",
            __config__=ConfigDict(
                strict=True,
                extra="ignore" if ignore_unknown_fields else "forbid",
                populate_by_name=False,
                title="AccountRecord",
            ),
            **fields,
        )
        self._adapter = TypeAdapter(list[self.model])  # type: ignore[name-defined]
        self._booleans = {f.name for f in self.features if f.type == "boolean"}

    @property
    def columns(self) -> list[str]:
        return list(self._names)

    # -- validation ------------------------------------------------------------------------

    def validate_batch(
        self, records: Any, *, max_records: int = DEFAULT_MAX_RECORDS
    ) -> list[dict[str, Any]]:
        """Validate a list of records; return them as dicts with every column (None = missing).

        Raises:
            ServingError: 422 naming each bad record's index and field; 413 beyond ``max_records``.
        """
        if not isinstance(records, list):
            raise ServingError(
                422,
                "'records' must be a list of account records",
                [_error(None, "records", "must be a list of objects", "list_type")],
            )
        if not records:
            raise ServingError(
                422,
                "'records' is empty: send at least one account record",
                [_error(None, "records", "at least 1 record is required", "too_short")],
            )
        if len(records) > max_records:
            raise ServingError(
                413, f"too many records: {len(records)} > limit {max_records} ({ENV_MAX_RECORDS})"
            )
        try:
            models = self._adapter.validate_python(records)
        except ValidationError as exc:
            by_place: dict[tuple[Any, Any], dict[str, Any]] = {}
            for err in exc.errors(include_url=False, include_context=False, include_input=False):
                loc = err["loc"]
                index = loc[0] if loc and isinstance(loc[0], int) else None
                name = (
                    str(loc[1]) if len(loc) > 1 else None
                )  # records are flat; loc[2:] names a union member
                kind = err["type"]
                message = (
                    "unknown field (not a model feature)"
                    if kind == "extra_forbidden"
                    else err["msg"]
                )
                if kind in ("model_type", "model_attributes_type", "dict_type"):
                    message = "each record must be a JSON object"
                if (
                    index,
                    name,
                ) in by_place:  # a union (boolean features): one error, both expectations
                    by_place[(index, name)]["message"] += f" or {message[0].lower()}{message[1:]}"
                else:
                    by_place[(index, name)] = _error(index, name, message, kind)
            errors = list(by_place.values())
            first = errors[0]
            where = f"record {first['index']}" + (
                f", field {first['field']!r}" if first["field"] else ""
            )
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise ServingError(
                422,
                f"invalid input: {where}: {first['message']}{more}",
                errors[:MAX_REPORTED_ERRORS],
            ) from None
        rows = []
        for m in models:
            row = m.model_dump(by_alias=True)
            for name in self._booleans:
                value = row.get(name)
                if isinstance(value, bool):
                    row[name] = float(value)
            rows.append(row)
        return rows

    def parse_request(
        self,
        body: bytes,
        settings: Settings,
        *,
        kind: Literal["score", "rank", "explain"] = "score",
    ) -> ValidatedRequest:
        """A raw HTTP body -> validated records and options (``top``, ``sort_by`` for ``rank``).

        Raises:
            ServingError: 400 (not JSON), 413 (body or record count over the limit), 422 (invalid).
        """
        if len(body) > settings.max_body_bytes:
            raise ServingError(
                413,
                f"request body of {len(body)} bytes is over the limit of {settings.max_body_bytes} ({ENV_MAX_BODY_BYTES})",
            )
        payload = parse_json(body)
        if not isinstance(payload, dict):
            raise ServingError(
                422,
                "the request body must be a JSON object with 'records'",
                [_error(None, None, 'must be an object like {"records": [...]}', "dict_type")],
            )
        allowed = {"records"} | ({"top", "sort_by"} if kind == "rank" else set())
        unknown = sorted(set(payload) - allowed)
        if unknown and not settings.ignore_unknown_fields:
            raise ServingError(
                422,
                f"unknown field {unknown[0]!r} in the request body",
                [_error(None, name, "unknown field", "extra_forbidden") for name in unknown],
            )
        if "records" not in payload:
            raise ServingError(
                422,
                "missing field 'records'",
                [_error(None, "records", "field required", "missing")],
            )
        top: int | None = None
        sort_by = "priority"
        if kind == "rank":
            top = payload.get("top")
            if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
                raise ServingError(
                    422,
                    "'top' must be a positive integer",
                    [_error(None, "top", "must be an integer >= 1", "int_type")],
                )
            sort_by = payload.get("sort_by", "priority")
            if sort_by not in SORT_KEYS:
                raise ServingError(
                    422,
                    f"'sort_by' must be one of {', '.join(SORT_KEYS)}",
                    [_error(None, "sort_by", f"must be one of {list(SORT_KEYS)}", "enum")],
                )
        records = self.validate_batch(payload["records"], max_records=settings.max_records)
        return ValidatedRequest(records=records, top=top, sort_by=sort_by)

    # -- documentation ---------------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """JSON schema of one record (OpenAPI 3.0 flavour: ``nullable`` instead of null types)."""
        return openapi_schema(self.model.model_json_schema(by_alias=True))

    def request_schema(
        self, kind: Literal["score", "rank", "explain"], *, max_records: int = DEFAULT_MAX_RECORDS
    ) -> dict[str, Any]:
        props: dict[str, Any] = {
            "records": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_records,
                "items": self.json_schema(),
                "description": f"1..{max_records} account records (more -> 413)",
            },
        }
        if kind == "rank":
            props["top"] = {
                "type": "integer",
                "minimum": 1,
                "nullable": True,
                "description": "Return only the first `top` ranked accounts",
            }
            props["sort_by"] = {
                "type": "string",
                "enum": list(SORT_KEYS),
                "default": "priority",
                "description": "Ranking key, descending (priority = expected value per day to close)",
            }
        return {
            "type": "object",
            "title": f"{kind.capitalize()}Request",
            "properties": props,
            "required": ["records"],
            "additionalProperties": self.ignore_unknown_fields,
        }


def parse_json(body: bytes) -> Any:
    """Strict JSON (no NaN/Infinity). Raises :class:`ServingError` 400 when it is not JSON."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    if not body.strip():
        raise ServingError(400, "invalid JSON: the request body is empty")
    try:
        return json.loads(body, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServingError(400, f"invalid JSON: {exc}") from None


def validate_records(
    records: Any,
    features: Sequence[FeatureInfo | Mapping[str, Any]],
    *,
    ignore_unknown_fields: bool = False,
    max_records: int = DEFAULT_MAX_RECORDS,
) -> pd.DataFrame:
    """Validate a batch of raw records against the features; the scorer's input frame.

    Raises:
        ServingError: with the bad record's ``index`` and ``field`` (422), or 413 when too many.
    """
    schema = RecordSchema(features, ignore_unknown_fields=ignore_unknown_fields)
    return records_frame(schema.validate_batch(records, max_records=max_records), schema.features)


def records_frame(
    rows: Sequence[Mapping[str, Any]], features: Sequence[FeatureInfo]
) -> pd.DataFrame:
    """Validated record dicts -> the frame :meth:`AccountScorer.score` takes (None = missing)."""
    columns = [ACCOUNT_ID, AMOUNT] + [
        f.name for f in features if f.name not in (ACCOUNT_ID, AMOUNT)
    ]
    frame = pd.DataFrame.from_records(list(rows), columns=columns)
    numeric = [AMOUNT] + [
        f.name for f in features if f.type != "categorical" and f.name not in (ACCOUNT_ID, AMOUNT)
    ]
    for name in numeric:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame


# --------------------------------------------------------------------------------------------
# OpenAPI helpers and response models
# --------------------------------------------------------------------------------------------


def openapi_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema as an inline OpenAPI 3.0 schema.

    Inlines ``$defs`` (our models are not recursive), turns ``anyOf [X, null]`` into
    ``X`` + ``nullable``, ``const`` into ``enum``; BentoML serves OpenAPI 3.0.2.
    """
    defs = dict(schema.get("$defs", {}))

    def is_null(v: Any) -> bool:
        return isinstance(v, dict) and v.get("type") == "null" and len(v) == 1

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        nullable = False
        variants = node.get("anyOf")
        if isinstance(variants, list) and any(is_null(v) for v in variants):
            nullable = True
            rest = [v for v in variants if not is_null(v)]
            del node["anyOf"]
            if len(rest) == 1:
                node = {**rest[0], **node}
            elif rest:
                node["anyOf"] = rest
        if "$ref" in node:
            target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
            node = {**target, **node}
        if node.get("type") == "null":
            node.pop("type")
            nullable = True
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$defs":
                continue
            if key == "const":
                out["enum"] = [value]
            elif key in ("properties", "patternProperties"):
                out[key] = {k: convert(v) for k, v in value.items()}
            else:
                out[key] = convert(value)
        if nullable:
            out["nullable"] = True
        return out

    return convert(dict(schema))


class Reason(BaseModel):
    feature: str
    value: str | float | bool | None = None
    contribution: float = Field(
        description="SHAP contribution to the raw output (log-odds, or log days for velocity)"
    )
    probability_points: float | None = Field(
        None, description="Approximate effect on the calibrated propensity"
    )
    days: float | None = Field(None, description="Approximate effect on the P50 days to close")
    text: str


class Reasons(BaseModel):
    up: list[Reason]
    down: list[Reason]


class ModelRef(BaseModel):
    name: str = Field(description="Registered MLflow model")
    version: str | None = Field(None, description="MLflow model version")
    alias: str | None = Field(
        None, description="Alias the version was deployed under (champion, challenger)"
    )
    bento_model: str = Field(description="Bento model tag")


class ScoredAccount(BaseModel):
    account_id: str
    propensity: float = Field(description="Calibrated probability of winning")
    score: int = Field(description="Propensity as 1..99")
    tier: str = Field(description="A (top 10 %), B (next 20 %), C (next 30 %), D")
    days_to_close_p10: float
    days_to_close_p50: float
    days_to_close_p90: float
    amount: float
    expected_value: float = Field(description="propensity x amount")
    priority: float = Field(description="expected value per day to close (P50)")
    reasons: Reasons | None = Field(None, description="Factors raising and lowering the propensity")
    velocity_reasons: Reasons | None = Field(
        None, description="Factors lengthening and shortening days to close"
    )
    model_name: str
    model_version: str | None = None


class RankedAccount(ScoredAccount):
    rank: int = Field(description="1 = first to work")


class ScoreResponse(BaseModel):
    model: ModelRef
    count: int
    results: list[ScoredAccount]


class RankResponse(BaseModel):
    model: ModelRef
    sort_by: str
    total: int = Field(description="Accounts ranked")
    count: int = Field(description="Accounts returned (<= top)")
    results: list[RankedAccount]


class ExplainedAccount(BaseModel):
    account_id: str
    base_value: float = Field(description="Expected raw output (log-odds) over the training data")
    raw_log_odds: float = Field(description="base_value + sum(contributions)")
    propensity: float = Field(description="Calibrated probability of raw_log_odds")
    contributions: dict[str, float] = Field(
        description="Per feature: SHAP contribution to the log-odds"
    )
    values: dict[str, str | float | None] = Field(
        description="Per feature: the value as the model saw it"
    )


class ExplainResponse(BaseModel):
    model: ModelRef
    explains: str
    count: int
    results: list[ExplainedAccount]


class FieldErrorModel(BaseModel):
    index: int | None = Field(None, description="Index of the bad record in 'records'")
    field: str | None = None
    message: str
    type: str


class ErrorResponse(BaseModel):
    error: str
    errors: list[FieldErrorModel] = []


class MetadataResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    alias: str | None = None
    trained_at: str | None = None
    dataset: str | None = None
    calibration: str | None = None
    metrics: dict[str, Any] = Field(
        description="Headline holdout metrics of the version (value, low, high)"
    )
    mlflow_run_id: str | None = None
    bento_model: str
    deployed_at: str | None = None
    features: list[dict[str, Any]]
    input_schema: dict[str, Any] = Field(description="JSON schema of one account record")
    max_records: int
    ignore_unknown_fields: bool
    explains: str


def response_docs(
    model: type[BaseModel], description: str = "Successful Response"
) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": openapi_schema(model.model_json_schema())}},
    }


ERROR_DOCS = {
    "400": "Invalid JSON",
    "401": "Missing or wrong bearer token (when ABM_ML_API_TOKEN is set)",
    "413": "Too many records (ABM_ML_MAX_RECORDS) or body too large (ABM_ML_MAX_BODY_BYTES)",
    "422": "Invalid input: each error names the record index and field",
}


def openapi_extra(
    schema: RecordSchema,
    kind: Literal["score", "rank", "explain"],
    response: type[BaseModel],
    settings: Settings,
) -> dict[str, Any]:
    """OpenAPI operation fields for an endpoint that validates its raw body itself."""
    responses = {"200": response_docs(response)}
    responses.update(
        {code: response_docs(ErrorResponse, text) for code, text in ERROR_DOCS.items()}
    )
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": schema.request_schema(kind, max_records=settings.max_records)
                }
            },
        },
        "responses": responses,
    }


# --------------------------------------------------------------------------------------------
# Calling the scorer (the runner side)
# --------------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _scored_dicts(scored: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in scored.to_dict(orient="records"):
        row.setdefault("reasons", None)
        row.setdefault("velocity_reasons", None)
        out.append(_clean(row))
    return out


def _one_by_one(
    rows: Sequence[Mapping[str, Any]],
    features: Sequence[FeatureInfo],
    call: Callable[[pd.DataFrame], list[dict[str, Any]]],
    what: str,
) -> list[dict[str, Any]]:
    """Score the whole batch; if that fails, each record alone so one bad record fails alone."""
    frame = records_frame(rows, features)
    try:
        return call(frame)
    except Exception:
        logger.exception(
            "%s of a batch of %d records failed; retrying record by record", what, len(rows)
        )
    out: list[dict[str, Any]] = []
    for i in range(len(frame)):
        try:
            out.extend(call(frame.iloc[[i]].reset_index(drop=True)))
        except Exception as exc:
            logger.exception("%s of one record failed", what)
            out.append({ERROR_KEY: f"{what} failed: {type(exc).__name__}: {exc}"})
    return out


def score_rows(
    scorer: AccountScorer, rows: Sequence[Mapping[str, Any]], *, k_up: int = 3, k_down: int = 1
) -> list[dict[str, Any]]:
    """:meth:`AccountScorer.score` on validated records; one JSON-ready dict per record, in order.

    A record the scorer fails on gets ``{"__error__": ...}`` instead of failing its batch.
    """
    if not rows:
        return []
    return _one_by_one(
        rows,
        scorer.features,
        lambda frame: _scored_dicts(scorer.score(frame, k_up=k_up, k_down=k_down)),
        "scoring",
    )


def explain_rows(scorer: AccountScorer, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:meth:`AccountScorer.explain` on validated records: every feature's contribution."""
    from abm_ml.modeling.reasons import display_value

    if not rows:
        return []

    def call(frame: pd.DataFrame) -> list[dict[str, Any]]:
        explained = scorer.explain(frame)
        names = [f.name for f in explained.features]
        return [
            _clean(
                {
                    "account_id": str(frame[ACCOUNT_ID].iloc[i]),
                    "base_value": explained.base_log_odds[i],
                    "raw_log_odds": explained.raw_log_odds[i],
                    "propensity": explained.propensity[i],
                    "contributions": dict(zip(names, explained.contributions[i])),
                    "values": {
                        name: display_value(explained.values[name].iloc[i]) for name in names
                    },
                }
            )
            for i in range(len(frame))
        ]

    return _one_by_one(rows, scorer.features, call, "explaining")


def load_scorer(bento_model: Any) -> AccountScorer:
    """The :class:`AccountScorer` inside a Bento model imported by :func:`deploy`."""
    from abm_ml.registry.pyfunc import read_scorer

    return read_scorer(bento_model.path, what=f"Bento model {bento_model.tag}")


# --------------------------------------------------------------------------------------------
# The API side: model reference, responses
# --------------------------------------------------------------------------------------------


@dataclass
class DeployedModel:
    """What :func:`deploy` recorded on a Bento model; what ``/metadata`` reports."""

    tag: str
    name: str
    version: str | None
    alias: str | None
    run_id: str | None
    trained_at: str | None
    dataset: str | None
    calibration: str | None
    deployed_at: str | None
    metrics: dict[str, Any]
    features: list[dict[str, Any]]

    @classmethod
    def from_bento(cls, bento_model: Any) -> DeployedModel:
        labels = dict(bento_model.info.labels)
        meta = dict(bento_model.info.metadata)
        scorer_meta = meta.get("scorer_metadata") or {}
        features = meta.get("features")
        if not features:
            raise AbmInputError(
                f"Bento model {bento_model.tag} has no feature list in its metadata; import it with abm_ml.serving.deploy",
                field="model",
            )
        return cls(
            tag=str(bento_model.tag),
            name=labels.get("mlflow_model") or bento_model.tag.name,
            version=labels.get("mlflow_version") or None,
            alias=labels.get("alias") or None,
            run_id=labels.get("mlflow_run_id") or None,
            trained_at=meta.get("trained_at") or scorer_meta.get("trained_at"),
            dataset=meta.get("dataset") or scorer_meta.get("dataset"),
            calibration=scorer_meta.get("calibration"),
            deployed_at=meta.get("deployed_at"),
            metrics=dict(meta.get("metrics") or {}),
            features=[dict(f) for f in features],
        )

    def ref(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "bento_model": self.tag,
        }


class Frontend:
    """Request handling of the public service, independent of the web framework."""

    def __init__(
        self, model: DeployedModel, settings: Settings, schema: RecordSchema | None = None
    ):
        self.model = model
        self.settings = settings
        if schema is None or schema.ignore_unknown_fields != settings.ignore_unknown_fields:
            schema = RecordSchema(
                model.features, ignore_unknown_fields=settings.ignore_unknown_fields
            )
        self.schema = schema

    def parse(self, body: bytes, kind: Literal["score", "rank", "explain"]) -> ValidatedRequest:
        return self.schema.parse_request(body, self.settings, kind=kind)

    def _check(self, rows: Sequence[Mapping[str, Any]], expected: int) -> None:
        if len(rows) != expected:
            raise ServingError(
                500, f"the model returned {len(rows)} results for {expected} records"
            )
        bad = [i for i, r in enumerate(rows) if ERROR_KEY in r]
        if bad:
            raise ServingError(
                500,
                f"the model failed on record {bad[0]}: {rows[bad[0]][ERROR_KEY]}",
                [
                    _error(i, None, str(rows[i][ERROR_KEY]), "model_error")
                    for i in bad[:MAX_REPORTED_ERRORS]
                ],
            )

    def _with_model(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [
            {**r, "model_name": self.model.name, "model_version": self.model.version} for r in rows
        ]

    def score_body(
        self, request: ValidatedRequest, rows: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        self._check(rows, len(request.records))
        results = self._with_model(rows)
        return {"model": self.model.ref(), "count": len(results), "results": results}

    def rank_body(
        self, request: ValidatedRequest, rows: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        self._check(rows, len(request.records))
        ranked = rank_results(self._with_model(rows), sort_by=request.sort_by, top=request.top)
        return {
            "model": self.model.ref(),
            "sort_by": request.sort_by,
            "total": len(rows),
            "count": len(ranked),
            "results": ranked,
        }

    def explain_body(
        self, request: ValidatedRequest, rows: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        self._check(rows, len(request.records))
        return {
            "model": self.model.ref(),
            "explains": EXPLAINS,
            "count": len(rows),
            "results": list(rows),
        }

    def metadata(self) -> dict[str, Any]:
        m = self.model
        return {
            "model_name": m.name,
            "model_version": m.version,
            "alias": m.alias,
            "trained_at": m.trained_at,
            "dataset": m.dataset,
            "calibration": m.calibration,
            "metrics": m.metrics,
            "mlflow_run_id": m.run_id,
            "bento_model": m.tag,
            "deployed_at": m.deployed_at,
            "features": [
                {k: f.get(k) for k in ("name", "type", "description")} for f in m.features
            ],
            "input_schema": self.schema.json_schema(),
            "max_records": self.settings.max_records,
            "ignore_unknown_fields": self.settings.ignore_unknown_fields,
            "explains": EXPLAINS,
        }


def _dropped_connection(exc: BaseException) -> bool:
    """An internal connection to the runner that broke before an answer (safe to retry)."""
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp comes with BentoML
        return False
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return True
    return isinstance(exc, RuntimeError) and "Session is closed" in str(exc)


def keep_runner_session(proxy: Any) -> bool:
    """Stop BentoML's dependency client from renewing its HTTP session every 100 calls.

    The renewal closes the old session under the calls still in flight on it (see
    :func:`call_runner`); over a local Unix socket there is nothing to renew. Returns whether a
    client was adjusted (False for an in-process runner, or if BentoML's internals moved).
    """
    changed = False
    for client in (getattr(proxy, "_async", None), getattr(proxy, "_sync", None)):
        manager = getattr(client, "_session_manager", None)
        if manager is not None and hasattr(manager, "max_requests") and hasattr(manager, "max_age"):
            manager.max_requests = sys.maxsize
            manager.max_age = float("inf")
            changed = True
    return changed


async def call_runner(
    method: Callable[[list[dict[str, Any]]], Any],
    records: list[dict[str, Any]],
    *,
    attempts: int = 3,
) -> list[dict[str, Any]]:
    """Call a runner method, retrying when the internal connection drops.

    BentoML's dependency client (1.4.30+) renews its HTTP session every 100 calls by closing the
    old one, which cuts the calls still in flight on it ("Server disconnected", "Connector is
    closed"; bentoml/BentoML#5540, #5544). Scoring is idempotent, so those calls are retried.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await method(records)
        except Exception as exc:
            if attempt == attempts or not _dropped_connection(exc):
                raise
            logger.warning(
                "runner connection dropped (%s); retrying (%d/%d)",
                type(exc).__name__,
                attempt,
                attempts - 1,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def rank_results(
    results: Sequence[Mapping[str, Any]], *, sort_by: str = "priority", top: int | None = None
) -> list[dict[str, Any]]:
    """Results in the order of :func:`abm_ml.modeling.ranking.rank_order`, with ``rank`` from 1."""
    if sort_by not in SORT_KEYS:
        raise ServingError(
            422,
            f"'sort_by' must be one of {', '.join(SORT_KEYS)}",
            [_error(None, "sort_by", "invalid", "enum")],
        )

    def column(name: str) -> list[float]:
        return [np.nan if r.get(name) is None else r[name] for r in results]

    order = rank_order(column(sort_by), column("propensity"))
    if top is not None:
        order = order[:top]
    return [{**results[i], "rank": r} for r, i in enumerate(order, start=1)]


# --------------------------------------------------------------------------------------------
# Access
# --------------------------------------------------------------------------------------------


class BearerAuthMiddleware:
    """ASGI middleware: with ``ABM_ML_API_TOKEN`` set, every path but ``/healthz`` needs the token.

    The token is compared in constant time and never logged; a missing or wrong token gets 401.
    """

    OPEN_PATHS = frozenset({"/healthz"})

    def __init__(self, app: Any, token: str | None = None):
        self.app = app
        token = token if token is not None else os.environ.get(ENV_API_TOKEN)
        self._token = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def authorized(self, header: bytes | None) -> bool:
        if self._token is None:
            return True
        if not header:
            return False
        scheme, _, credentials = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(credentials.strip(), self._token)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (
            self._token is None
            or scope.get("type") != "http"
            or scope.get("path") in self.OPEN_PATHS
        ):
            await self.app(scope, receive, send)
            return
        header = None
        for key, value in scope.get("headers") or ():
            if key == b"authorization":
                header = value
                break
        if self.authorized(header):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "missing or invalid bearer token", "errors": []}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="abm-ml"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------------------------
# Deployment: MLflow registry -> BentoML model store
# --------------------------------------------------------------------------------------------

HEADLINE_METRICS = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top_decile")
HEADLINE_VELOCITY = ("mae_days", "coverage_p10_p90", "mae_improvement")


def bento_model_name(registered_name: str) -> str:
    """A valid Bento model name for a registered MLflow model name."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", registered_name.lower()).strip("-._")
    return (slug or "abm-account-scorer")[:63]


def _safe_uri(uri: str) -> str:
    """A tracking URI without credentials."""
    return re.sub(r"//[^/@]*@", "//", uri)


def _no_none(value: Any) -> Any:
    """BentoML metadata takes no None: drop None entries from dicts, turn None in lists into ''."""
    if isinstance(value, dict):
        return {k: _no_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [("" if v is None else _no_none(v)) for v in value]
    return value


def _headline_metrics(run_metrics: Mapping[str, float], tags: Mapping[str, str]) -> dict[str, Any]:
    from abm_ml.modeling.train import MODEL_NAME

    prefix = re.sub(r"[^A-Za-z0-9_\-. /]", "_", MODEL_NAME.replace("-", "_"))
    out: dict[str, Any] = {}
    for name, key in [(n, f"{prefix}_{n}") for n in HEADLINE_METRICS] + [
        (f"velocity_{n}", f"velocity_{prefix}_{n}") for n in HEADLINE_VELOCITY
    ]:
        if key in run_metrics:
            out[name] = {
                "value": run_metrics[key],
                "low": run_metrics.get(f"{key}_low"),
                "high": run_metrics.get(f"{key}_high"),
            }
    if "roc_auc" not in out and tags.get("roc_auc"):
        out["roc_auc"] = {"value": float(tags["roc_auc"]), "interval": tags.get("roc_auc_interval")}
    return _clean(out)


def find_deployed(name: str, version: str, run_id: str | None, alias: str | None) -> Any | None:
    """The newest Bento model already imported from this MLflow version under this alias."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        models = bentoml.models.list(bento_model_name(name))
    except NotFound:
        return None
    matches = [
        m
        for m in models
        if m.info.labels.get("mlflow_model") == name
        and m.info.labels.get("mlflow_version") == str(version)
        and m.info.labels.get("mlflow_run_id", "") == (run_id or "")
        and m.info.labels.get("alias", "") == (alias or "")
        and m.info.metadata.get("features")
    ]
    return max(matches, key=lambda m: m.info.creation_time) if matches else None


def deploy(
    alias: str = "champion", *, model_name: str | None = None, force: bool = False
) -> bentoml.Tag:
    """Import the MLflow version behind ``alias`` (or a version number) into the BentoML store.

    The Bento model is named after the registered model (``abm-account-scorer``). Its labels
    carry the MLflow model, version, alias and run; its metadata the training date, headline
    metrics, dataset and the scorer's features (the service builds its input contract from
    them). An import of the same version under the same alias is reused unless ``force``.

    Returns:
        The Bento model's tag.
    """
    import bentoml
    import mlflow
    from mlflow.tracking import MlflowClient

    from abm_ml.registry.promotion import resolve_version
    from abm_ml.registry.pyfunc import read_scorer
    from abm_ml.registry.tracking import configure

    uri = configure()
    name = model_name or cfg.registered_model_name()
    mv = resolve_version(name, alias)
    alias_label = "" if str(alias).isdigit() else str(alias)
    if not force:
        existing = find_deployed(name, str(mv.version), mv.run_id, alias_label)
        if existing is not None:
            logger.info(
                "Bento model %s already holds %s version %s (%s)",
                existing.tag,
                name,
                mv.version,
                alias,
            )
            return existing.tag
    client = MlflowClient()
    run_metrics: dict[str, float] = {}
    if mv.run_id:
        with contextlib.suppress(Exception):
            run_metrics = dict(client.get_run(mv.run_id).data.metrics)
    model_uri = f"models:/{name}/{mv.version}"
    with tempfile.TemporaryDirectory(prefix="abm-deploy-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        scorer = read_scorer(local, what=f"version {mv.version} of {name!r}")
        tags = dict(mv.tags or {})
        scorer_meta = _clean(dict(scorer.metadata))
        metadata = {
            "mlflow_model_uri": model_uri,
            "mlflow_tracking_uri": _safe_uri(uri),
            "mlflow_version": str(mv.version),
            "alias": alias_label or None,
            "trained_at": tags.get("trained_at") or scorer_meta.get("trained_at"),
            "dataset": tags.get("dataset") or scorer_meta.get("dataset"),
            "metrics": _headline_metrics(run_metrics, tags),
            "version_tags": {k: v for k, v in tags.items() if not k.startswith("mlflow.")},
            "scorer_metadata": scorer_meta,
            "features": [_clean(f.to_dict()) for f in scorer.features],
            "has_velocity_model": scorer.velocity is not None,
            "deployed_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        }
        labels = {
            "mlflow_model": name,
            "mlflow_version": str(mv.version),
            "alias": alias_label,
            "mlflow_run_id": mv.run_id or "",
            "trained_at": str(metadata["trained_at"] or ""),
            "dataset": str(metadata["dataset"] or ""),
            "source": "abm-ml",
        }
        bento_model = bentoml.mlflow.import_model(
            bento_model_name(name),
            local,
            labels=labels,
            metadata=_no_none(metadata),
            signatures={"predict": {"batchable": False}},
        )
    logger.info(
        "imported %s version %s (%s) as Bento model %s", name, mv.version, alias, bento_model.tag
    )
    return bento_model.tag


@contextlib.contextmanager
def use_bentoml_home(home: str | Path) -> Iterator[Path]:
    """Point BentoML's stores (and child processes) at ``home`` for the duration of the block.

    Sets ``BENTOML_HOME`` and overrides BentoML's already-resolved store providers, so it also
    works after BentoML has touched its default home in this process.
    """
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    home = Path(home).resolve()
    for sub in ("bentos", "models", "envs", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("BENTOML_HOME")
    os.environ["BENTOML_HOME"] = str(home)
    c = BentoMLContainer
    try:
        with contextlib.ExitStack() as stack:
            for provider, value in (
                (c.bentoml_home, str(home)),
                (c.bento_store_dir, str(home / "bentos")),
                (c.model_store_dir, str(home / "models")),
                (c.env_store_dir, str(home / "envs")),
                (c.tmp_bento_store_dir, str(home / "tmp")),
                (c.bento_store, BentoStore(str(home / "bentos"))),
                (c.tmp_bento_store, BentoStore(str(home / "tmp"))),
                (c.model_store, ModelStore(str(home / "models"))),
            ):
                stack.enter_context(provider.patch(value))
            yield home
    finally:
        if previous is None:
            os.environ.pop("BENTOML_HOME", None)
        else:
            os.environ["BENTOML_HOME"] = previous


# --------------------------------------------------------------------------------------------
# Running the service
# --------------------------------------------------------------------------------------------


def _bentoml_home() -> str:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())


def serve_command(
    bento_model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    workers: int = 1,
    runner_workers: int = 1,
    env: Mapping[str, str] | None = None,
    graceful_shutdown_s: int = 10,
) -> tuple[list[str], dict[str, str]]:
    """The ``bentoml serve`` command line and environment for a deployed Bento model."""
    child = dict(os.environ)
    child.update(env or {})
    child[ENV_BENTO_MODEL] = str(bento_model)
    child[ENV_WORKERS] = str(workers)
    child[ENV_RUNNER_WORKERS] = str(runner_workers)
    child["BENTOML_HOME"] = _bentoml_home()
    child.setdefault("BENTOML_DO_NOT_TRACK", "True")
    # One OpenMP thread per worker: LightGBM's thread start-up dominates small batches (see README).
    child.setdefault("OMP_NUM_THREADS", "1")
    argv = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE_IMPORT,
        "--host",
        host,
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        str(graceful_shutdown_s),
    ]
    return argv, child


def serve(
    host: str = "127.0.0.1",
    port: int = 3000,
    alias: str = "champion",
    workers: int = 1,
    *,
    runner_workers: int = 1,
    model_name: str | None = None,
    bento_model: str | None = None,
    env: Mapping[str, str] | None = None,
    background: bool = False,
    log_path: str | Path | None = None,
) -> subprocess.Popen | None:
    """Serve the model behind ``alias``: deploy it when needed, then run ``bentoml serve``.

    Args:
        bento_model: serve this Bento model tag instead of deploying ``alias``.
        env: extra environment for the server (e.g. ``ABM_ML_API_TOKEN``, ``ABM_ML_MAX_RECORDS``).
        background: start the server as a child process (its own process group) and return it;
            stop it with :func:`stop_server`. Otherwise replace this process with the server.
        log_path: with ``background``, where the server's output goes (default: inherited).
    """
    tag = bento_model or str(deploy(alias, model_name=model_name))
    argv, child_env = serve_command(
        tag, host=host, port=port, workers=workers, runner_workers=runner_workers, env=env
    )
    logger.info("serving Bento model %s on http://%s:%d", tag, host, port)
    if background:
        out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - owned by the child's lifetime
        try:
            return subprocess.Popen(
                argv,
                env=child_env,
                cwd=str(cfg.PROJECT_ROOT),
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
            )
        finally:
            if out:
                out.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(cfg.PROJECT_ROOT)
    os.execve(argv[0], argv, child_env)
    return None  # pragma: no cover - execve does not return


def stop_server(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """Stop a server started by :func:`serve` (``background=True``) and every worker it spawned.

    SIGTERM to the server's process group (graceful: in-flight requests get
    ``--timeout-graceful-shutdown`` seconds), SIGKILL after ``timeout``; then any descendant
    still alive (BentoML's workers) is killed by its pid.
    """
    import psutil

    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if child.is_running():
                child.kill()
    psutil.wait_procs(descendants, timeout=5)
    return proc.returncode


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_ready(
    base_url: str,
    *,
    token: str | None = None,
    timeout: float = 180.0,
    proc: subprocess.Popen | None = None,
) -> float:
    """Poll ``/readyz`` until it answers 200; the seconds it took.

    Raises:
        RuntimeError: the server process exited, or it was not ready within ``timeout``.
    """
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    last = "no answer"
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() - started < timeout:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with code {proc.returncode} before it was ready"
                )
            try:
                resp = client.get(f"{base_url}/readyz", headers=headers)
                if resp.status_code == 200:
                    return time.monotonic() - started
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.5)
    raise RuntimeError(f"the server at {base_url} was not ready after {timeout:.0f} s ({last})")


def import_service(module_name: str = "abm_serving_service") -> Any:
    """Import ``serving/service.py`` in this process (once), e.g. for ``AbmScoringService.to_asgi()``.

    It reads ``ABM_ML_BENTO_MODEL`` and the BentoML store when first imported.
    """
    import importlib

    return importlib.import_module("abm_ml.service.bento")


# --------------------------------------------------------------------------------------------
# A private, self-contained deployment (tests and the benchmark)
# --------------------------------------------------------------------------------------------


def bootstrap_deployment(
    result: Any, root: str | Path, *, alias: str = "champion"
) -> dict[str, str]:
    """Log a training result to a private MLflow store under ``root``, make it champion, deploy it.

    Sets ``ABM_ML_MODELS_DIR`` (and clears ``MLFLOW_TRACKING_URI``) for this process; call it
    inside :func:`use_bentoml_home`. A second call with the same ``root`` reuses the first's work.

    Returns:
        ``{"tag", "models_dir", "version"}``.
    """
    root = Path(root)
    marker = root / "deployment.json"
    models_dir = root / "models"
    os.environ["ABM_ML_MODELS_DIR"] = str(models_dir)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    if marker.is_file():
        info = json.loads(marker.read_text())
        import bentoml

        with contextlib.suppress(Exception):
            bentoml.models.get(info["tag"])
            return info
    from abm_ml.registry.promotion import promote
    from abm_ml.registry.tracking import configure, log_training

    configure()
    logged = log_training(result)
    promote(version=logged["version"])
    tag = deploy(alias)
    info = {"tag": str(tag), "models_dir": str(models_dir), "version": str(logged["version"])}
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(info))
    return info


def json_records(
    frame: pd.DataFrame, features: list[FeatureInfo], n: int | None = None, *, start: int = 0
) -> list[dict[str, Any]]:
    """Rows as a CRM integration sends them: text categories, numbers, booleans, nulls.

    Rows are cycled when ``n`` exceeds what ``frame`` holds after ``start`` (benchmarks ask for more).
    """
    rows = frame.reset_index(drop=True)
    count = len(rows) - start if n is None else n
    out: list[dict[str, Any]] = []
    for i in range(count):
        r = rows.iloc[(start + i) % len(rows)]
        amount = r.get("amount")
        rec: dict[str, Any] = {
            "account_id": str(r.get("account_id", f"acct-{start + i}")),
            "amount": None if amount is None or pd.isna(amount) else float(amount),
        }
        for f in features:
            v = r.get(f.name)
            if v is None or pd.isna(v):
                rec[f.name] = None
            elif f.type == "categorical":
                rec[f.name] = str(v)
            elif f.type == "boolean":
                rec[f.name] = bool(float(v))
            else:
                rec[f.name] = float(v)
        out.append(rec)
    return out
