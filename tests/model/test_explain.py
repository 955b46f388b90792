"""SHAP reasons: additive, equal to shap.TreeExplainer, in original category values and in words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shap

from abm_ml.modeling.feature_info import FeatureInfo
from abm_ml.modeling.reasons import contributions, reason_text, top_indices


def test_contributions_add_up_to_the_raw_output(trained):
    matrix = trained.scorer.preprocessor.transform(trained.holdout)
    contrib = contributions(trained.scorer.propensity_booster, matrix)
    raw = trained.scorer.propensity_booster.predict(matrix, raw_score=True)
    assert np.max(np.abs(contrib.values.sum(axis=1) + contrib.base - raw)) < 1e-6


def test_contributions_equal_shap_tree_explainer(trained):
    matrix = trained.scorer.preprocessor.transform(trained.holdout.head(200))
    ours = contributions(trained.scorer.propensity_booster, matrix)
    explainer = shap.TreeExplainer(
        trained.scorer.propensity_booster, feature_perturbation="tree_path_dependent"
    )
    theirs = np.asarray(explainer.shap_values(matrix))
    assert theirs.shape == ours.values.shape
    assert np.allclose(ours.values, theirs, atol=1e-6)
    assert np.allclose(ours.base, np.asarray(explainer.expected_value).ravel()[0], atol=1e-6)


def test_velocity_contributions_add_up_too(trained):
    matrix = trained.scorer.preprocessor.transform(trained.holdout)
    booster = trained.scorer.velocity.boosters["p50"]
    contrib = contributions(booster, matrix)
    assert np.max(np.abs(contrib.raw - booster.predict(matrix))) < 1e-6


def test_reasons_use_original_category_values_and_sentences(trained):
    records = trained.holdout.head(300)
    scored = trained.scorer.score(records, k_up=3, k_down=1)
    industries = set(records["industry"].dropna())
    seen_industry = False
    for entry in scored["reasons"]:
        assert len(entry["up"]) <= 3 and len(entry["down"]) <= 1
        assert all(r["contribution"] > 0 for r in entry["up"])
        assert all(r["contribution"] < 0 for r in entry["down"])
        for reason in entry["up"] + entry["down"]:
            assert reason["text"]
            assert "probability_points" in reason
            if reason["feature"] == "industry":
                seen_industry = True
                assert reason["value"] in industries  # not a LightGBM category code
                assert reason["text"] == f"Industry: {reason['value']}"
    assert seen_industry


def test_planted_drivers_are_the_leading_reasons_where_planted(trained):
    records = trained.holdout.copy()
    strong = records[
        (records["has_economic_buyer"] == 1)
        & (records["web_visits_30d"] >= 8)
        & (records["uses_competitor"] == 0)
    ]
    assert len(strong) >= 5
    scored = trained.scorer.score(strong, k_up=3)
    leading = [entry["up"][0]["feature"] for entry in scored["reasons"] if entry["up"]]
    share = np.mean(
        [f in {"has_economic_buyer", "web_visits_30d", "uses_competitor"} for f in leading]
    )
    assert share >= 0.8, leading
    texts = [r["text"] for entry in scored["reasons"] for r in entry["up"]]
    assert "Economic buyer engaged" in texts


def test_reason_effects_are_in_probability_points(trained):
    scored = trained.scorer.score(trained.holdout.head(50))
    for entry, propensity in zip(scored["reasons"], scored["propensity"]):
        for reason in entry["up"]:
            assert 0 <= reason["probability_points"] <= propensity + 1e-9


def test_reason_text_templates():
    visits = FeatureInfo(
        "web_visits_30d",
        "v",
        "numeric",
        "web visits in the last 30 days",
        template="{value:.0f} web visits in the last 30 days",
    )
    buyer = FeatureInfo(
        "has_economic_buyer",
        "b",
        "boolean",
        "economic buyer",
        true_text="Economic buyer engaged",
        false_text="No economic buyer in CRM",
    )
    assert reason_text(visits, 12.0) == "12 web visits in the last 30 days"
    assert reason_text(buyer, 0.0) == "No economic buyer in CRM"
    assert reason_text(visits, np.nan) == "Web visits in the last 30 days: unknown"
    assert reason_text(FeatureInfo("x", "x", "categorical", "region"), "EMEA") == "Region: EMEA"


def test_top_indices_orders_by_strength():
    values = np.array([[0.1, -2.0, 3.0, 0.5], [-0.3, 0.2, -0.1, 0.0]])
    assert top_indices(values, 2, largest=True).tolist() == [[2, 3], [1, 3]]
    assert top_indices(values, 1, largest=False).tolist() == [[1], [0]]
    assert pd.isna(np.nan)


def _isotonic_twin(scorer, holdout):
    """The same booster with an isotonic calibrator fitted on its holdout scores (flat steps)."""
    import dataclasses

    from sklearn.isotonic import IsotonicRegression

    from abm_ml.modeling.scorer import Calibrator

    raw = scorer.propensity_booster.predict(scorer.preprocessor.transform(holdout), raw_score=True)
    won = (holdout["outcome"] == "won").to_numpy(dtype=float)
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4)
    calibrator = Calibrator("isotonic", isotonic=isotonic.fit(raw, won))
    return dataclasses.replace(
        scorer, calibrator=calibrator, base_propensity=float(calibrator(raw).mean())
    )


def test_the_base_is_the_mean_training_propensity(trained, crm_dataset):
    scorer = trained.scorer
    # The packaged booster was refitted on the split's fit rows: those are its training rows.
    rows = trained.split.fit_rows
    matrix = scorer.preprocessor.transform(crm_dataset.frame.iloc[rows])
    raw = scorer.propensity_booster.predict(matrix, raw_score=True)
    assert scorer.base_propensity == pytest.approx(float(scorer.calibrator(raw).mean()), abs=1e-12)
    explained = scorer.explain(trained.holdout.head(5))
    assert np.all(explained.base_probability == scorer.base_propensity)
    # Near the training win rate, not the calibrated SHAP base (3 % vs 36 % on one export).
    train_rate = (crm_dataset.frame["outcome"].iloc[rows] == "won").mean()
    assert abs(scorer.base_propensity - train_rate) < 0.05


@pytest.mark.parametrize("calibration", ["chosen", "isotonic"])
def test_waterfall_steps_add_up_to_the_propensity(trained, calibration):
    scorer = trained.scorer
    if calibration == "isotonic":
        scorer = _isotonic_twin(scorer, trained.holdout)
    explained = scorer.explain(trained.holdout)
    total = explained.base_probability + explained.probability_points.sum(axis=1)
    assert np.max(np.abs(total - explained.propensity)) < 1e-9
    # Each step has its contribution's sign on almost every record (flips only in fallbacks).
    signs = np.sign(explained.probability_points) * np.sign(explained.contributions)
    strong = np.abs(explained.contributions) > 0.05
    assert np.mean(signs[strong] >= 0) > 0.99
    factors = explained.factors(0)
    assert factors["probability_points"].sum() == pytest.approx(
        explained.propensity[0] - explained.base_probability[0], abs=1e-9
    )
