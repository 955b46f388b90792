"""On the synthetic world the model must recover the planted truth, and say so in its reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abm_ml.data.spec import load_spec
from abm_ml.data.validate import load_dataset
from abm_ml.features.columns import FEATURE_DESCRIPTIONS, MODEL_FEATURES
from abm_ml.features.point_in_time import build_training_rows
from abm_ml.modeling.train import MODEL_NAME, TrainConfig, train_models
from abm_ml.schema import AMOUNT
from abm_ml.synthetic.generate import generate_world
from abm_ml.synthetic.world import NOISE_FEATURES, PLANTED_WIN_DRIVERS

SPEC = Path(__file__).resolve().parents[2] / "training" / "specs" / "synthetic-abm.yaml"


def _feature_name(column: str) -> str:
    return "deal_amount" if column == AMOUNT else column


@pytest.fixture(scope="module")
def synthetic_result(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("synth")
    world = generate_world(n_accounts=4000, seed=21)
    build_training_rows(world).to_parquet(folder / "training_rows.parquet", index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ABM_ML_SYNTH_DIR", str(folder))
        dataset = load_dataset(load_spec(SPEC))
    return train_models(dataset, TrainConfig(n_boot=100))


def test_shipped_spec_matches_the_feature_builder():
    spec = load_spec(SPEC)
    assert [f.column for f in spec.features] == list(MODEL_FEATURES)
    for feature in spec.features:
        described = FEATURE_DESCRIPTIONS[feature.column]
        assert feature.type == described["type"]
        assert feature.description == described["description"]
        assert feature.template == described.get("template")


def test_planted_drivers_rank_among_the_top_features(synthetic_result):
    ranking = list(synthetic_result.feature_importance["feature"])
    top = set(ranking[:12])
    strongest = [_feature_name(f) for f in PLANTED_WIN_DRIVERS[:4]]
    assert set(strongest) <= top, (strongest, ranking[:12])
    # Intent is planted through the weekly scores; the latest score and its 4-week average carry
    # the same signal, so either may take the credit.
    assert top & {"intent_score_latest", "intent_score_avg_4w", "intent_trend_4w"}, ranking[:12]
    # Pure-noise attributes get some credit (trees split on a continuous noise column of a 3k-row
    # training set), but always less than the strong planted drivers and far less than the top one.
    shap = synthetic_result.feature_importance.set_index("feature")["mean_abs_shap"]
    for noise in NOISE_FEATURES:
        if noise in ranking:
            assert ranking.index(noise) > max(ranking.index(f) for f in strongest), (noise, ranking)
            assert shap[noise] < 0.5 * shap.iloc[0], (noise, shap.head(10))


def test_top_decile_holds_several_times_the_base_rate(synthetic_result):
    model = synthetic_result.propensity[MODEL_NAME]
    assert model["lift_top_decile"].value >= 2.5
    assert model["roc_auc"].low > 0.8
    assert model["roc_auc"].value > synthetic_result.propensity["rule_based_fit"]["roc_auc"].value


def test_planted_drivers_lead_the_reasons_where_they_were_planted(synthetic_result):
    holdout = synthetic_result.holdout
    engaged = holdout[
        (holdout["economic_buyer_engaged_90d"] == 1) & (holdout["champion_engaged_90d"] == 1)
    ]
    assert len(engaged) >= 20
    scored = synthetic_result.scorer.score(engaged, k_up=3)
    planted = {_feature_name(f) for f in PLANTED_WIN_DRIVERS}
    leading = [entry["up"][0]["feature"] for entry in scored["reasons"] if entry["up"]]
    # 0.72 with the early-stopped booster, 0.69 refitted on train + validation (ROC AUC 0.857
    # -> 0.861): the rest lead with touches_30d, engagement that goes with the planted drivers.
    # A model that missed the drivers would sit near the share of planted features (11 of 40).
    assert np.mean([f in planted for f in leading]) >= 0.65, leading
    mentions = [r["feature"] for entry in scored["reasons"] for r in entry["up"]]
    assert (
        np.mean([f in {"economic_buyer_engaged_90d", "champion_engaged_90d"} for f in mentions])
        >= 0.3
    )
