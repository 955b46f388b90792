"""The default training's candidate portfolio: chosen on validation, logged, reported, served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abm_ml.modeling import candidates as cand
from abm_ml.modeling.train import MODEL_NAME, TrainConfig, train_models


@pytest.fixture(scope="module")
def portfolio_result(crm_dataset):
    """A default training (the default candidates), with fewer bootstrap resamples."""
    return train_models(crm_dataset, TrainConfig(n_boot=30))


def test_every_default_candidate_is_fitted_and_the_best_on_validation_is_packaged(
    portfolio_result,
):
    board = pd.DataFrame(portfolio_result.leaderboard)
    singles = board[board["kind"] != "blend"]
    defaults = {c.name for c in cand.PORTFOLIO[: cand.DEFAULT_CANDIDATES]}
    assert set(singles["candidate"]) == defaults  # CatBoost only under --budget
    assert set(singles["kind"]) == {"lightgbm", "linear"}
    assert board["chosen"].sum() == 1
    chosen = board[board["chosen"]].iloc[0]
    # Nothing else is clearly better on the validation rows than what was packaged.
    best = singles["valid_log_loss_calibrated"].min()
    assert chosen["valid_log_loss_calibrated"] <= best * (1 + cand.TIE_TOLERANCE)
    assert portfolio_result.propensity_choice in chosen["candidate"]
    assert (singles["explain_ms_per_1k"] > 0).all() and (singles["fit_s"] > 0).all()


def test_the_packaged_model_explains_exactly_and_beats_the_baseline(portfolio_result):
    scorer, holdout = portfolio_result.scorer, portfolio_result.holdout
    explained = scorer.explain(holdout.head(200))
    np.testing.assert_allclose(
        explained.base_log_odds + explained.contributions.sum(axis=1),
        explained.raw_log_odds,
        atol=1e-8,
    )
    np.testing.assert_allclose(
        explained.base_probability + explained.probability_points.sum(axis=1),
        explained.propensity,
        atol=1e-9,
    )
    scored = scorer.score(holdout.head(200))
    assert all(entry["up"] or entry["down"] for entry in scored["reasons"])
    ours = portfolio_result.propensity[MODEL_NAME]["roc_auc"]
    assert ours.low > 0.6


def test_the_leaderboard_is_logged_to_mlflow_and_shown_in_the_report(
    portfolio_result, tmp_path: Path
):
    """What the MLflow run receives (params, metrics, the data artifacts), and the report.

    The run's logging itself is tested in test_tracking; this checks what the leaderboard adds.
    """
    from abm_ml.registry import tracking
    from abm_ml.reporting.training_report import training_report

    params = tracking._run_params(portfolio_result)
    assert params["propensity_model"] == portfolio_result.propensity_choice
    # The small export's few validation rows: compared on cross-fitted scores, and said so.
    assert params["candidates_compared_on"] == "cross-fitted train + validation"
    metrics = tracking._run_metrics(portfolio_result)
    for row in portfolio_result.leaderboard:
        name = "blend" if row["kind"] == "blend" else row["candidate"]
        logged = metrics[f"candidate_{name}_valid_log_loss_calibrated"]
        assert logged == pytest.approx(row["valid_log_loss_calibrated"])
    tracking._write_data(portfolio_result, tmp_path)
    logged = pd.read_csv(tmp_path / "data/leaderboard.csv")
    assert list(logged["candidate"]) == [r["candidate"] for r in portfolio_result.leaderboard]
    html = training_report(portfolio_result, tmp_path / "report.html").read_text()
    assert 'id="leaderboard"' in html
    assert "Candidates chosen on cross-fitted scores of train + validation" in html
    for row in portfolio_result.leaderboard:
        assert row["candidate"] in html


def test_a_category_first_seen_in_validation_is_known_to_the_packaged_model(crm_dataset):
    """The packaged model is refitted on train + validation, so a category that appears only
    in the validation rows (a new campaign or page, on a time split) gets its own code
    instead of being scored as unknown."""
    import dataclasses

    from abm_ml.data.split import make_split
    from abm_ml.testing import small_train_config

    config = small_train_config()
    split = make_split(crm_dataset.frame, crm_dataset.spec, seed=config.seed)
    feature = next(f.name for f in crm_dataset.features if f.type == "categorical")
    frame = crm_dataset.frame.copy()
    frame[feature] = frame[feature].astype(object)
    frame.iloc[split.valid[:40], frame.columns.get_loc(feature)] = "first_seen_in_validation"
    result = train_models(dataclasses.replace(crm_dataset, frame=frame), config)
    assert "first_seen_in_validation" in result.scorer.preprocessor.categories_[feature]
    test_values = set(frame.iloc[result.split.test][feature].dropna().astype(str))
    assert "first_seen_in_validation" not in test_values  # the holdout is untouched
