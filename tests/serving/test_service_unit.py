"""The scoring service's logic: input contract, scorer calls, ranking, access, deployment.

Uses the small real model of the ``trained`` fixture. The deployment tests log it to a private
MLflow store and import it into a private BentoML home (``BENTOML_HOME`` in a temp dir).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from abm_ml import config as cfg
from abm_ml.service import handlers as serving
from abm_ml.service.handlers import RecordSchema, ServingError, Settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def deployment(trained, tmp_path_factory):
    """The trained model logged to a private MLflow store, made champion and imported into BentoML."""
    root = tmp_path_factory.getbasetemp() / "abm-serving-deployment"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABM_ML_MODELS_DIR", str(root / "models"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mp.setenv("ABM_ML_REPORTS_DIR", str(root / "reports"))
        mp.setenv("BENTOML_DO_NOT_TRACK", "True")
        with serving.use_bentoml_home(root / "bentoml"):
            info = serving.bootstrap_deployment(trained, root)
            mp.setenv(serving.ENV_BENTO_MODEL, info["tag"])
            yield info


@pytest.fixture(scope="module")
def scorer(trained):
    return trained.scorer


@pytest.fixture(scope="module")
def schema(scorer) -> RecordSchema:
    return RecordSchema(scorer.features)


def raw_records(trained, n: int = 5) -> list[dict]:
    """Holdout rows as a CRM would send them: strings for categories, numbers, booleans."""
    return serving.json_records(trained.holdout, trained.scorer.features, n)


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
            assert {v["type"] for v in p["anyOf"]} == {"boolean", "number"}
        else:
            assert p["type"] == "number"
    text = json.dumps(js)
    assert '"type": "null"' not in text and "$ref" not in text


def test_valid_batch_becomes_the_scorers_frame(trained, scorer):
    records = raw_records(trained, 3)
    records[1] = {
        "account_id": "ACC-NEW",
        "industry": "space mining",
        "has_economic_buyer": True,
        "web_visits_30d": 7,
    }
    frame = serving.validate_records(records, scorer.features)
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


def test_wrong_type_names_the_record_and_field(trained, scorer):
    records = raw_records(trained, 4)
    records[2]["employees"] = "1200"
    with pytest.raises(ServingError) as info:
        serving.validate_records(records, scorer.features)
    err = info.value
    assert err.status == 422 and err.index == 2 and err.field == "employees"
    assert "record 2" in str(err) and "employees" in str(err)


@pytest.mark.parametrize(
    ("record", "field", "kind"),
    [
        ({"account_id": "a", "industry": 5}, "industry", "string_type"),
        ({"account_id": "a", "web_visits_30d": True}, "web_visits_30d", "float_type"),
        ({"account_id": "a", "has_economic_buyer": "yes"}, "has_economic_buyer", None),
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
    ],
)
def test_parse_request_statuses(schema, body, status, field):
    with pytest.raises(ServingError) as info:
        schema.parse_request(body, Settings())
    assert info.value.status == status
    assert info.value.field == field


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
    with pytest.raises(serving.AbmInputError, match="ABM_ML_MAX_RECORDS"):
        Settings.from_env({"ABM_ML_MAX_RECORDS": "lots"})


# -- calling the scorer ---------------------------------------------------------------------


def test_score_rows_is_the_scorers_output(trained, scorer, schema):
    records = raw_records(trained, 6)
    records.append({"account_id": "ACC-NEW", "industry": "never seen", "employees": None})
    rows = schema.validate_batch(records)
    results = serving.score_rows(scorer, rows)
    expected = scorer.score(serving.records_frame(rows, scorer.features))
    assert [r["account_id"] for r in results] == [r["account_id"] for r in records]
    np.testing.assert_allclose(
        [r["propensity"] for r in results], expected["propensity"].to_numpy()
    )
    np.testing.assert_allclose([r["priority"] for r in results], expected["priority"].to_numpy())
    assert [r["tier"] for r in results] == expected["tier"].tolist()
    first = results[0]
    for key in serving.ScoredAccount.model_fields:
        if key not in ("model_name", "model_version"):
            assert key in first
    assert set(first["reasons"]) == {"up", "down"}
    assert first["days_to_close_p10"] <= first["days_to_close_p50"] <= first["days_to_close_p90"]
    json.dumps(results, allow_nan=False)


def test_holdout_values_are_unchanged_by_the_contract(trained, scorer, schema):
    """Validation must not change what the model sees: same scores as the raw holdout rows."""
    records = raw_records(trained, 20)
    via_service = serving.score_rows(scorer, schema.validate_batch(records))
    direct = scorer.score(trained.holdout.head(20), with_reasons=False)
    np.testing.assert_allclose(
        [r["propensity"] for r in via_service], direct["propensity"].to_numpy(), rtol=1e-12
    )


class _FailsOn:
    """A scorer that fails on any batch holding account 'BAD' (a model bug, not bad input)."""

    def __init__(self, scorer):
        self._scorer = scorer

    def __getattr__(self, name):
        return getattr(self._scorer, name)

    def score(self, frame, **kwargs):
        if (frame["account_id"] == "BAD").any():
            raise ValueError("boom")
        return self._scorer.score(frame, **kwargs)


def test_a_failing_record_fails_alone(trained, scorer, schema):
    records = raw_records(trained, 3)
    records[1]["account_id"] = "BAD"
    rows = schema.validate_batch(records)
    results = serving.score_rows(_FailsOn(scorer), rows)
    assert serving.ERROR_KEY in results[1] and "boom" in results[1][serving.ERROR_KEY]
    assert results[0]["account_id"] == records[0]["account_id"] and results[2]["propensity"] > 0
    model = serving.DeployedModel(
        "abm-account-scorer:x",
        "abm-account-scorer",
        "1",
        "champion",
        None,
        None,
        None,
        None,
        None,
        {},
        [f.to_dict() for f in scorer.features],
    )
    frontend = serving.Frontend(model, Settings())
    with pytest.raises(ServingError) as info:
        frontend.score_body(serving.ValidatedRequest(rows), results)
    assert info.value.status == 500 and info.value.index == 1


def test_explain_rows_are_full_contributions(trained, scorer, schema):
    rows = schema.validate_batch(raw_records(trained, 4))
    explained = serving.explain_rows(scorer, rows)
    scored = serving.score_rows(scorer, rows)
    for e, s in zip(explained, scored):
        assert set(e["contributions"]) == set(scorer.feature_names)
        assert e["raw_log_odds"] == pytest.approx(
            e["base_value"] + sum(e["contributions"].values())
        )
        assert e["propensity"] == pytest.approx(s["propensity"])
        assert e["account_id"] == s["account_id"]
    assert "uncalibrated" in serving.EXPLAINS and "log-odds" in serving.EXPLAINS


def test_rank_results():
    results = [
        {"account_id": str(i), "priority": p, "propensity": 1 - p / 10, "expected_value": 1.0}
        for i, p in enumerate([3.0, 9.0, 3.0, 1.0])
    ]
    ranked = serving.rank_results(results)
    assert [r["account_id"] for r in ranked] == ["1", "0", "2", "3"]  # ties keep input order
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4]
    assert [
        r["account_id"] for r in serving.rank_results(results, sort_by="propensity", top=2)
    ] == ["3", "0"]
    with pytest.raises(ServingError):
        serving.rank_results(results, sort_by="score")


# -- access ---------------------------------------------------------------------------------


def test_bearer_token_check():
    auth = serving.BearerAuthMiddleware(app=None, token="s3cret")
    assert auth.enabled
    assert auth.authorized(b"Bearer s3cret") and auth.authorized(b"bearer s3cret")
    for header in (
        None,
        b"",
        b"s3cret",
        b"Bearer s3cre",
        b"Bearer s3cret2",
        b"Basic s3cret",
        b"Bearer ",
    ):
        assert not auth.authorized(header)
    assert serving.BearerAuthMiddleware(app=None, token="").authorized(None)


def test_openapi_schema_conversion():
    converted = serving.openapi_schema(serving.RankResponse.model_json_schema())
    text = json.dumps(converted)
    assert "$ref" not in text and "$defs" not in text and '"type": "null"' not in text
    assert converted["properties"]["results"]["items"]["properties"]["reasons"]["nullable"] is True
    assert (
        converted["properties"]["results"]["items"]["properties"]["reasons"]["properties"]["up"][
            "type"
        ]
        == "array"
    )


# -- deployment and the service classes (real MLflow store, real BentoML store) ------------------


@pytest.mark.slow
def test_deploy_records_lineage(deployment, trained):
    import bentoml

    model = bentoml.models.get(deployment["tag"])
    labels, meta = model.info.labels, model.info.metadata
    assert (
        labels["mlflow_model"] == cfg.REGISTERED_MODEL_NAME
        and labels["mlflow_version"] == deployment["version"]
    )
    assert labels["alias"] == "champion" and labels["mlflow_run_id"]
    assert meta["trained_at"] == trained.scorer.metadata["trained_at"]
    assert meta["metrics"]["roc_auc"]["value"] == pytest.approx(
        trained.propensity["abm-ml"]["roc_auc"].value
    )
    assert [f["name"] for f in meta["features"]] == trained.scorer.feature_names
    assert list(Path(model.path).rglob("scorer.joblib"))

    info = serving.DeployedModel.from_bento(model)
    assert (info.version, info.alias, info.calibration) == (
        deployment["version"],
        "champion",
        trained.scorer.metadata["calibration"],
    )
    # Same version and alias: reused; force: a new import.
    assert str(serving.deploy("champion")) == deployment["tag"]
    forced = serving.deploy("champion", force=True)
    assert str(forced) != deployment["tag"]
    assert str(serving.deploy("champion")) in (deployment["tag"], str(forced))
    bentoml.models.delete(forced)
    with pytest.raises(serving.AbmInputError, match="alias"):
        serving.deploy("no-such-alias")


@pytest.mark.slow
def test_service_classes_use_the_deployed_model(deployment, trained):
    import bentoml

    svc = serving.import_service()
    # The model is declared at class scope, so a built Bento carries it.
    for service in (svc.AbmScoringService, svc.AccountScorerRunner):
        assert isinstance(service.inner.__dict__["bento_model"], bentoml.models.BentoModel)
        assert [str(m.tag) for m in service.models] == [deployment["tag"]]
    assert svc.AccountScorerRunner.apis["score_records"].batchable
    assert svc.AccountScorerRunner.apis["explain_records"].batchable

    runner = svc.AccountScorerRunner()
    assert runner.__is_ready__()
    rows = RecordSchema(trained.scorer.features).validate_batch(raw_records(trained, 4))
    via_runner = runner.score_records(rows)
    assert via_runner == serving.score_rows(runner.scorer, rows)
    np.testing.assert_allclose(
        [r["propensity"] for r in via_runner],
        [r["propensity"] for r in serving.score_rows(trained.scorer, rows)],
        rtol=1e-12,
    )
    assert len(runner.explain_records(rows)) == 4


# -- the internal runner connection -------------------------------------------------------------


def test_call_runner_retries_a_dropped_connection_only():
    import asyncio

    import aiohttp

    calls = []

    async def flaky(records):
        calls.append(len(records))
        if len(calls) < 3:
            raise aiohttp.ServerDisconnectedError()
        return [{"ok": True}] * len(records)

    assert asyncio.run(serving.call_runner(flaky, [{"a": 1}])) == [{"ok": True}]
    assert calls == [1, 1, 1]

    async def broken(records):
        raise ValueError("a model error is not retried")

    with pytest.raises(ValueError):
        asyncio.run(serving.call_runner(broken, []))

    async def always_dropped(records):
        raise RuntimeError("Session is closed")

    with pytest.raises(RuntimeError):
        asyncio.run(serving.call_runner(always_dropped, [], attempts=2))


def test_keep_runner_session():
    class Manager:
        max_requests, max_age = 100, 300.0

    class Client:
        def __init__(self):
            self._session_manager = Manager()

    class Proxy:
        def __init__(self):
            self._async = Client()

    proxy = Proxy()
    assert serving.keep_runner_session(proxy)
    assert proxy._async._session_manager.max_requests > 10**9
    assert serving.keep_runner_session(object()) is False
