"""Sales-ops workflow through the CLI: rank with tiers and filters, unscorable accounts, history, explain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from abm_ml.cli import app
from abm_ml.errors import AbmInputError
from abm_ml.modeling.ranking import abm_tiers, parse_tiers, rank_accounts
from abm_ml.registry import promotion as registry
from abm_ml.registry import tracking

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def champion(trained, tmp_path_factory: pytest.TempPathFactory):
    """One registered champion shared by this module's tests (logging a model takes seconds)."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ABM_ML_MODELS_DIR", str(folder / "models"))
        patch.setenv("ABM_ML_REPORTS_DIR", str(folder / "reports"))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        tracking.configure()
        tracking.log_training(trained)
        registry.promote()
        yield trained


@pytest.fixture()
def accounts_csv(trained, tmp_path: Path) -> Path:
    accounts = trained.holdout.drop(
        columns=["outcome", "closed_at", "days_to_close", "created_at", "row_id"]
    ).drop_duplicates("account_id")
    accounts = accounts.head(120).copy()
    rng = np.random.default_rng(0)
    accounts["region"] = rng.choice(["EMEA", "AMER"], len(accounts))
    accounts["segment"] = rng.choice(["enterprise", "smb"], len(accounts))
    accounts["owner"] = rng.choice(["ana", "ben"], len(accounts))
    extra = pd.DataFrame(
        [
            {"account_id": "", "industry": "software"},  # no id
            {"account_id": accounts["account_id"].iloc[0], "industry": "retail"},  # repeated id
            {"account_id": "BAD-NUMBER", "industry": "software", "web_visits_30d": "lots"},
            {"account_id": "EMPTY"},
        ]
    )
    path = tmp_path / "accounts.csv"
    pd.concat([accounts, extra], ignore_index=True).to_csv(path, index=False)
    return path


def test_tiers_are_capacities_in_order():
    assert parse_tiers("2,3,4") == (2, 3, 4)
    assert (
        list(abm_tiers(11, (2, 3, 4)))
        == ["1:1"] * 2 + ["1:few"] * 3 + ["1:many"] * 4 + ["nurture"] * 2
    )
    with pytest.raises(Exception, match="tiers"):
        parse_tiers("ten")


def test_rank_sorts_tiers_and_lists_unscorable_accounts(trained, accounts_csv: Path):
    accounts = pd.read_csv(accounts_csv)
    result = rank_accounts(trained.scorer, accounts, tiers=(5, 10, 20), as_of="2026-01-05")
    ranked = result.ranked
    assert ranked["priority"].is_monotonic_decreasing
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert (ranked["abm_tier"].iloc[:5] == "1:1").all() and (
        ranked["abm_tier"].iloc[35:] == "nurture"
    ).all()
    reasons = dict(zip(result.unscorable["account_id"].fillna(""), result.unscorable["reason"]))
    assert reasons[""] == "missing account_id"
    assert reasons["BAD-NUMBER"] == "unparseable number in 'web_visits_30d': lots"
    assert reasons["EMPTY"] == "no feature values at all"
    assert any(r.startswith("repeated account_id") for r in reasons.values())
    # Nothing dropped: every row is ranked or listed with its reason.
    assert len(ranked) + len(result.unscorable) == len(accounts)
    # Every account gets reasons; a low scorer may have only factors lowering it.
    assert (ranked["top_reasons"].str.len().gt(0) | ranked["risk"].str.len().gt(0)).all()
    assert ranked["top_reasons"].head(10).str.len().gt(0).all()
    assert set(ranked["as_of"]) == {"2026-01-05"}


@pytest.mark.parametrize("sort_by", ["priority", "propensity", "expected_value"])
def test_a_file_of_only_unscorable_accounts_ranks_none_and_lists_all(
    trained, accounts_csv: Path, sort_by: str
):
    accounts = pd.read_csv(accounts_csv)
    bad = accounts[accounts["account_id"].isin(["BAD-NUMBER", "EMPTY"])]
    result = rank_accounts(trained.scorer, bad, sort_by=sort_by)
    assert result.ranked.empty
    assert len(result.unscorable) == len(bad) == 2


def test_filters_keep_only_the_asked_segment(trained, accounts_csv: Path):
    accounts = pd.read_csv(accounts_csv)
    result = rank_accounts(trained.scorer, accounts, filters={"region": ["EMEA"], "owner": ["ana"]})
    assert set(result.ranked["region"]) == {"EMEA"} and set(result.ranked["owner"]) == {"ana"}
    with pytest.raises(Exception, match="no such column"):
        rank_accounts(trained.scorer, accounts.drop(columns=["owner"]), filters={"owner": ["ana"]})


