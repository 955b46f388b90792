"""Honest verdicts: a model worse than logistic regression (or no better than chance) says so,
is logged with its verdict, and is not registered as challenger without ``--force``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from abm_ml import config as cfg
from abm_ml.cli import app
from abm_ml.errors import AbmInputError
from abm_ml.modeling import train as train_module
from abm_ml.modeling.metrics import Metric
from abm_ml.modeling.train import MODEL_NAME
from abm_ml.registry.card import model_card, registration_refusal, verdict
from abm_ml.reporting import training_report as report_module

runner = CliRunner()


def _worse(trained):
    """The trained result with a logistic regression whose interval lies wholly above the model's."""
    model = trained.propensity[MODEL_NAME]["roc_auc"]
    high = min(model.high + 0.02, 0.999)
    logistic = {
        **trained.propensity["logistic_regression"],
        "roc_auc": Metric(high, high - 0.005, min(high + 0.005, 1.0)),
    }
    return dataclasses.replace(
        trained, propensity={**trained.propensity, "logistic_regression": logistic}
    )


def test_a_model_below_logistic_regression_is_called_worse(trained):
    assert registration_refusal(trained) is None
    assert "better than logistic regression" in verdict(trained)
    worse = _worse(trained)
    sentence = verdict(worse)
    assert sentence.startswith("WORSE THAN LOGISTIC REGRESSION") and "not clearly" not in sentence
    assert "worse than logistic regression" in registration_refusal(worse)
    assert sentence in model_card(worse)
    assert report_module._verdict_level(worse) == "danger"


def test_overlapping_intervals_are_not_called_worse(trained):
    model = trained.propensity[MODEL_NAME]["roc_auc"]
    touching = {
        **trained.propensity["logistic_regression"],
        "roc_auc": Metric(model.high + 0.01, model.high, model.high + 0.02),
    }
    result = dataclasses.replace(
        trained, propensity={**trained.propensity, "logistic_regression": touching}
    )
    assert "not clearly better than" in verdict(result)
    assert registration_refusal(result) is None


def _train_cli(crm_dir: Path, result, monkeypatch: pytest.MonkeyPatch, *extra: str):
    monkeypatch.setattr(train_module, "train_models", lambda dataset, config: result)
    return runner.invoke(app, ["train", str(crm_dir / "spec.yaml"), "--n-boot", "20", *extra])


def _runs_and_versions() -> tuple[list, list]:
    client = MlflowClient()
    experiment = mlflow.get_experiment_by_name("abm-ml/tiny-crm")
    runs = client.search_runs([experiment.experiment_id])
    versions = client.search_model_versions(f"name='{cfg.registered_model_name()}'")
    return runs, versions


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["worse", "chance"])
def test_train_refuses_to_register_without_force(
    kind, trained, crm_dir: Path, mlflow_store: Path, monkeypatch: pytest.MonkeyPatch
):
    result = (
        _worse(trained)
        if kind == "worse"
        else dataclasses.replace(trained, no_better_than_chance=True)
    )
    refused = _train_cli(crm_dir, result, monkeypatch)
    assert isinstance(refused.exception, AbmInputError), refused.output
    message = str(refused.exception)
    assert "not registered as challenger" in message and "--force" in message
    assert "\n" not in message
    runs, versions = _runs_and_versions()
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["abm_ml.verdict"] == verdict(result)
    assert versions == []

    forced = _train_cli(crm_dir, result, monkeypatch, "--force")
    assert forced.exit_code == 0, forced.output
    runs, versions = _runs_and_versions()
    assert len(runs) == 2 and len(versions) == 1


def test_a_training_that_fails_is_logged_as_a_failed_run(
    crm_dir: Path, mlflow_store: Path, monkeypatch: pytest.MonkeyPatch
):
    def broken(dataset, config):
        raise ValueError("the candidates\ndiverged")

    # The store is prepared while the models train: the failure is logged to it all the same.
    monkeypatch.setattr(train_module, "train_models", broken)
    failed = runner.invoke(app, ["train", str(crm_dir / "spec.yaml"), "--n-boot", "20"])
    assert isinstance(failed.exception, ValueError), failed.output
    runs, versions = _runs_and_versions()
    assert [r.info.status for r in runs] == ["FAILED"] and versions == []
    assert runs[0].data.tags["abm_ml.error"] == "ValueError: the candidates diverged"
