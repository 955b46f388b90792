"""What the service answers: the pydantic response models, and their OpenAPI documentation.

The OpenAPI document is generated from these models (:func:`response_docs`). Small bodies
(``/metadata``, every error, the 401) are built from them. The per-record results of
``/score``, ``/rank`` and ``/explain`` are plain dicts, because validating 1,000 records into
models costs about four times their JSON encoding; tests validate every endpoint's answer
against its model. The models forbid undocumented fields, so a new field in the scorer's output
fails those tests instead of leaving the document behind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from abm_ml.service.settings import Settings

if TYPE_CHECKING:
    from abm_ml.service.contract import RecordSchema

EXPLAINS = (
    "SHAP contributions (LightGBM TreeSHAP) to the log-odds of the uncalibrated propensity model: "
    "base_value + sum(contributions) = raw_log_odds; propensity is the calibrated probability of that raw score. "
    "In probability: base_probability (the average training account) + sum(probability_points) = propensity."
)

Value = str | bool | int | float | None
"""A feature value as the model saw it (text, boolean, number; null = missing)."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reason(_Body):
    feature: str
    value: Value = None
    contribution: float = Field(
        description="SHAP contribution to the raw output (log-odds, or log days for velocity)"
    )
    probability_points: float | None = Field(
        None, description="Approximate effect on the calibrated propensity"
    )
    days: float | None = Field(None, description="Approximate effect on the P50 days to close")
    text: str


class Reasons(_Body):
    up: list[Reason]
    down: list[Reason]


class ModelRef(_Body):
    name: str = Field(description="Registered MLflow model")
    version: str | None = Field(None, description="MLflow model version")
    alias: str | None = Field(
        None, description="Alias the version was deployed under (champion, challenger)"
    )
    bento_model: str = Field(description="Bento model tag")


class ScoredAccount(_Body):
    account_id: str
    propensity: float = Field(description="Calibrated probability of winning")
    score: int = Field(description="Propensity as 1..99")
    tier: str = Field(description="A (top 10 %), B (next 20 %), C (next 30 %), D")
    days_to_close_p10: float | None = Field(
        description="null when the model was trained without dates or a duration"
    )
    days_to_close_p50: float | None
    days_to_close_p90: float | None
    amount: float | None = Field(description="null when the model was trained without amounts")
    expected_value: float | None = Field(
        description="propensity x amount; null when the model was trained without amounts"
    )
    priority: float = Field(
        description="expected value per day to close (P50); the expected value without days, "
        "the propensity without amounts"
    )
    reasons: Reasons | None = Field(None, description="Factors raising and lowering the propensity")
    velocity_reasons: Reasons | None = Field(
        None, description="Factors lengthening and shortening days to close"
    )
    model_name: str
    model_version: str | None = None


class RankedAccount(ScoredAccount):
    rank: int = Field(description="1 = first to work")


class ScoreResponse(_Body):
    model: ModelRef
    count: int
    results: list[ScoredAccount]


class RankResponse(_Body):
    model: ModelRef
    sort_by: str
    total: int = Field(description="Accounts ranked")
    count: int = Field(description="Accounts returned (<= top)")
    results: list[RankedAccount]


class ExplainedAccount(_Body):
    account_id: str
    base_value: float = Field(description="Expected raw output (log-odds) over the training data")
    raw_log_odds: float = Field(description="base_value + sum(contributions)")
    base_probability: float = Field(
        description="Mean calibrated propensity of the training accounts: where the waterfall starts"
    )
    propensity: float = Field(description="Calibrated probability of raw_log_odds")
    contributions: dict[str, float] = Field(
        description="Per feature: SHAP contribution to the log-odds"
    )
    probability_points: dict[str, float] = Field(
        description="Per feature: its step in probability; base_probability + their sum = propensity"
    )
    values: dict[str, Value] = Field(description="Per feature: the value as the model saw it")


class ExplainResponse(_Body):
    model: ModelRef
    explains: str
    count: int
    results: list[ExplainedAccount]


class FieldErrorModel(_Body):
    index: int | None = Field(None, description="Index of the bad record in 'records'")
    field: str | None = None
    message: str
    type: str


class ErrorResponse(_Body):
    error: str
    errors: list[FieldErrorModel] = []


class FeatureDoc(_Body):
    name: str
    type: str
    description: str | None = None


class MetadataResponse(_Body):
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
    features: list[FeatureDoc]
    input_schema: dict[str, Any] = Field(description="JSON schema of one account record")
    max_records: int
    ignore_unknown_fields: bool
    explains: str


def dump(body: BaseModel | Mapping[str, Any]) -> bytes:
    """A response body as compact UTF-8 JSON; a model's unset fields stay out.

    Dicts go through orjson (several times faster than ``json.dumps`` on score results);
    they are :func:`json_safe` already, so no NaN reaches it (orjson would write null).
    """
    if isinstance(body, BaseModel):
        return body.model_dump_json(exclude_unset=True).encode()
    return orjson.dumps(body)


def error_response(message: str, errors: list[Mapping[str, Any]] | None = None) -> ErrorResponse:
    """The body of every 4xx/5xx answer: one sentence, and per bad field its record and name."""
    return ErrorResponse(error=message, errors=[FieldErrorModel(**dict(e)) for e in errors or ()])


def json_safe(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# --------------------------------------------------------------------------------------------
# OpenAPI documentation
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


def response_docs(
    model: type[BaseModel], description: str = "Successful Response"
) -> dict[str, Any]:
    """The OpenAPI ``responses`` entry of one status, from the model the body is built from."""
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