def test_cli_rank_twice_records_history_and_movement(champion, accounts_csv: Path, tmp_path: Path):
    history = f"sqlite:///{tmp_path / 'history.db'}"
    first_out, second_out = tmp_path / "week1.csv", tmp_path / "week2.parquet"
    result = runner.invoke(
        app,
        [
            "rank",
            str(accounts_csv),
            "--as-of",
            "2026-01-05",
            "--tiers",
            "5,10,20",
            "--out",
            str(first_out),
            "--history-url",
            history,
        ],
    )
    assert result.exit_code == 0, result.output
    # A week later the engagement of one account jumps.
    accounts = pd.read_csv(accounts_csv)
    target = accounts["account_id"].iloc[5]
    accounts.loc[5, ["web_visits_30d", "has_economic_buyer", "uses_competitor"]] = [40, 1, 0]
    accounts.to_csv(accounts_csv, index=False)
    result = runner.invoke(
        app,
        [
            "rank",
            str(accounts_csv),
            "--as-of",
            "2026-01-12",
            "--tiers",
            "5,10,20",
            "--out",
            str(second_out),
            "--history-url",
            history,
        ],
    )
    assert result.exit_code == 0, result.output
    week1, week2 = pd.read_csv(first_out, dtype={"account_id": str}), pd.read_parquet(second_out)
    assert set(week1["movement"]) == {"new"}
    moved = week2.set_index("account_id").loc[target, "movement"]
    assert "score +" in moved
    assert (tmp_path / "week2-unscorable.csv").is_file()
    assert (tmp_path / "week2.html").is_file()
    for column in (
        "rank",
        "abm_tier",
        "propensity",
        "score",
        "days_to_close_p50",
        "expected_value",
        "priority",
        "top_reasons",
        "model_version",
        "as_of",
    ):
        assert column in week2.columns


