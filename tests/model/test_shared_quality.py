"""Quality on the real shared datasets, with leaking columns excluded by the shipped specs.

Targets from the training issue: IBM win-loss ROC AUC at least 0.85 (a default LightGBM with
5-fold CV reaches 0.843), bank marketing without `duration` at least 0.80, Olist on a time split
at least 0.66, and Maven (no signal) reported as no better than chance.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from abm_ml.data.spec import load_spec
from abm_ml.data.validate import load_dataset
from abm_ml.modeling.train import MODEL_NAME, TrainConfig, train_models
from conftest import shared_dataset

pytestmark = pytest.mark.slow
SPECS = Path(__file__).resolve().parents[2] / "training" / "specs"


@pytest.mark.parametrize(
    ("name", "minimum"),
    [("ibm-sales-win-loss", 0.85), ("uci-bank-marketing", 0.80), ("olist-marketing-funnel", 0.66)],
)
def test_propensity_reaches_the_target_and_beats_the_baselines(name: str, minimum: float):
    shared_dataset(name)
    result = train_models(load_dataset(load_spec(SPECS / f"{name}.yaml")), TrainConfig(n_boot=100))
    auc = result.propensity[MODEL_NAME]["roc_auc"]
    assert auc.value >= minimum, str(auc)
    assert not result.no_better_than_chance
    assert auc.value > result.propensity["rule_based_fit"]["roc_auc"].value
    assert auc.value >= result.propensity["logistic_regression"]["roc_auc"].low
    assert not result.leak_findings, [f.message() for f in result.leak_findings]
    if name == "olist-marketing-funnel":
        assert result.split.method.startswith("time")


def test_maven_is_reported_as_no_better_than_chance():
    shared_dataset("maven-crm-sales-opportunities")
    result = train_models(
        load_dataset(load_spec(SPECS / "maven-crm-sales-opportunities.yaml")),
        TrainConfig(n_boot=200),
    )
    assert result.no_better_than_chance, str(result.propensity[MODEL_NAME]["roc_auc"])
    # Open deals are kept as censored cases for the velocity comparison, not dropped.
    assert (
        result.velocity_extra.get("velocity_censored_in_test", 0)
        + result.velocity_extra.get("velocity_censored_in_train", 0)
        > 0
    )
