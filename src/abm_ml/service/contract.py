"""The input contract: one account record, built from the model's features, and the request.

:class:`RecordSchema` builds a strict pydantic model of one account record from the scorer's
features (categorical -> ``str``, numeric -> a finite ``float | None``, boolean -> ``bool | None``
from true/false, 1/0 or a yes/no word; ``account_id: str`` required; ``amount: float | None``). :meth:`RecordSchema.parse_request`
turns a raw HTTP body into validated records, or raises :class:`ServingError` with the HTTP
status (400 invalid JSON, 413 too large, 422 invalid) and, for a bad record, its index and
field. :func:`records_frame` turns validated records into the frame
:meth:`AccountScorer.score <abm_ml.modeling.scorer.AccountScorer.score>` takes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError

from abm_ml.errors import AbmInputError
from abm_ml.modeling.feature_info import NO_WORDS, YES_WORDS, FeatureInfo
from abm_ml.modeling.ranking import SORT_KEYS
from abm_ml.schema import ACCOUNT_ID, AMOUNT
from abm_ml.service.responses import openapi_schema
from abm_ml.service.settings import (
    DEFAULT_MAX_RECORDS,
    ENV_MAX_BODY_BYTES,
    ENV_MAX_RECORDS,
    Settings,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

MAX_REPORTED_ERRORS = 50
Kind = Literal["score", "rank", "explain"]


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


def field_error(index: int | None, field: str | None, message: str, kind: str) -> dict[str, Any]:
    """One entry of :attr:`ServingError.errors`."""
    return {"index": index, "field": field, "message": message, "type": kind}


def _yes_no(value: Any) -> Any:
    """A boolean feature's value: true/false, 1/0 or a yes/no word of
    :mod:`abm_ml.modeling.feature_info`; any other number (0.5, 7) or word is refused."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in YES_WORDS | NO_WORDS:
        return value.strip().lower() in YES_WORDS
    raise PydanticCustomError("bool_type", "Input should be true/false, 1/0 or yes/no")


YesNo = Annotated[
    bool | None,
    BeforeValidator(_yes_no),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "boolean"},
                {"type": "number", "enum": [0, 1]},  # 0.0 and 1.0 too, as JSON numbers
                {"type": "string", "enum": sorted(YES_WORDS | NO_WORDS)},
                {"type": "null"},
            ]
        }
    ),
]
"""A boolean feature: strict bool after :func:`_yes_no` has read the accepted spellings."""


def _field_type(feature: FeatureInfo) -> Any:
    if feature.type == "categorical":
        return str | None
    if feature.type == "boolean":
        return YesNo
    # FiniteFloat: 1e400 parses as inf, which no number in the answer could stand for.
    return FiniteFloat | None


def _description(feature: FeatureInfo) -> str:
    kind = {
        "categorical": "category (text; unseen categories are accepted and treated as unknown)",
        "boolean": "boolean (true/false, 1/0 or yes/no)",
    }.get(feature.type, "finite number")
    return f"{feature.description} - {kind}; null or absent = missing"


def _record_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as one entry per (record, field), in order."""
    by_place: dict[tuple[Any, Any], dict[str, Any]] = {}
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = err["loc"]
        index = loc[0] if loc and isinstance(loc[0], int) else None
        name = str(loc[1]) if len(loc) > 1 else None  # records are flat; loc[2:] names a union
        kind = err["type"]
        message = "unknown field (not a model feature)" if kind == "extra_forbidden" else err["msg"]
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            message = "each record must be a JSON object"
        if (index, name) in by_place:  # a union (boolean features): one error, both expectations
            by_place[(index, name)]["message"] += f" or {message[0].lower()}{message[1:]}"
        else:
            by_place[(index, name)] = field_error(index, name, message, kind)
    return list(by_place.values())


@dataclass
class ValidatedRequest:
    """Records ready for the scorer, and the request's options."""

    records: list[dict[str, Any]]
    top: int | None = None
    sort_by: str = "priority"


