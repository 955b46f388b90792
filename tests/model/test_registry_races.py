"""Concurrent trainings and killed ones: the registry says what really happened."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from abm_ml import config as cfg
from abm_ml.registry import store, tracking

pytestmark = pytest.mark.slow


def test_an_older_version_never_takes_challenger_back(trained, mlflow_store: Path):
    tracking.configure()
    info = tracking.log_training(trained)
    assert info["challenger"] == info["version"] == "1"
    client = MlflowClient()
    name = info["model_name"]
    for _ in range(2):
        client.create_model_version(name, source=info["model_uri"], run_id=info["run_id"])
    # Training B (version 3) finished its registration first; A (version 2) comes after.
    assert tracking.claim_challenger(client, name, "3") is True
    assert tracking.claim_challenger(client, name, "2") is False
    assert str(client.get_model_version_by_alias(name, cfg.CHALLENGER).version) == "3"


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


def test_runs_left_running_by_a_killed_training_are_marked_failed(mlflow_store: Path):
    store.configure()
    experiment = mlflow.create_experiment("abm-ml/killed")
    client = MlflowClient()
    host = socket.gethostname()
    dead = client.create_run(
        experiment, tags={tracking.HOST_TAG: host, tracking.PID_TAG: str(_dead_pid())}
    )
    alive = client.create_run(
        experiment, tags={tracking.HOST_TAG: host, tracking.PID_TAG: str(os.getpid())}
    )
    elsewhere = client.create_run(
        experiment, tags={tracking.HOST_TAG: "another-host", tracking.PID_TAG: "1"}
    )
    marked = tracking.fail_abandoned_runs(experiment)
    assert marked == [dead.info.run_id]
    status = {
        r: client.get_run(r).info.status
        for r in (dead.info.run_id, alive.info.run_id, elsewhere.info.run_id)
    }
    assert status == {
        dead.info.run_id: "FAILED",
        alive.info.run_id: "RUNNING",
        elsewhere.info.run_id: "RUNNING",
    }
    assert "is gone" in client.get_run(dead.info.run_id).data.tags["abm_ml.marked_failed"]
