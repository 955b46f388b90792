"""A mistyped or unreachable MLflow store: one clear line and exit 2, in seconds, nothing created."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from abm_ml.errors import AbmInputError
from abm_ml.registry import store


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the socket is


@pytest.mark.slow
@pytest.mark.parametrize("command", [["models"], ["train", "no-such-spec.yaml"]])
def test_unreachable_tracking_server_exits_2_naming_it(command: list[str], tmp_path: Path):
    uri = f"http://ann:s3cret@127.0.0.1:{_closed_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    env |= {"MLFLOW_TRACKING_URI": uri, "ABM_ML_MODELS_DIR": str(tmp_path / "models")}
    done = subprocess.run(
        [sys.executable, "-m", "abm_ml.cli", *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=150,  # MLflow's own retries alone would take minutes
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "does not answer" in done.stderr and "127.0.0.1" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout and "ann:***@" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0


def test_mistyped_sqlite_store_is_an_error_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    missing = tmp_path / "no" / "such" / "dir" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
    with pytest.raises(AbmInputError, match=r"folder of the MLflow store does not exist"):
        store.configure()
    assert not (tmp_path / "no").exists()


def test_http_retries_are_bounded_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("ABM_ML_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    store.configure()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"


def test_rank_database_url_without_table_or_query_is_one_line(tmp_path: Path):
    env = {**os.environ, "ABM_ML_MODELS_DIR": str(tmp_path / "models")}
    env.pop("MLFLOW_TRACKING_URI", None)
    for extra in ([], ["--table", "accounts", "--query", "select 1"]):
        done = subprocess.run(
            [sys.executable, "-m", "abm_ml.cli", "rank", "postgresql://ann:s3cret@db/crm", *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "exactly one of --table or --query" in done.stderr
        assert done.stderr.strip().count("\n") == 0 and "s3cret" not in done.stderr


@pytest.mark.slow
def test_a_new_store_prints_no_mlflow_log_lines(tmp_path: Path):
    """Creating the SQLite store on first use must not spill MLflow's INFO lines into the CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "abm_ml.cli", "models"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mlflow.db").exists()
    assert "INFO" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_a_local_store_logs_in_write_ahead_log_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import sqlite3

    import mlflow

    # A store made by an older release: SQLite's default rollback journal.
    database = tmp_path / "mlflow.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    store.configure()
    experiment = mlflow.create_experiment("wal-check")
    with mlflow.start_run(experiment_id=experiment):
        mlflow.log_params({"a": 1, "b": 2})
    # The file keeps the mode: every later connection (any process) commits to the log.
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert mlflow.get_experiment(experiment).name == "wal-check"
