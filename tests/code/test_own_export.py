"""A user's own CRM export, end to end, with no file surgery: the spec is the one boundary.

The exports are built here with the odd column names, placeholders and gaps real CRMs have
("Opportunity Number", "Account Name", "Deal Value ($)", "Select", "-", no dates, no amount).
Each goes validate -> train -> rank -> explain as it is, and the scoring side must read it
exactly as training did.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from abm_ml.data.records import read_records, require_id_column
from abm_ml.data.spec import load_spec
from abm_ml.data.validate import load_dataset
from abm_ml.errors import AbmInputError
from abm_ml.modeling.ranking import rank_accounts
from abm_ml.modeling.train import train_models
from abm_ml.testing import make_crm_export, small_train_config

RENAMES = {
    "Opportunity ID": "Opportunity Number",
    "Account": "Account Name",
    "Amount": "Deal Value ($)",
}


def own_export(*, with_amount: bool = True, n: int = 1500) -> tuple[pd.DataFrame, dict]:
    """An export without dates, with odd names and placeholders, and its spec."""
    export = make_crm_export(n=n, seed=11).drop(columns=["Created Date", "Close Date"])
    export = export.rename(columns=RENAMES)
    export["Stage"] = export["Stage"].replace({"Open": "Closed Lost"})
    rng = np.random.default_rng(5)
    # Placeholders a CRM writes for "nobody picked a value".
    export.loc[rng.random(n) < 0.15, "Industry"] = "Select"
    export["Employees"] = export["Employees"].astype(object)
    export.loc[rng.random(n) < 0.05, "Employees"] = "-"
    export.loc[rng.random(n) < 0.05, "Account Name"] = ""
    if not with_amount:
        export = export.drop(columns=["Deal Value ($)"])
    spec = {
        "name": "own-export",
        "source": {"path": "export.csv"},
        "row_id": "Opportunity Number",
        "account_id": "Account Name",
        "label": {"column": "Stage", "won": ["Closed Won"], "lost": ["Closed Lost"]},
        "missing_values": ["Select"],
        "features": [
            {"column": "Industry", "type": "categorical", "template": "Industry: {value}"},
            {"column": "Employees", "type": "numeric"},
            {"column": "Web Visits 30d", "type": "numeric"},
            {"column": "Economic Buyer Engaged", "type": "boolean"},
            {"column": "Competitor In Place", "type": "boolean"},
        ],
    }
    if with_amount:
        spec["amount"] = "Deal Value ($)"
    return export, spec


def write_export(folder: Path, export: pd.DataFrame, spec: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    export.to_csv(folder / "export.csv", index=False)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder / "spec.yaml"


@pytest.fixture(scope="module")
def with_amount(tmp_path_factory: pytest.TempPathFactory):
    export, spec = own_export()
    spec_path = write_export(tmp_path_factory.mktemp("own"), export, spec)
    dataset = load_dataset(load_spec(spec_path))
    return spec_path, dataset, train_models(dataset, small_train_config())


@pytest.fixture(scope="module")
def without_amount(tmp_path_factory: pytest.TempPathFactory):
    export, spec = own_export(with_amount=False)
    spec_path = write_export(tmp_path_factory.mktemp("own-no-amount"), export, spec)
    dataset = load_dataset(load_spec(spec_path))
    return spec_path, dataset, train_models(dataset, small_train_config())


def test_a_raw_export_row_scores_exactly_as_in_training(with_amount):
    spec_path, dataset, result = with_amount
    scorer = result.scorer
    raw = read_records(spec_path.parent / "export.csv", scorer.input)
    from_file = scorer.score(raw, with_reasons=False).set_index(
        raw["Opportunity Number"].to_numpy()
    )
    from_training = scorer.score(dataset.frame, with_reasons=False)
    from_training.index = dataset.frame["row_id"].to_numpy()
    common = from_training.index
    assert len(common) == len(dataset.frame) > 1000
    np.testing.assert_array_equal(
        from_file.loc[common, "propensity"].to_numpy(), from_training["propensity"].to_numpy()
    )
    # The spec's account column is the account id; a blank account falls back to the row id.
    blank = raw["Account Name"] == ""
    assert blank.any()
    ids = from_file["account_id"].to_numpy()
    assert (ids[~blank.to_numpy()] == raw.loc[~blank, "Account Name"].to_numpy()).all()
    assert (ids[blank.to_numpy()] == raw.loc[blank, "Opportunity Number"].to_numpy()).all()


def test_amounts_are_read_per_row_and_no_days_are_invented(with_amount):
    spec_path, _, result = with_amount
    scorer = result.scorer
    raw = read_records(spec_path.parent / "export.csv", scorer.input).head(200)
    scored = scorer.score(raw, with_reasons=False)
    expected = raw["Deal Value ($)"].str.replace(",", "").astype(float).to_numpy()
    np.testing.assert_allclose(scored["amount"].to_numpy(), expected)
    assert scored["amount"].nunique() > 150
    np.testing.assert_allclose(scored["expected_value"], scored["propensity"] * expected)
    # No dates or duration in the spec: no days at all, and priority is the expected value.
    for column in ("days_to_close_p10", "days_to_close_p50", "days_to_close_p90"):
        assert scored[column].isna().all()
    np.testing.assert_allclose(scored["priority"], scored["expected_value"])
    assert scorer.basis()["days_to_close"] is None
    assert scorer.basis()["priority"].startswith("expected value (no days")


def test_placeholders_are_missing_at_ranking_and_in_explanations(with_amount):
    spec_path, _, result = with_amount
    scorer = result.scorer
    # The deals as a list to work: without the outcome column every row is ranked.
    raw = read_records(spec_path.parent / "export.csv", scorer.input).drop(columns=["Stage"])
    select = raw.index[raw["Industry"] == "Select"][:20]
    dash = raw.index[raw["Employees"] == "-"][:20]
    explained = scorer.explain(raw.loc[select.union(dash)])
    assert explained.values["industry"].isna().sum() >= len(select)
    assert explained.values["employees"].isna().sum() >= len(dash)
    ranked = rank_accounts(scorer, raw.loc[select], tiers=(2, 3, 4)).ranked
    words = " ".join(ranked["top_reasons"].astype(str)) + " ".join(ranked["risk"].astype(str))
    assert "Select" not in words
    # A dash in a number column is a missing value, not an unscorable row.
    assert rank_accounts(scorer, raw.loc[dash], tiers=(2, 3, 4)).meta["unscorable"] == 0


def test_without_amount_there_is_no_expected_value_and_priority_is_propensity(without_amount):
    spec_path, _, result = without_amount
    scorer = result.scorer
    raw = read_records(spec_path.parent / "export.csv", scorer.input)
    raw = raw.drop(columns=["Stage"]).drop_duplicates("Account Name")
    ranking = rank_accounts(scorer, raw.head(300), tiers=(5, 10, 20))
    ranked = ranking.ranked
    assert ranked["expected_value"].isna().all() and ranked["amount"].isna().all()
    np.testing.assert_allclose(ranked["priority"], ranked["propensity"])
    assert ranked["propensity"].is_monotonic_decreasing
    assert ranking.meta["expected_value"] is None
    assert ranking.meta["priority"].startswith("propensity")
    assert "no deal amount" in ranking.meta["amount_note"]


def test_canonical_names_still_work_and_old_models_still_score(with_amount):
    _, dataset, result = with_amount
    scorer = result.scorer
    canonical = dataset.frame.head(100)
    old = type(scorer)(**{**scorer.__dict__, "input_spec": None})
    del old.__dict__["input_spec"]  # as unpickled from a model registered before the spec
    assert old.input is None and old.prepare(canonical) is None
    np.testing.assert_allclose(
        old.score(canonical, with_reasons=False)["propensity"],
        scorer.score(canonical, with_reasons=False)["propensity"],
    )
    ranked = rank_accounts(old, canonical.drop(columns=["outcome"]), tiers=(5, 5, 5)).ranked
    assert len(ranked) > 0


def test_a_missing_id_column_names_the_spec_column(with_amount):
    spec_path, _, result = with_amount
    raw = read_records(spec_path.parent / "export.csv", result.scorer.input)
    no_ids = raw.drop(columns=["Account Name", "Opportunity Number"])
    with pytest.raises(AbmInputError, match="'Account Name' \\(the spec's `account_id`\\)"):
        require_id_column(no_ids, result.scorer.input, "export.csv")
    with pytest.raises(AbmInputError, match="'Account Name'"):
        rank_accounts(result.scorer, no_ids)


def test_a_velocity_model_that_loses_to_the_median_baseline_is_not_served(with_amount):
    import copy
    import dataclasses

    from abm_ml.modeling.bootstrap import Metric
    from abm_ml.modeling.evaluate import Evaluation
    from abm_ml.modeling.train import _serve_baseline_days, _velocity_beats_baseline

    _, dataset, result = with_amount
    scorer = copy.deepcopy(result.scorer)
    scorer.velocity, scorer.default_days = object(), 21.0  # a velocity model, and its baseline

    def evaluation(model_mae: float, baseline_mae: float) -> Evaluation:
        return Evaluation(
            propensity={},
            velocity={"mae_days": Metric.exact(model_mae)},
            velocity_baseline={"mae_days": Metric.exact(baseline_mae)},
            scored=pd.DataFrame({"days_to_close_p50": [5.0, 50.0]}),
            labels=np.array([1, 0]),
        )

    assert _velocity_beats_baseline(scorer, evaluation(9.0, 10.0))
    assert "velocity_not_used" not in scorer.metadata
    losing = evaluation(10.0, 10.0)
    assert not _velocity_beats_baseline(scorer, losing)
    served = _serve_baseline_days(scorer, dataclasses.replace(losing))
    assert scorer.velocity is None
    assert set(served.scored["days_to_close_p50"]) == {21.0}
    scored = scorer.score(dataset.frame.head(5), with_reasons=False)
    assert (scored["days_to_close_p50"] == 21.0).all()
    assert "baseline" in scorer.basis()["days_to_close"]
    assert "not better than the median-days baseline" in scorer.basis()["days_to_close"]
    np.testing.assert_allclose(scored["priority"], scored["expected_value"] / 21.0)


def test_service_records_with_placeholders_score_as_missing(with_amount):
    from abm_ml.service.handlers import score_rows

    _, dataset, result = with_amount
    scorer = result.scorer
    row = dataset.frame.iloc[0]
    record = {
        "account_id": "ACME",
        "amount": 1000.0,
        **{f.name: None for f in scorer.features},
        "industry": "Select",
        "web_visits_30d": float(row["web_visits_30d"]),
    }
    missing = {**record, "industry": None}
    placeholder, blank = score_rows(scorer, [record, missing])
    assert placeholder["propensity"] == blank["propensity"]
    assert placeholder["days_to_close_p50"] is None and placeholder["amount"] == 1000.0
    texts = [r["text"] for side in ("up", "down") for r in placeholder["reasons"][side]]
    assert not any("Select" in t for t in texts)


@pytest.mark.slow
@pytest.mark.parametrize("amount", [True, False], ids=["amount", "no-amount"])
def test_cli_validate_train_rank_explain_on_the_raw_export(
    amount: bool, mlflow_store: Path, tmp_path: Path
):
    """The whole user path on the export as the CRM wrote it: no renaming, no awk."""
    import os
    import subprocess
    import sys

    from typer.testing import CliRunner

    from abm_ml.cli import app

    runner = CliRunner()
    export, spec = own_export(with_amount=amount, n=900)
    spec_path = write_export(tmp_path / "crm", export, spec)
    scoring = tmp_path / "to_score.csv"
    export.drop(columns=["Stage"]).head(60).to_csv(scoring, index=False)

    for args in (["validate", str(spec_path)], ["train", str(spec_path), "--n-boot", "20"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["promote"]).exit_code == 0
    out = tmp_path / "ranked.csv"
    result = runner.invoke(
        app, ["rank", str(scoring), "--tiers", "5,10,20", "--out", str(out), "--no-history"]
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # rich wraps lines at the terminal width
    assert "Days to close: none" in said
    ranked = pd.read_csv(out)
    assert ranked["days_to_close_p50"].isna().all()
    if amount:
        assert re.search(r"(\d+) of \1 amounts from column 'Deal Value \(\$\)'", said), said
        by_account = ranked.set_index("account_id")["amount"]
        first = export.iloc[0]
        assert by_account[first["Account Name"]] == pytest.approx(
            float(first["Deal Value ($)"].replace(",", ""))
        )
    else:
        assert ranked["expected_value"].isna().all()
        assert "Priority = propensity" in said
        assert ranked["propensity"].is_monotonic_decreasing
    assert "Select" not in " ".join(ranked["top_reasons"].fillna("") + ranked["risk"].fillna(""))

    account = export["Account Name"].iloc[2]
    result = runner.invoke(app, ["explain", account, "--accounts", str(scoring)])
    assert result.exit_code == 0, result.output
    assert "Propensity" in result.output and "Select" not in result.output

    no_ids = tmp_path / "no_ids.csv"
    export.drop(columns=["Account Name", "Opportunity Number"]).head(5).to_csv(no_ids, index=False)
    failed = subprocess.run(
        [sys.executable, "-m", "abm_ml.cli", "rank", str(no_ids), "--no-history", "--no-report"],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert failed.returncode == 2, failed.stderr
    assert "'Account Name' (the spec's `account_id`)" in failed.stderr
    assert "Traceback" not in failed.stderr

    # The file's ids are checked with the input spec the version carries as a tag, before the
    # model is downloaded: a loader that refuses to run proves it is not reached.
    import abm_ml.cli.accounts as accounts_cli

    def no_model_load(ref: str):
        raise AssertionError("the model was loaded before the id column was checked")

    original = accounts_cli.load_model
    accounts_cli.load_model = no_model_load
    try:
        early = runner.invoke(app, ["rank", str(no_ids), "--no-history", "--no-report"])
    finally:
        accounts_cli.load_model = original
    # In process the error reaches the runner as raised (main() turns it into exit 2).
    assert isinstance(early.exception, AbmInputError), early.exception
    assert "'Account Name' (the spec's `account_id`)" in str(early.exception)


def test_the_model_card_says_there_are_no_days_and_what_priority_is(with_amount, without_amount):
    from abm_ml.registry.card import model_card

    card = model_card(with_amount[2])
    assert "no dates or duration, so no days to close" in card
    assert "`priority` = expected value (no days to close" in card
    assert "`priority` = propensity (the training data had no deal amount)" in model_card(
        without_amount[2]
    )
