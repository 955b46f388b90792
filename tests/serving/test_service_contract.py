"""The input contract: one account record built from the model's features, request parsing,
and the settings requests are checked against. Uses the small real model of ``trained``."""

from __future__ import annotations

import json
import math

import pytest

from abm_ml.errors import AbmInputError
from abm_ml.service import contract
from abm_ml.service.contract import RecordSchema, ServingError
from abm_ml.service.settings import ServiceConfig, Settings, available_cores

# -- the input contract ---------------------------------------------------------------------


def test_schema_follows_the_features(scorer, schema):
    js = schema.json_schema()
    props = js["properties"]
    assert js["required"] == ["account_id"]
    assert js["additionalProperties"] is False
    assert props["account_id"]["type"] == "string"
    assert props["amount"] == {**props["amount"], "type": "number", "nullable": True}
    for f in scorer.features:
        p = props[f.name]
        assert p["nullable"] is True
        if f.type == "categorical":
            assert p["type"] == "string"
        elif f.type == "boolean":
            assert {v["type"] for v in p["anyOf"]} == {"boolean", "number", "string"}
            # 0.0 and 1.0 are accepted as 0 and 1: the schema says so (a client's JSON
            # library may write either)
            assert next(v for v in p["anyOf"] if v["type"] == "number")["enum"] == [0, 1]
            assert {"yes", "no"} <= set(
                next(v for v in p["anyOf"] if v["type"] == "string")["enum"]
            )
        else:
            assert p["type"] == "number"
    text = json.dumps(js)
    assert '"type": "null"' not in text and "$ref" not in text


def test_valid_batch_becomes_the_scorers_frame(trained, scorer, make_records):
    records = make_records(3)
    records[1] = {
        "account_id": "ACC-NEW",
        "industry": "space mining",
        "has_economic_buyer": True,
        "web_visits_30d": 7,
    }
    frame = contract.validate_records(records, scorer.features)
    assert list(frame.columns[:2]) == ["account_id", "amount"]
    assert set(scorer.feature_names) <= set(frame.columns)
    assert len(frame) == 3
    assert (
        frame.loc[1, "industry"] == "space mining"
    )  # unseen category kept: the scorer treats it as unknown
    assert frame.loc[1, "has_economic_buyer"] == 1.0
    assert math.isnan(frame.loc[1, "employees"]) and math.isnan(
        frame.loc[1, "amount"]
    )  # absent = missing
    assert frame["employees"].dtype == float


def test_wrong_type_names_the_record_and_field(trained, scorer, make_records):
    records = make_records(4)
    records[2]["employees"] = "1200"
    with pytest.raises(ServingError) as info:
        contract.validate_records(records, scorer.features)
    err = info.value
    assert err.status == 422 and err.index == 2 and err.field == "employees"
    assert "record 2" in str(err) and "employees" in str(err)


@pytest.mark.parametrize(
    ("record", "field", "kind"),
    [
        ({"account_id": "a", "industry": 5}, "industry", "string_type"),
        ({"account_id": "a", "web_visits_30d": True}, "web_visits_30d", "float_type"),
        ({"account_id": "a", "has_economic_buyer": 0.5}, "has_economic_buyer", "bool_type"),
        ({"account_id": "a", "has_economic_buyer": 7}, "has_economic_buyer", "bool_type"),
        ({"account_id": "a", "has_economic_buyer": "maybe"}, "has_economic_buyer", "bool_type"),
        ({"account_id": "a", "employees": 1e400}, "employees", "finite_number"),
        ({"account_id": "a", "amount": -1e400}, "amount", "finite_number"),
        ({"industry": "software"}, "account_id", "missing"),
        ({"account_id": 17}, "account_id", "string_type"),
        ({"account_id": ""}, "account_id", "string_too_short"),
        ({"account_id": "a", "web_visitz": 3}, "web_visitz", "extra_forbidden"),
    ],
)
def test_each_kind_of_bad_record_is_refused(schema, record, field, kind):
    with pytest.raises(ServingError) as info:
        schema.validate_batch([{"account_id": "ok"}, record])
    err = info.value
    assert (err.status, err.index, err.field) == (422, 1, field)
    if kind:
        assert err.errors[0]["type"] == kind


def test_booleans_take_true_false_one_zero_and_yes_no_words(schema):
    values = [True, False, 1, 0, 1.0, "Yes", " no ", "TRUE", "n", None]
    rows = schema.validate_batch(
        [{"account_id": str(i), "has_economic_buyer": v} for i, v in enumerate(values)]
    )
    assert [r["has_economic_buyer"] for r in rows] == [
        1.0,
        0.0,
        1.0,
        0.0,
        1.0,
        1.0,
        0.0,
        1.0,
        0.0,
        None,
    ]


def test_every_bad_record_is_listed(schema):
    batch = [
        {"account_id": "a", "employees": "x"},
        {"account_id": "b"},
        {"account_id": "c", "nope": 1},
        "not an object",
    ]
    with pytest.raises(ServingError) as info:
        schema.validate_batch(batch)
    where = [(e["index"], e["field"]) for e in info.value.errors]
    assert where == [(0, "employees"), (2, "nope"), (3, None)]
    assert "(and 2 more)" in str(info.value)