def test_cli_explain_prints_a_breakdown_and_a_waterfall(
    champion, accounts_csv: Path, tmp_path: Path
):
    account = pd.read_csv(accounts_csv)["account_id"].iloc[3]
    png = tmp_path / "why.png"
    result = runner.invoke(
        app, ["explain", str(account), "--accounts", str(accounts_csv), "--png", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert "Base rate" in result.output and "Propensity" in result.output and "pts" in result.output
    # The base is the average training account, as stored in the registered scorer.
    assert f"Base rate: {champion.scorer.base_propensity:.1%}" in result.output
    assert png.stat().st_size > 1000


def test_cli_reports_bad_input_in_one_line(champion, accounts_csv: Path, tmp_path: Path):
    env = {**os.environ, "ABM_ML_HISTORY_URL": f"sqlite:///{tmp_path / 'h.db'}"}
    bad = subprocess.run(
        [sys.executable, "-m", "abm_ml.cli", "rank", str(accounts_csv), "--tiers", "a,b"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip().count("\n") == 0
        and "--tiers" in bad.stderr
        and "Traceback" not in bad.stderr
    )
    missing = subprocess.run(
        [sys.executable, "-m", "abm_ml.cli", "explain", "NOPE", "--accounts", str(accounts_csv)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_cli_evaluate_reports_the_training_metrics_on_the_holdout(champion, crm_dir: Path):
    result = runner.invoke(app, ["evaluate", str(crm_dir / "spec.yaml"), "--n-boot", "20"])
    assert result.exit_code == 0, result.output
    assert "training run's holdout" in result.output
    roc_auc = champion.propensity["abm-ml"]["roc_auc"].value
    row = next(line for line in result.output.splitlines() if "roc_auc" in line)
    assert f"{roc_auc:.3f}" in row
    assert "Deal velocity" in result.output
    late = runner.invoke(
        app, ["evaluate", str(crm_dir / "spec.yaml"), "--since", "2030-01-01", "--n-boot", "0"]
    )
    assert isinstance(late.exception, AbmInputError)
    assert "no won and lost deals to evaluate on (closed deals created since 2030" in str(
        late.exception
    )


def test_cli_rank_keeps_the_ranking_when_the_history_fails(
    champion, accounts_csv: Path, tmp_path: Path
):
    """A history that cannot be written costs the movement column, not the ranked file."""
    import sqlite3

    broken = tmp_path / "history.db"
    with sqlite3.connect(broken) as connection:  # a table of that name that is no score history
        connection.execute("CREATE TABLE abm_score_history (note TEXT)")
    out = tmp_path / "ranked.csv"
    result = runner.invoke(
        app,
        ["rank", str(accounts_csv), "--out", str(out), "--history-url", f"sqlite:///{broken}"],
    )
    assert result.exit_code == 0, result.output
    assert "score history not updated" in result.output and str(out) in result.output
    ranked = pd.read_csv(out)
    assert len(ranked) > 100 and "movement" not in ranked.columns
    assert out.with_name("ranked-unscorable.csv").is_file()


def test_cli_explain_refuses_an_account_whose_row_is_cut(
    champion, accounts_csv: Path, tmp_path: Path
):
    lines = accounts_csv.read_text().splitlines()
    # The second account: the first is repeated further down, and its other row would be scored.
    account = lines[2].split(",")[0]
    cut = tmp_path / "cut.csv"
    short = ",".join(lines[2].split(",")[:2])
    cut.write_text("\n".join([*lines[:2], short, *lines[3:]]) + "\n")
    result = runner.invoke(app, ["explain", account, "--accounts", str(cut)])
    assert result.exit_code != 0
    assert isinstance(result.exception, AbmInputError)
    assert "line 3" in str(result.exception) and "fewer fields" in str(result.exception)
    # The repeated account whose first row is cut: its other, whole row is explained.
    first = lines[1].split(",")[0]
    cut.write_text("\n".join([lines[0], ",".join(lines[1].split(",")[:2]), *lines[2:]]) + "\n")
    assert runner.invoke(app, ["explain", first, "--accounts", str(cut)]).exit_code == 0


def test_cli_rank_in_chunks_writes_what_one_chunk_writes(
    champion, accounts_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``rank`` reads, scores and writes a large list in chunks: the files do not change."""
    from abm_ml.modeling import rank_stream

    parquet = tmp_path / "accounts.parquet"
    pd.read_csv(accounts_csv, dtype=str, keep_default_na=False).to_parquet(parquet)
    outputs = {}
    for rows in (10_000, 25):
        monkeypatch.setattr(rank_stream, "READ_ROWS", rows)
        out = tmp_path / f"ranked-{rows}.csv"
        result = runner.invoke(
            app,
            ["rank", str(parquet), "--as-of", "2026-01-05", "--tiers", "5,10,20", "--out", str(out)]
            + ["--history-url", f"sqlite:///{tmp_path / f'history-{rows}.db'}"],
        )
        assert result.exit_code == 0, result.output
        outputs[rows] = (
            pd.read_csv(out, dtype={"account_id": str}),
            pd.read_csv(out.with_name(out.stem + "-unscorable.csv"), dtype=str),
        )
    (whole, whole_bad), (chunked, chunked_bad) = outputs[10_000], outputs[25]
    pd.testing.assert_frame_equal(chunked, whole)
    pd.testing.assert_frame_equal(chunked_bad, whole_bad)
    assert len(whole) > 100 and set(whole["movement"]) == {"new"}
    # The repeated id is found across chunks (its first occurrence is in the first chunk).
    assert "repeated account_id (first occurrence scored)" in set(chunked_bad["reason"])
    assert (tmp_path / "ranked-25.html").is_file()


def test_cli_explain_on_a_whole_export_explains_the_deal_rank_scored(
    champion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The CRM's whole export as the list: rank scores an account's first open deal, explain
    explains that deal (not the account's last, closed one), and an account with only closed
    deals is one clear error."""
    from abm_ml.testing import make_crm_export

    monkeypatch.setenv("ABM_ML_HISTORY_URL", f"sqlite:///{tmp_path / 'h.db'}")
    export = make_crm_export(12, seed=41)
    export["Account"] = ["MIX"] * 3 + ["DONE"] * 2 + [f"A{i}" for i in range(7)]
    export["Stage"] = ["Closed Won", "Open", "Open", "Closed Lost", "Closed Won"] + ["Open"] * 7
    export["Opportunity ID"] = [f"D{i}" for i in range(12)]
    export.loc[2, "Web Visits 30d"] = 40  # the account's later open deal scores differently
    path = tmp_path / "all-deals.csv"
    export.to_csv(path, index=False)
    out = tmp_path / "ranked.csv"
    ranked = runner.invoke(app, ["rank", str(path), "--out", str(out)])
    assert ranked.exit_code == 0, ranked.output
    propensity = pd.read_csv(out).set_index("account_id").loc["MIX", "propensity"]
    explained = runner.invoke(app, ["explain", "MIX", "--accounts", str(path)])
    assert explained.exit_code == 0, explained.output
    assert f"Propensity: {propensity:.1%}" in explained.output
    done = runner.invoke(app, ["explain", "DONE", "--accounts", str(path)])
    assert isinstance(done.exception, AbmInputError)
    assert "none of its 2 rows can be scored" in str(done.exception)
    assert "a closed deal ('Stage' is Closed Lost)" in str(done.exception)
    # A closed deal asked for by its own id is explained.
    assert runner.invoke(app, ["explain", "D3", "--accounts", str(path)]).exit_code == 0


def test_cli_rank_with_nothing_to_rank_is_one_clear_error(
    champion, accounts_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Every row closed (or filtered out): exit 2 with the reasons, not an internal error."""
    from abm_ml.testing import make_crm_export

    monkeypatch.setenv("ABM_ML_HISTORY_URL", f"sqlite:///{tmp_path / 'h.db'}")
    export = make_crm_export(30, seed=43)
    export["Stage"] = ["Closed Won", "Closed Lost"] * 15
    path = tmp_path / "closed.csv"
    export.to_csv(path, index=False)
    out = tmp_path / "ranked.csv"
    result = runner.invoke(app, ["rank", str(path), "--out", str(out)])
    assert isinstance(result.exception, AbmInputError), result.output
    message = str(result.exception)
    assert "none of the 30 rows can be scored" in message
    assert "15 x a closed deal ('Stage' is Closed Won)" in message
    assert len(pd.read_csv(out.with_name("ranked-unscorable.csv"))) == 30
    filtered = runner.invoke(app, ["rank", str(accounts_csv), "--region", "NOWHERE"])
    assert isinstance(filtered.exception, AbmInputError)
    assert "none left after the filters" in str(filtered.exception)
