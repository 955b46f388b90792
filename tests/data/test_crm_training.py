"""Training through a multi-table spec: the synthetic world's Salesforce and HubSpot exports
reach the flat synthetic spec's holdout ROC AUC, and the planted drivers lead the SHAP ranking."""

from __future__ import annotations

from pathlib import Path

import pytest

from abm_ml.data.spec import load_spec
from abm_ml.data.validate import load_dataset
from abm_ml.features.build import build_rows, write_rows
from abm_ml.features.point_in_time import build_training_rows
from abm_ml.modeling.train import MODEL_NAME, TrainConfig, train_models
from abm_ml.synthetic.export import export_world
from abm_ml.synthetic.generate import generate_world

SPECS = Path(__file__).resolve().parents[2] / "training" / "specs"
COMMITTEE = {"economic_buyer_engaged_90d", "champion_engaged_90d", "committee_roles_engaged_90d"}
ENGAGEMENT = {
    "touches_30d",
    "touches_90d",
    "web_visits_30d",
    "web_pages_30d",
    "sales_meetings_30d",
    "email_clicks_30d",
}
INTENT = {"intent_score_latest", "intent_score_avg_4w", "intent_trend_4w"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("crm")
    world = generate_world(n_accounts=4000, seed=21)
    build_training_rows(world).to_parquet(folder / "training_rows.parquet", index=False)
    out = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ABM_ML_SYNTH_DIR", str(folder))
        for name in ("synthetic-abm", "synthetic-salesforce", "synthetic-hubspot"):
            spec = load_spec(SPECS / f"{name}.yaml")
            if spec.tables is not None:
                export_world(world, folder / spec.tables.preset, spec.tables.preset)
                write_rows(build_rows(spec), spec.tables.out)
            out[name] = train_models(load_dataset(spec), TrainConfig(n_boot=50))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["synthetic-salesforce", "synthetic-hubspot"])
def test_crm_exports_train_to_the_flat_specs_holdout_auc(results, name):
    flat = results["synthetic-abm"].propensity[MODEL_NAME]["roc_auc"].value
    got = results[name].propensity[MODEL_NAME]["roc_auc"].value
    assert abs(got - flat) <= 0.01, (name, got, flat)
    assert got > results[name].propensity["rule_based_fit"]["roc_auc"].value


@pytest.mark.slow
@pytest.mark.parametrize("name", ["synthetic-salesforce", "synthetic-hubspot"])
def test_planted_drivers_lead_the_shap_importance(results, name):
    ranking = list(results[name].feature_importance["feature"])
    # Committee engagement is planted strongest: it leads; engagement and intent follow.
    # (4000 accounts as in tests/model/test_synthetic_recovery.py: with fewer the weak intent
    # signal drops out of the top features for the flat spec too.)
    assert set(ranking[:2]) <= COMMITTEE, ranking[:10]
    assert ENGAGEMENT & set(ranking[:6]), ranking[:10]
    # Intent is planted weaker (and shared by three columns); it still makes the top 12, as in
    # the flat spec's recovery test on the same world.
    assert INTENT & set(ranking[:12]), ranking[:12]
    for noise in ("founded_year", "fiscal_year_end_month", "crm_data_quality"):
        assert noise not in ranking[:6], ranking[:10]
