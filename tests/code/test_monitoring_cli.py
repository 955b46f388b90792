"""Monitoring through the CLI: `monitor` (exit code 3 on drift), `rank --monitor`, `backtest`, `retrain`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from abm_ml.cli import app
from abm_ml.monitoring.profile import ARTIFACT_PATH, METADATA_KEY
from abm_ml.registry import promotion as registry
from abm_ml.registry import tracking

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def store(trained, tmp_path_factory: pytest.TempPathFactory):
    """A private MLflow store and reports folder with the small model registered as champion."""
    folder = tmp_path_factory.mktemp("monitor-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ABM_ML_MODELS_DIR", str(folder / "models"))
        patch.setenv("ABM_ML_REPORTS_DIR", str(folder / "reports"))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        tracking.configure()
        info = tracking.log_training(trained)
        registry.promote()
        yield {"folder": folder, "info": info, "env": dict(os.environ)}


@pytest.fixture()
def accounts_csv(trained, tmp_path: Path) -> Path:
    accounts = trained.holdout.drop(
        columns=["outcome", "closed_at", "days_to_close", "created_at", "row_id"]
    ).drop_duplicates("account_id")
    path = tmp_path / "accounts.csv"
    accounts.to_csv(path, index=False)
    return path


def test_training_logs_the_reference_profile_with_the_model(store):
    from abm_ml.registry.store import load_scorer

    info = store["info"]
    scorer, _ = load_scorer(info["model_name"], info["version"])
    assert METADATA_KEY in scorer.metadata
    logged = mlflow.artifacts.load_dict(f"runs:/{info['run_id']}/{ARTIFACT_PATH}")
    assert logged == scorer.metadata[METADATA_KEY]
    assert logged["population"] == "training rows"


def test_monitor_exits_3_on_an_unseen_category_and_writes_its_reports(
    store, accounts_csv, tmp_path
):
    first = runner.invoke(app, ["monitor", str(accounts_csv), "--as-of", "2026-02-01"])
    assert first.exit_code == 0, first.output
    assert "against the training rows" in first.output

    changed = pd.read_csv(accounts_csv)
    changed.loc[: len(changed) // 3, "industry"] = "crypto"
    changed_path = tmp_path / "changed.csv"
    changed.to_csv(changed_path, index=False)
    # Through the real console entry point: a scheduler sees the exit code.
    done = subprocess.run(
        [sys.executable, "-m", "abm_ml.cli", "monitor", str(changed_path), "--as-of", "2026-02-08"],
        capture_output=True,
        text=True,
        env={**store["env"], "COLUMNS": "200"},
        timeout=300,
        check=False,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "industry" in done.stdout and "scoring run of 2026-02-01" in done.stdout
    out = Path(store["env"]["ABM_ML_REPORTS_DIR"]) / "monitoring"
    verdict = json.loads((out / "monitor-v1-2026-02-08.json").read_text())
    assert verdict["verdict"] == "drift" and verdict["flagged"] == ["industry"]
    assert (out / "monitor-v1-2026-02-08.html").is_file()
    attached = mlflow.artifacts.list_artifacts(
        run_id=store["info"]["run_id"], artifact_path="monitoring"
    )
    assert any(a.path.endswith("monitor-v1-2026-02-08.html") for a in attached)


def test_monitor_reports_a_bad_date_in_one_line(store, accounts_csv):
    result = runner.invoke(app, ["monitor", str(accounts_csv), "--as-of", "someday"])
    assert result.exit_code != 0
    assert "not a date" in str(result.exception)


def test_backtest_cli_reads_the_history_and_logs_to_the_issuing_version(
    store, trained, crm_dir, accounts_csv, tmp_path
):
    history = f"sqlite:///{tmp_path / 'history.db'}"
    ranked = runner.invoke(
        app,
        [
            "rank",
            str(accounts_csv),
            "--as-of",
            "2025-06-01",
            "--tiers",
            "5,20,60",
            "--history-url",
            history,
        ],
    )
    assert ranked.exit_code == 0, ranked.output
    result = runner.invoke(
        app,
        ["backtest", str(crm_dir / "spec.yaml"), "--since", "2025-05-01", "--history-url", history],
    )
    assert result.exit_code == 0, result.output
    assert "Scores issued 2025-06-01 by model v1" in result.output
    assert "Tier 1:1 (5 accounts) held" in result.output
    out = Path(store["env"]["ABM_ML_REPORTS_DIR"]) / "monitoring"
    report = json.loads((out / "backtest-v1-2025-06-01.json").read_text())
    assert [t["abm_tier"] for t in report["tiers"]] == ["1:1", "1:few", "1:many", "nurture"]
    assert sum(t["accounts"] for t in report["tiers"]) == report["accounts"]
    run = mlflow.get_run(store["info"]["run_id"])
    assert "backtest_roc_auc" in run.data.metrics
    # Scores issued after the export's last deal: nothing won since, said in words (no "nan").
    later = runner.invoke(
        app, ["rank", str(accounts_csv), "--as-of", "2029-01-01", "--history-url", history]
    )
    assert later.exit_code == 0, later.output
    quiet = runner.invoke(
        app,
        ["backtest", str(crm_dir / "spec.yaml"), "--since", "2029-01-01", "--history-url", history],
    )
    assert quiet.exit_code == 0, quiet.output
    assert "No scored account won a deal between 2029-01-01" in " ".join(quiet.output.split())
    assert "nan" not in quiet.output
    # A date after every stored run: one line naming the option.
    late = runner.invoke(
        app,
        ["backtest", str(crm_dir / "spec.yaml"), "--since", "2030-01-01", "--history-url", history],
    )
    assert late.exit_code != 0 and "--since" in str(late.exception)


def test_rank_with_monitor_ranks_first_then_exits_3_on_drift(store, accounts_csv, tmp_path):
    history = f"sqlite:///{tmp_path / 'history.db'}"
    out = tmp_path / "ranked.csv"
    changed = pd.read_csv(accounts_csv)
    changed["industry"] = "quantum"
    changed_path = tmp_path / "quantum.csv"
    changed.to_csv(changed_path, index=False)
    args = ["--history-url", history, "--out", str(out), "--no-report", "--monitor"]
    result = runner.invoke(app, ["rank", str(changed_path), "--as-of", "2026-03-01", *args])
    assert result.exit_code == 3, result.output
    assert out.is_file() and len(pd.read_csv(out)) == len(changed)  # the ranking is kept
    assert "industry" in result.output and "never saw" in result.output
