"""The account page's waterfall: every factor's push, re-explained from the run's stored inputs.

The expectations come from the ranked frame the real ranker produced (conftest): the steps the
page shows must start at the scorer's base and add up to the propensity stored with the run.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _client(ranked_runs, served):
    from starlette.testclient import TestClient

    from abm_ml.web import create_app

    return TestClient(create_app(history_url=ranked_runs["url"], token="", served=served))


def _top_account(ranked_runs) -> pd.Series:
    frame = ranked_runs["second"]
    return frame.sort_values("rank").iloc[0]


def test_stored_inputs_give_back_every_propensity(ranked_runs):
    """The JSON stored per account, explained again, is the ranking's own propensity."""
    second = ranked_runs["second"]
    records = pd.DataFrame([json.loads(text) for text in second["model_inputs"]])
    explained = ranked_runs["scorer"].explain(records)
    assert explained.propensity == pytest.approx(second["propensity"].to_numpy(), abs=1e-9)


def test_waterfall_adds_up_to_the_stored_propensity(ranked_runs):
    top = _top_account(ranked_runs)
    scorer = ranked_runs["scorer"]
    with _client(ranked_runs, lambda: (scorer, "2")) as client:
        html = client.get(f"/accounts/{top['account_id']}").text
    table = re.search(
        r'<table id="waterfall"[^>]*data-base="([^"]+)" data-propensity="([^"]+)"', html
    )
    assert table, "no waterfall on the page"
    base = float(table.group(1))
    points = [float(p) for p in re.findall(r'data-points="([^"]+)"', html)]
    assert len(points) == len(scorer.features)
    assert base == pytest.approx(scorer.base_propensity or base)
    assert base + sum(points) == pytest.approx(float(top["propensity"]), abs=1e-9)
    assert float(table.group(2)) == pytest.approx(float(top["propensity"]), abs=1e-9)
    assert "waterfall-why" not in html


def test_another_served_version_shows_the_stored_factors_and_why(ranked_runs):
    top = _top_account(ranked_runs)
    with _client(ranked_runs, lambda: (ranked_runs["scorer"], "1")) as client:
        html = client.get(f"/accounts/{top['account_id']}").text
    assert 'id="waterfall"' not in html
    assert 'id="factors"' in html
    assert "the served model is v1, the run was ranked by v2" in html


def test_outside_the_service_shows_the_stored_factors_and_why(pages, ranked_runs):
    top = _top_account(ranked_runs)
    html = pages.get(f"/accounts/{top['account_id']}").text
    assert 'id="waterfall"' not in html
    assert "no model is served in this process" in html


def test_an_older_details_table_gets_the_inputs_column(ranked_runs, tmp_path):
    """A history made before the inputs were kept is extended on the next write, not refused."""
    from abm_ml.reporting.history import DETAILS_TABLE, record_run

    url = f"sqlite:///{tmp_path / 'old.db'}"
    second = ranked_runs["second"]
    record_run(second.drop(columns=["model_inputs"]), url)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"ALTER TABLE {DETAILS_TABLE} DROP COLUMN model_inputs")
    record_run(second, url)
    with engine.connect() as connection:
        stored = connection.exec_driver_sql(
            f"SELECT account_id, model_inputs FROM {DETAILS_TABLE}"
        ).all()
    engine.dispose()
    by_id = dict(zip(second["account_id"].astype(str), second["model_inputs"]))
    assert len(stored) == len(second)
    assert all(text == by_id[account] for account, text in stored)


@pytest.mark.slow
def test_cli_rank_stores_the_inputs_the_model_saw(trained, tmp_path, monkeypatch):
    """`abm-ml rank` keeps each account's inputs; explained again they give its propensity."""
    from typer.testing import CliRunner

    from abm_ml.cli import app
    from abm_ml.registry import promotion, tracking
    from abm_ml.reporting.history import DETAILS_TABLE

    monkeypatch.setenv("ABM_ML_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("ABM_ML_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    tracking.configure()
    tracking.log_training(trained)
    promotion.promote()
    accounts = trained.holdout.drop(
        columns=["outcome", "closed_at", "days_to_close", "created_at", "row_id"]
    ).drop_duplicates("account_id")
    source = tmp_path / "accounts.csv"
    accounts.head(60).to_csv(source, index=False)
    out = tmp_path / "ranked.parquet"
    url = f"sqlite:///{tmp_path / 'history.db'}"
    result = CliRunner().invoke(
        app, ["rank", str(source), "--out", str(out), "--history-url", url, "--no-report"]
    )
    assert result.exit_code == 0, result.output
    ranked = pd.read_parquet(out).set_index("account_id")
    assert "model_inputs" not in ranked.columns  # the ranked file stays what sales ops read
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        stored = connection.exec_driver_sql(
            f"SELECT account_id, model_inputs FROM {DETAILS_TABLE}"
        ).all()
    engine.dispose()
    assert len(stored) == len(ranked)
    records = pd.DataFrame([json.loads(text) for _, text in stored])
    assert set(records.columns) == {f.name for f in trained.scorer.features}
    explained = trained.scorer.explain(records)
    expected = ranked.loc[[account for account, _ in stored], "propensity"].to_numpy()
    assert explained.propensity == pytest.approx(expected, abs=1e-9)


def test_account_page_shows_the_buying_committee_the_model_saw(pages, ranked_runs):
    """The committee features stored with the run, worded by features/columns.py's texts."""
    from abm_ml.features.columns import FEATURE_DESCRIPTIONS
    from abm_ml.web.committee import COMMITTEE_FEATURES

    second = ranked_runs["second"]
    inputs = [json.loads(text) for text in second["model_inputs"]]
    carried = [name for name in COMMITTEE_FEATURES if name in inputs[0]]
    assert carried, "the test model carries no committee feature"
    name = carried[0]
    spec = FEATURE_DESCRIPTIONS[name]
    seen = {}
    for account, values in zip(second["account_id"].astype(str), inputs):
        seen.setdefault(bool(values[name]), account)
    assert set(seen) == {True, False}, "both values should occur among the accounts"
    for value, account in seen.items():
        html = pages.get(f"/accounts/{account}").text
        section = html.split('<table id="committee"')[1].split("</table>")[0]
        row = section.split(f'data-feature="{name}"')[1].split("</tr>")[0]
        expected = spec["true_text"] if value else spec["false_text"]
        assert f"<td>{expected}</td>" in row


def test_committee_features_come_from_the_feature_builder():
    from abm_ml.data.roles import ROLES
    from abm_ml.features.columns import FEATURE_COLUMNS
    from abm_ml.web.committee import COMMITTEE_FEATURES, committee_coverage

    assert set(COMMITTEE_FEATURES) <= set(FEATURE_COLUMNS)
    assert "committee_roles_engaged_90d" in COMMITTEE_FEATURES
    assert all(any(r in n for r in ROLES) or n.startswith("committee_") for n in COMMITTEE_FEATURES)
    rows = committee_coverage(json.dumps({"committee_roles_engaged_90d": 4.0, "web_visits_30d": 3}))
    assert [r["text"] for r in rows] == [
        "4 of 6 buying-committee roles engaged in the last 90 days"
    ]
    assert [r["shown"] for r in rows] == ["4"]
    flags = committee_coverage(json.dumps({"has_economic_buyer": 0.0, "has_champion": None}))
    assert [(r["shown"], r["engaged"]) for r in flags] == [("no", False), ("missing", None)]
    assert committee_coverage(None) == [] and committee_coverage("not json") == []
