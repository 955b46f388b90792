"""Velocity candidates: the censoring-aware model learns from open deals and can be served."""

from __future__ import annotations

import dataclasses

import numpy as np

from abm_ml.modeling.feature_info import FeatureInfo
from abm_ml.modeling.velocity import LogNormalVelocity


def _features() -> list[FeatureInfo]:
    return [
        FeatureInfo(
            name="deal_amount", column="deal_amount", type="numeric", description="deal size"
        ),
        FeatureInfo(name="industry", column="industry", type="categorical", description="industry"),
    ]


def test_open_deals_censored_at_the_data_end_lengthen_the_forecast():
    """Deals still open after 200 days say big deals take long; a model that drops them (won
    deals only) cannot know. The censoring-aware fit must forecast longer for big deals."""
    rng = np.random.default_rng(0)
    n = 600
    amount = rng.uniform(0, 1, n)
    industry = rng.integers(0, 3, n).astype(float)
    true_days = np.exp(3.0 + 1.5 * amount + rng.normal(scale=0.3, size=n))
    censor_at = 60.0
    won = true_days <= censor_at
    durations = np.minimum(true_days, censor_at)
    X = np.column_stack([amount, industry])
    with_open = LogNormalVelocity(_features(), 30.0).fit(X, durations, won)
    won_only = LogNormalVelocity(_features(), 30.0).fit(X[won], durations[won], won[won])
    big = np.column_stack([np.full(50, 0.95), np.zeros(50)])
    truth = np.exp(3.0 + 1.5 * 0.95)
    aware = np.expm1(with_open.predict_log(big)["p50"]).mean()
    naive = np.expm1(won_only.predict_log(big)["p50"]).mean()
    assert abs(aware - truth) < abs(naive - truth)
    assert aware > naive
    logs = with_open.predict_log(X[:100])
    assert np.all(logs["p10"] <= logs["p50"]) and np.all(logs["p50"] <= logs["p90"])
    assert with_open.contributions(X[:5]) is None


def test_a_scorer_serving_the_censoring_aware_model_gives_days_without_velocity_reasons(trained):
    scorer = trained.scorer
    holdout = trained.holdout.head(30)
    X = scorer.preprocessor.matrix(scorer.preprocessor.raw_values(holdout))
    won = np.ones(len(X), bool)
    days = np.linspace(5, 60, len(X))
    aft = LogNormalVelocity(scorer.features, 20.0).fit(X, days, won)
    served = dataclasses.replace(scorer, velocity=aft)
    out = served.score(holdout)
    expected = np.maximum(np.expm1(aft.predict_log(X)["p50"]), 0.0)
    np.testing.assert_allclose(out["days_to_close_p50"], expected)
    assert "velocity_reasons" not in out.columns
    assert out["reasons"].map(lambda r: bool(r["up"] or r["down"])).all()
