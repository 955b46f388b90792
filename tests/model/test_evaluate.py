"""One evaluation: training's holdout metrics are evaluate_scorer on the packaged scorer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from abm_ml.errors import AbmInputError
from abm_ml.modeling import metrics as m
from abm_ml.modeling.evaluate import (
    PROPENSITY_METRICS,
    check_metric,
    evaluate_scorer,
)
from abm_ml.modeling.train import DAYS_COLUMNS, MODEL_NAME
from abm_ml.schema import OPEN, OUTCOME, WON


def _evaluate(trained, frame):
    config = trained.config
    return evaluate_scorer(
        trained.scorer, frame, k=config.capacity, n_boot=config.n_boot, seed=config.seed
    )


def test_training_metrics_are_the_evaluation_of_the_packaged_scorer(trained):
    evaluation = _evaluate(trained, trained.holdout)
    assert evaluation.propensity == trained.propensity[MODEL_NAME]
    assert evaluation.velocity == trained.velocity[MODEL_NAME]
    assert evaluation.velocity_baseline == trained.velocity["median_days_baseline"]
    assert evaluation.no_better_than_chance == trained.no_better_than_chance
    # The logged holdout predictions are what the scorer serves for those rows.
    served = trained.scorer.score(trained.holdout, with_reasons=False)
    np.testing.assert_array_equal(
        trained.holdout_predictions[MODEL_NAME], served["propensity"].to_numpy()
    )
    for column in DAYS_COLUMNS:
        np.testing.assert_array_equal(trained.holdout_predictions[column], served[column])


def test_open_rows_are_left_out_and_one_class_is_refused(trained):
    with_open = trained.holdout.copy()
    with_open.loc[with_open.index[:40], OUTCOME] = OPEN
    evaluation = _evaluate(trained, with_open)
    assert evaluation.propensity["n"].value == len(with_open) - 40
    assert len(evaluation.scored) == len(evaluation.labels) == len(with_open) - 40

    only_won = trained.holdout[trained.holdout[OUTCOME] == WON]
    with pytest.raises(AbmInputError, match="no won and lost deals to evaluate on"):
        evaluate_scorer(trained.scorer, only_won, n_boot=0, where="the test")


def test_promotion_metrics_have_a_direction_and_are_measured():
    for name in PROPENSITY_METRICS:
        assert m.direction(name) != 0, name
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    measured = m.propensity_metrics(y, rng.random(200), n_boot=0, amounts=rng.random(200))
    assert set(PROPENSITY_METRICS) <= set(measured)
    assert check_metric("ece") == "ece"
    with pytest.raises(AbmInputError, match="unknown metric 'auc'.*roc_auc.*ece") as caught:
        check_metric("auc")
    assert caught.value.field == "metric"


def test_promote_with_an_unknown_metric_exits_2_naming_the_allowed_ones(tmp_path: Path):
    env = {**os.environ, "ABM_ML_MODELS_DIR": str(tmp_path / "models")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-m", "abm_ml.cli", "promote", "--metric", "auc"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "unknown metric 'auc'" in done.stderr and "ece" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "models").exists()  # refused before touching the store
