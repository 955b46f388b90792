"""The service's logic on the small real model of ``trained``: scorer calls, ranking, response
bodies, access and the link to the runner (no BentoML process, no store)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from abm_ml.errors import AbmInputError
from abm_ml.service import contract, handlers, responses
from abm_ml.service.auth import BearerAuthMiddleware
from abm_ml.service.contract import ServingError, ValidatedRequest
from abm_ml.service.deploy import DeployedModel
from abm_ml.service.settings import ServiceConfig, Settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# -- calling the scorer ---------------------------------------------------------------------


def test_score_rows_is_the_scorers_output(trained, scorer, schema, make_records):
    records = make_records(6)
    records.append({"account_id": "ACC-NEW", "industry": "never seen", "employees": None})
    rows = schema.validate_batch(records)
    results = handlers.score_rows(scorer, rows)
    expected = scorer.score(contract.records_frame(rows, scorer.features))
    assert [r["account_id"] for r in results] == [r["account_id"] for r in records]
    np.testing.assert_allclose(
        [r["propensity"] for r in results], expected["propensity"].to_numpy()
    )
    np.testing.assert_allclose([r["priority"] for r in results], expected["priority"].to_numpy())
    assert [r["tier"] for r in results] == expected["tier"].tolist()
    first = results[0]
    for key in responses.ScoredAccount.model_fields:
        if key not in ("model_name", "model_version"):
            assert key in first
    assert set(first["reasons"]) == {"up", "down"}
    assert first["days_to_close_p10"] <= first["days_to_close_p50"] <= first["days_to_close_p90"]
    json.dumps(results, allow_nan=False)


def test_holdout_values_are_unchanged_by_the_contract(trained, scorer, schema, make_records):
    """Validation must not change what the model sees: same scores as the raw holdout rows."""
    records = make_records(20)
    via_service = handlers.score_rows(scorer, schema.validate_batch(records))
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


def test_a_failing_record_fails_alone(trained, scorer, schema, make_records):
    records = make_records(3)
    records[1]["account_id"] = "BAD"
    rows = schema.validate_batch(records)
    results = handlers.score_rows(_FailsOn(scorer), rows)
    assert handlers.ERROR_KEY in results[1] and "boom" in results[1][handlers.ERROR_KEY]
    assert results[0]["account_id"] == records[0]["account_id"] and results[2]["propensity"] > 0
    frontend = _frontend(scorer)
    with pytest.raises(ServingError) as info:
        frontend.score_body(ValidatedRequest(rows), results)
    assert info.value.status == 500 and info.value.index == 1


def test_explain_rows_are_full_contributions(trained, scorer, schema, make_records):
    rows = schema.validate_batch(make_records(4))
    explained = handlers.explain_rows(scorer, rows)
    scored = handlers.score_rows(scorer, rows)
    for e, s in zip(explained, scored):
        assert set(e["contributions"]) == set(scorer.feature_names)
        assert e["raw_log_odds"] == pytest.approx(
            e["base_value"] + sum(e["contributions"].values())
        )
        assert e["propensity"] == pytest.approx(s["propensity"])
        assert e["base_probability"] + sum(e["probability_points"].values()) == pytest.approx(
            e["propensity"], abs=1e-9
        )
        assert e["base_probability"] == pytest.approx(scorer.base_propensity)
        assert e["account_id"] == s["account_id"]
    assert "uncalibrated" in responses.EXPLAINS and "log-odds" in responses.EXPLAINS


def test_rank_results():
    results = [
        {"account_id": str(i), "priority": p, "propensity": 1 - p / 10, "expected_value": 1.0}
        for i, p in enumerate([3.0, 9.0, 3.0, 1.0])
    ]
    ranked = handlers.rank_results(results)
    assert [r["account_id"] for r in ranked] == ["1", "0", "2", "3"]  # ties keep input order
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4]
    assert [
        r["account_id"] for r in handlers.rank_results(results, sort_by="propensity", top=2)
    ] == ["3", "0"]
    with pytest.raises(AbmInputError, match="sort_by"):
        handlers.rank_results(results, sort_by="score")


# -- access ---------------------------------------------------------------------------------


def test_bearer_token_check():
    auth = BearerAuthMiddleware(app=None, token="s3cret")
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
    assert BearerAuthMiddleware(app=None, token="").authorized(None)


def test_per_request_extras_are_switches():
    """Access log and tracing off, metrics on, unless the operator's variables say otherwise."""
    default = ServiceConfig.from_env({})
    assert (default.metrics, default.access_log, default.tracing) == (True, False, False)
    # tracing off = every URL excluded from BentoML's OpenTelemetry middleware
    assert default.tracing_config() == {"excluded_urls": [".*"]}
    flipped = ServiceConfig.from_env(
        {"ABM_ML_METRICS": "0", "ABM_ML_ACCESS_LOG": "1", "ABM_ML_TRACING": "yes"}
    )
    assert (flipped.metrics, flipped.access_log, flipped.tracing) == (False, True, True)
    assert flipped.tracing_config() == {}  # BentoML's own tracing settings apply
    assert ServiceConfig.from_env({"ABM_ML_METRICS": " "}).metrics  # blank: the default