class RecordSchema:
    """The request contract that follows a scorer's features.

    Args:
        features: the model's features (``scorer.features``, or the dicts stored by
            :func:`abm_ml.service.deploy.deploy` in the Bento model's metadata).
        ignore_unknown_fields: drop fields the model does not know instead of refusing them.
    """

    def __init__(
        self,
        features: Sequence[FeatureInfo | Mapping[str, Any]],
        *,
        ignore_unknown_fields: bool = False,
    ):
        self.features: list[FeatureInfo] = [
            f if isinstance(f, FeatureInfo) else FeatureInfo(**dict(f)) for f in features
        ]
        self.ignore_unknown_fields = ignore_unknown_fields
        self.model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            "AccountRecord",
            __config__=ConfigDict(
                strict=True,
                extra="ignore" if ignore_unknown_fields else "forbid",
                populate_by_name=False,
                title="AccountRecord",
            ),
            **self._fields(),
        )
        self._adapter = TypeAdapter(list[self.model])  # type: ignore[name-defined]
        self._booleans = {f.name for f in self.features if f.type == "boolean"}

    def _fields(self) -> dict[str, Any]:
        # Python names are placeholders: the JSON names (aliases) may not be identifiers.
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
                FiniteFloat | None,
                Field(
                    None,
                    alias=AMOUNT,
                    description="Expected deal amount; missing = the training median of won deals",
                ),
            ),
        }
        for i, feature in enumerate(self.features):
            if feature.name not in (ACCOUNT_ID, AMOUNT):
                fields[f"f{i}_"] = (
                    _field_type(feature),
                    Field(None, alias=feature.name, description=_description(feature)),
                )
        return fields

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
                [field_error(None, "records", "must be a list of objects", "list_type")],
            )
        if not records:
            raise ServingError(
                422,
                "'records' is empty: send at least one account record",
                [field_error(None, "records", "at least 1 record is required", "too_short")],
            )
        if len(records) > max_records:
            raise ServingError(
                413, f"too many records: {len(records)} > limit {max_records} ({ENV_MAX_RECORDS})"
            )
        try:
            models = self._adapter.validate_python(records)
        except ValidationError as exc:
            errors = _record_errors(exc)
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
                if isinstance(row.get(name), bool):
                    row[name] = float(row[name])
            rows.append(row)
        return rows

    def parse_request(
        self, body: bytes, settings: Settings, *, kind: Kind = "score"
    ) -> ValidatedRequest:
        """A raw HTTP body -> validated records and options (``top``, ``sort_by`` for ``rank``).

        Raises:
            ServingError: 400 (not JSON), 413 (body or record count over the limit), 422 (invalid).
        """
        if len(body) > settings.max_body_bytes:
            raise ServingError(
                413,
                f"request body of {len(body)} bytes is over the limit of "
                f"{settings.max_body_bytes} ({ENV_MAX_BODY_BYTES})",
            )
        payload = parse_json(body)
        if not isinstance(payload, dict):
            raise ServingError(
                422,
                "the request body must be a JSON object with 'records'",
                [field_error(None, None, 'must be an object like {"records": [...]}', "dict_type")],
            )
        allowed = {"records"} | ({"top", "sort_by"} if kind == "rank" else set())
        unknown = sorted(set(payload) - allowed)
        if unknown and not settings.ignore_unknown_fields:
            raise ServingError(
                422,
                f"unknown field {unknown[0]!r} in the request body",
                [field_error(None, name, "unknown field", "extra_forbidden") for name in unknown],
            )
        if "records" not in payload:
            raise ServingError(
                422,
                "missing field 'records'",
                [field_error(None, "records", "field required", "missing")],
            )
        top, sort_by = _rank_options(payload) if kind == "rank" else (None, "priority")
        records = self.validate_batch(payload["records"], max_records=settings.max_records)
        return ValidatedRequest(records=records, top=top, sort_by=sort_by)

    # -- documentation ---------------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """JSON schema of one record (OpenAPI 3.0 flavour: ``nullable`` instead of null types)."""
        return openapi_schema(self.model.model_json_schema(by_alias=True))

    def request_schema(
        self, kind: Kind, *, max_records: int = DEFAULT_MAX_RECORDS
    ) -> dict[str, Any]:
        """JSON schema of a whole request body of ``/score``, ``/rank`` or ``/explain``."""
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


def _rank_options(payload: Mapping[str, Any]) -> tuple[int | None, str]:
    top = payload.get("top")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ServingError(
            422,
            "'top' must be a positive integer",
            [field_error(None, "top", "must be an integer >= 1", "int_type")],
        )
    sort_by = payload.get("sort_by", "priority")
    if sort_by not in SORT_KEYS:
        raise ServingError(
            422,
            f"'sort_by' must be one of {', '.join(SORT_KEYS)}",
            [field_error(None, "sort_by", f"must be one of {list(SORT_KEYS)}", "enum")],
        )
    return top, sort_by


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A ``\\ud800``-style escape: the only way a JSON text carries a UTF-16 surrogate."""


def _lone_surrogate(payload: Any) -> str | None:
    """Where a text (key or value) holds a lone surrogate, as ``records[3].industry``; or None.

    Iterative, so a deeply nested payload cannot exhaust the stack here.
    """
    stack: list[tuple[Any, str]] = [(payload, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return where or "the body"
        elif isinstance(node, dict):
            for key, value in node.items():
                stack.append((key, where or "the body"))
                stack.append((value, f"{where}.{key}" if where else str(key)))
        elif isinstance(node, list):
            stack.extend((value, f"{where}[{i}]") for i, value in enumerate(node))
    return None


def parse_json(body: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, no text that is not Unicode, no stack-deep nesting.

    Raises:
        ServingError: 400 when the body is not such JSON (also for a lone UTF-16 surrogate like
            ``"\\ud800"``, which no UTF-8 answer could echo, and for nesting deeper than the
            interpreter's recursion limit).
    """

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    if not body.strip():
        raise ServingError(400, "invalid JSON: the request body is empty")
    try:
        payload = json.loads(body, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServingError(400, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise ServingError(400, "invalid JSON: nested too deeply") from None
    if _SURROGATE_ESCAPE.search(body):
        where = _lone_surrogate(payload)
        if where is not None:
            where = where.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
            raise ServingError(
                400, f"invalid JSON: {where} holds a lone UTF-16 surrogate (not Unicode text)"
            )
    return payload


def records_frame(
    rows: Iterable[Mapping[str, Any]], features: Sequence[FeatureInfo]
) -> pd.DataFrame:
    """Validated record dicts -> the frame :meth:`AccountScorer.score` takes (None = missing)."""
    own = [f for f in features if f.name not in (ACCOUNT_ID, AMOUNT)]
    frame = pd.DataFrame.from_records(
        list(rows), columns=[ACCOUNT_ID, AMOUNT] + [f.name for f in own]
    )
    for name in [AMOUNT] + [f.name for f in own if f.type != "categorical"]:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame


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