def test_unknown_fields_can_be_ignored(scorer):
    lenient = RecordSchema(scorer.features, ignore_unknown_fields=True)
    rows = lenient.validate_batch([{"account_id": "a", "crm_owner": "jane", "employees": 40}])
    assert "crm_owner" not in rows[0] and rows[0]["employees"] == 40.0
    assert lenient.json_schema().get("additionalProperties", True) is not False


def test_batch_shape_and_size(schema):
    for payload, status in (({"account_id": "a"}, 422), ([], 422), ("x", 422)):
        with pytest.raises(ServingError) as info:
            schema.validate_batch(payload)
        assert info.value.status == status
    with pytest.raises(ServingError) as info:
        schema.validate_batch([{"account_id": str(i)} for i in range(6)], max_records=5)
    assert info.value.status == 413 and "5" in str(info.value)
    assert (
        len(schema.validate_batch([{"account_id": str(i)} for i in range(5)], max_records=5)) == 5
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b'{"records": [{"account_id": "a", "employees": NaN}]}', 400, None),
        (b'[{"account_id": "a"}]', 422, None),
        (b'{"rows": []}', 422, "rows"),
        (b'{"records": [{"account_id": "a"}], "extra": 1}', 422, "extra"),
        (b"{}", 422, "records"),
        # a number too big for a float is infinity, refused like NaN: never a null in the answer
        (b'{"records": [{"account_id": "a", "employees": 1e400}]}', 422, "employees"),
        # nested deeper than Python's recursion limit: RecursionError, once a 500
        (b'{"records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, None),
        # a lone UTF-16 surrogate no answer can echo in UTF-8, once a 500 on /explain
        (b'{"records": [{"account_id": "a", "industry": "\\ud800"}]}', 400, None),
        (b'{"records": [{"account_id": "a\\udfff"}]}', 400, None),
        (b'{"records": [{"account_id": "a", "\\ud800": 1}]}', 400, None),
    ],
)
def test_parse_request_statuses(schema, body, status, field):
    with pytest.raises(ServingError) as info:
        schema.parse_request(body, Settings())
    assert info.value.status == status
    assert info.value.field == field


def test_json_text_that_is_unicode_is_kept(schema):
    body = '{"records": [{"account_id": "a\\\\ud800", "industry": "\\ud83d\\ude80 \u00e9"}]}'
    ok = schema.parse_request(body.encode(), Settings())
    assert ok.records[0]["account_id"] == "a\\ud800"  # an escaped backslash, not a surrogate
    assert ok.records[0]["industry"] == "\U0001f680 \u00e9"  # a valid pair is one character
    with pytest.raises(ServingError) as info:
        schema.parse_request(
            b'{"records": [{"account_id": "x", "industry": "\\ud800"}]}', Settings()
        )
    assert "records[0].industry" in str(info.value)


def test_parse_request_limits_and_rank_options(schema):
    body = json.dumps({"records": [{"account_id": "a"}] * 3}).encode()
    with pytest.raises(ServingError) as info:
        schema.parse_request(body, Settings(max_records=2))
    assert info.value.status == 413
    with pytest.raises(ServingError) as info:
        schema.parse_request(body, Settings(max_body_bytes=10))
    assert info.value.status == 413
    ok = schema.parse_request(
        json.dumps({"records": [{"account_id": "a"}], "top": 1, "sort_by": "propensity"}).encode(),
        Settings(),
        kind="rank",
    )
    assert (ok.top, ok.sort_by, len(ok.records)) == (1, "propensity", 1)
    for extra, field in (
        ({"top": 0}, "top"),
        ({"top": "3"}, "top"),
        ({"top": True}, "top"),
        ({"sort_by": "score"}, "sort_by"),
    ):
        with pytest.raises(ServingError) as info:
            schema.parse_request(
                json.dumps({"records": [{"account_id": "a"}], **extra}).encode(),
                Settings(),
                kind="rank",
            )
        assert (info.value.status, info.value.field) == (422, field)
    # top/sort_by belong to /rank only
    with pytest.raises(ServingError):
        schema.parse_request(
            json.dumps({"records": [{"account_id": "a"}], "top": 1}).encode(),
            Settings(),
            kind="score",
        )


def test_settings_from_env():
    s = Settings.from_env(
        {"ABM_ML_MAX_RECORDS": "7", "ABM_ML_IGNORE_UNKNOWN_FIELDS": "1", "ABM_ML_API_TOKEN": "t0k"}
    )
    assert (s.max_records, s.ignore_unknown_fields, s.api_token) == (7, True, "t0k")
    assert "t0k" not in repr(s)
    assert Settings.from_env({}) == Settings()
    with pytest.raises(AbmInputError, match="ABM_ML_MAX_RECORDS"):
        Settings.from_env({"ABM_ML_MAX_RECORDS": "lots"})


def test_service_config_from_env():
    config = ServiceConfig.from_env({"ABM_ML_WORKERS": "3", "ABM_ML_TIMEOUT_S": "5"})
    assert (config.workers, config.timeout_s) == (3, 5)
    # One worker per core by default (a blank setting is no setting).
    assert ServiceConfig.from_env({"ABM_ML_WORKERS": ""}).workers == available_cores() >= 1
    with pytest.raises(AbmInputError, match="ABM_ML_WORKERS"):
        ServiceConfig.from_env({"ABM_ML_WORKERS": "0"})