def test_openapi_schema_conversion():
    converted = responses.openapi_schema(responses.RankResponse.model_json_schema())
    text = json.dumps(converted)
    assert "$ref" not in text and "$defs" not in text and '"type": "null"' not in text
    assert converted["properties"]["results"]["items"]["properties"]["reasons"]["nullable"] is True
    assert (
        converted["properties"]["results"]["items"]["properties"]["reasons"]["properties"]["up"][
            "type"
        ]
        == "array"
    )


# -- responses follow the documented models ---------------------------------------------------


def _frontend(scorer, **settings) -> handlers.Frontend:
    model = DeployedModel(
        tag="abm-account-scorer:x",
        name="abm-account-scorer",
        version="1",
        alias="champion",
        run_id=None,
        trained_at="2026-01-01",
        dataset="tiny-crm",
        calibration="isotonic",
        deployed_at=None,
        metrics={"roc_auc": {"value": 0.8, "low": 0.7, "high": 0.9}},
        features=[f.to_dict() for f in scorer.features],
    )
    return handlers.Frontend(model, Settings(**settings))


def test_bodies_are_the_documented_models(scorer, schema, make_records):
    """What the scorer returns is exactly what ScoredAccount documents: nothing dropped or added."""
    frontend = _frontend(scorer)
    request = ValidatedRequest(schema.validate_batch(make_records(5)))
    rows = handlers.score_rows(scorer, request.records)
    documented = set(responses.ScoredAccount.model_fields) - {"model_name", "model_version"}
    assert set(rows[0]) == documented
    sent = json.loads(responses.dump(frontend.score_body(request, rows)))
    assert sent["results"][0]["propensity"] == rows[0]["propensity"]
    responses.ScoreResponse.model_validate(sent)
    ranked = json.loads(responses.dump(frontend.rank_body(request, rows)))
    assert [r["rank"] for r in ranked["results"]] == [1, 2, 3, 4, 5]
    responses.RankResponse.model_validate(ranked)
    explained = handlers.explain_rows(scorer, request.records)
    responses.ExplainResponse.model_validate(
        json.loads(responses.dump(frontend.explain_body(request, explained)))
    )
    meta = json.loads(responses.dump(frontend.metadata()))
    assert meta["features"][0] == {
        k: scorer.features[0].to_dict()[k] for k in ("name", "type", "description")
    }
    # The models refuse what they do not document, so validating an answer catches drift.
    with pytest.raises(ValidationError, match="undocumented"):
        responses.ScoreResponse.model_validate({**sent, "undocumented": 1})
    with pytest.raises(ValidationError, match="undocumented"):
        responses.ScoredAccount.model_validate({**sent["results"][0], "undocumented": 1})
