"""Gated retraining: better data promotes, worse data is refused and the champion stays."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from abm_ml import config as cfg
from abm_ml.cli import app
from abm_ml.registry.store import client, version_by_alias
from abm_ml.testing import CRM_SPEC, make_crm_export

runner = CliRunner()
DRIVERS = ("Web Visits 30d", "Economic Buyer Engaged")


def _export(folder: Path, *, corrupted: bool, seed: int = 3) -> Path:
    """The planted CRM export; ``corrupted`` scrambles the drivers of its older 75 % of rows,
    as a broken sync that wiped engagement history would, and keeps the newest rows intact."""
    frame = make_crm_export(2400, seed)
    if corrupted:
        rng = np.random.default_rng(seed)
        old = np.arange(len(frame)) < int(0.75 * len(frame))  # rows are in creation order
        for column in DRIVERS:
            frame.loc[old, column] = rng.permutation(frame.loc[old, column].to_numpy())
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "opportunities.csv", index=False)
    (folder / "spec.yaml").write_text(yaml.safe_dump(CRM_SPEC, sort_keys=False))
    return folder / "spec.yaml"


def _retrain(spec: Path) -> str:
    result = runner.invoke(app, ["retrain", str(spec), "--n-boot", "30"])
    assert result.exit_code == 0, result.output
    return result.output


def _champion() -> str:
    return str(version_by_alias(client(), cfg.registered_model_name(), cfg.CHAMPION).version)


@pytest.mark.slow
def test_retrain_promotes_on_better_data_and_refuses_worse(mlflow_store, tmp_path):
    first = _retrain(_export(tmp_path / "corrupted", corrupted=True))
    assert "Version 1 is now champion" in first and _champion() == "1"

    better = _retrain(_export(tmp_path / "clean", corrupted=False))
    assert "Version 2 is now champion" in better, better
    assert _champion() == "2"

    worse = _retrain(_export(tmp_path / "corrupted-again", corrupted=True, seed=4))
    assert "Version 3 not promoted" in worse and "not better on roc_auc" in worse, worse
    assert _champion() == "2"
    refused = client().get_model_version(cfg.registered_model_name(), "3").tags
    assert "not better on roc_auc" in refused["abm_ml.retrain_refused"]
    # The calibration comparison is paired: both ECEs and their difference's interval.
    assert re.search(
        r"difference [+-]0\.\d{4} \[[+-]0\.\d{4}, [+-]0\.\d{4}\]",
        refused["abm_ml.retrain_refused"],
    )
    assert os.environ["ABM_ML_MODELS_DIR"] == str(mlflow_store)


@pytest.mark.parametrize(
    ("challenger", "passes", "why"),
    [
        ({"roc_auc": 0.80, "ece": 0.05}, True, "better"),
        ({"roc_auc": 0.80, "ece": 0.069}, True, "better"),  # within the 0.02 tolerance
        ({"roc_auc": 0.80, "ece": 0.09}, False, "calibration worse beyond the tolerance"),
        ({"roc_auc": 0.75, "ece": 0.01}, False, "not better on roc_auc"),
        ({"roc_auc": 0.70, "ece": 0.01}, False, "not better on roc_auc"),
    ],
)
def test_the_promotion_rule_weighs_ranking_and_calibration(challenger, passes, why):
    from abm_ml.monitoring.retrain import decide

    champion = {"roc_auc": 0.75, "ece": 0.05}
    assert decide("roc_auc", challenger, champion, 0.02) == (passes, why)
    # A lower-is-better primary metric follows its direction.
    assert decide("brier", {"brier": 0.1, "ece": 0.05}, {"brier": 0.2, "ece": 0.05}, 0.02)[0]


def test_a_worse_calibration_within_the_paired_noise_does_not_block_promotion():
    from abm_ml.modeling.metrics import Metric
    from abm_ml.monitoring.retrain import decide

    champion = {"roc_auc": 0.75, "ece": 0.04}
    challenger = {"roc_auc": 0.80, "ece": 0.07}
    noisy = Metric(0.03, -0.01, 0.07)
    clear = Metric(0.03, 0.005, 0.06)
    passed, why = decide("roc_auc", challenger, champion, 0.02, ece_difference=noisy)
    assert passed and "within the noise" in why
    assert decide("roc_auc", challenger, champion, 0.02, ece_difference=clear) == (
        False,
        "calibration worse beyond the tolerance",
    )
    # An interval that could not be measured is no licence.
    undefined = Metric(0.03, float("nan"), float("nan"))
    assert not decide("roc_auc", challenger, champion, 0.02, ece_difference=undefined)[0]


def test_the_paired_ece_difference_holds_the_noise_of_the_difference_only():
    from abm_ml.modeling.metrics import paired_ece_difference, propensity_metrics

    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.6, 400)
    y = (rng.uniform(size=400) < p).astype(int)
    same = paired_ece_difference(y, p, p, n_boot=100)
    assert same.value == same.low == same.high == 0.0
    # Probabilities pushed 0.15 too high are clearly worse calibrated, on the same rows.
    shifted = paired_ece_difference(y, np.clip(p + 0.15, 0, 1), p, n_boot=200, seed=1)
    assert shifted.low > 0.0
    # Slightly different probabilities: the paired interval reaches zero.
    near = paired_ece_difference(y, np.clip(p + rng.normal(0, 0.02, 400), 0, 1), p, n_boot=200)
    assert near.low <= 0.0 <= near.high
    # The point value is the difference of the two models' own ECEs.
    e_new = propensity_metrics(y, np.clip(p + 0.15, 0, 1), n_boot=0)["ece"].value
    e_old = propensity_metrics(y, p, n_boot=0)["ece"].value
    assert shifted.value == pytest.approx(e_new - e_old)
