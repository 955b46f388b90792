"""Training on a small export with planted drivers: signal recovered, honest split, reproducible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from abm_ml.modeling.train import MODEL_NAME, TrainConfig, train_models
from abm_ml.schema import ACCOUNT_ID, CREATED_AT, OUTCOME
from conftest import PLANTED

FAST = {"n_boot": 30, "learning_rate": 0.08, "max_rounds": 300, "early_stopping_rounds": 30}


def test_planted_drivers_lead_the_importance(trained):
    top = list(trained.feature_importance["feature"].head(len(PLANTED)))
    assert set(top) == set(PLANTED), top


def test_ranking_concentrates_wins_in_the_top_decile(trained):
    model = trained.propensity[MODEL_NAME]
    assert model["lift_top_decile"].value >= 2.0
    assert model["roc_auc"].low > 0.65
    assert not trained.no_better_than_chance


def test_baselines_are_scored_on_the_same_rows(trained):
    sizes = {name: metrics["n"].value for name, metrics in trained.propensity.items()}
    assert set(sizes) == {MODEL_NAME, "logistic_regression", "rule_based_fit"}
    assert len(set(sizes.values())) == 1
    assert (
        trained.propensity["rule_based_fit"]["roc_auc"].value
        < trained.propensity[MODEL_NAME]["roc_auc"].value
    )


def test_split_is_time_based_and_leaks_no_account(trained, crm_dataset):
    frame = crm_dataset.frame
    split = trained.split
    assert split.method == "time"
    accounts = {
        part: set(frame[ACCOUNT_ID].iloc[getattr(split, part)])
        for part in ("train", "valid", "test")
    }
    assert not accounts["train"] & accounts["test"]
    assert not accounts["valid"] & accounts["test"]
    assert not accounts["train"] & accounts["valid"]
    test_start = pd.Timestamp(split.test_start)
    assert frame[CREATED_AT].iloc[split.train].max() < test_start
    assert frame[CREATED_AT].iloc[split.test].min() >= test_start
    # Every closed deal is in exactly one part or counted as held out.
    closed = frame[OUTCOME].isin(["won", "lost"]).sum()
    parts = np.concatenate([split.train, split.valid, split.test, split.held_out])
    assert len(parts) == len(set(parts)) == closed
    _assert_fit_rows_are_honest(frame, split)


def _assert_fit_rows_are_honest(frame: pd.DataFrame, split) -> None:
    """The rows the final model learns from: nothing of the test period or a test account."""
    assert set(split.held_valid) <= set(split.held_out)
    fit = split.fit_rows
    assert len(fit) == len(set(fit)) == len(split.train) + len(split.valid) + len(split.held_valid)
    assert not set(frame[ACCOUNT_ID].iloc[fit]) & set(frame[ACCOUNT_ID].iloc[split.test])
    assert frame[CREATED_AT].iloc[fit].max() < frame[CREATED_AT].iloc[split.test].min()


@pytest.mark.parametrize("recurring", [False, True])
def test_rows_held_out_for_the_validation_alone_join_the_refit(recurring):
    """Accounts with deals in several periods: rows held out so the validation has no training
    account are still before the test period and of no test account, so the refit uses them."""
    from abm_ml.data.spec import DatasetSpec
    from abm_ml.data.split import make_split

    rng = np.random.default_rng(4)
    n = 3000
    # Few accounts, each in every period (sampled accounts), or many, most in one period.
    accounts = rng.integers(0, 60 if recurring else 2000, n).astype(str)
    frame = pd.DataFrame(
        {
            ACCOUNT_ID: accounts,
            CREATED_AT: pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.uniform(0, 700, n), "D"),
            OUTCOME: np.where(rng.random(n) < 0.4, "won", "lost"),
        }
    )
    spec = DatasetSpec.model_validate(
        {
            "name": "t",
            "source": {"path": "x.csv"},
            "account_id": "a",
            "label": {"column": "s", "won": ["w"], "lost": ["l"]},
            "created_at": {"column": "c"},
        }
    )
    split = make_split(frame, spec, seed=3)
    assert ("sampled" in split.method) == recurring
    assert len(split.held_valid) > 0.05 * n
    _assert_fit_rows_are_honest(frame, split)


def test_same_data_spec_and_seed_give_the_same_metrics(crm_dataset):
    first = train_models(crm_dataset, TrainConfig(seed=11, **FAST))
    second = train_models(crm_dataset, TrainConfig(seed=11, **FAST))
    for name in first.propensity:
        for metric, value in first.propensity[name].items():
            assert value == second.propensity[name][metric], (name, metric)
    assert first.velocity[MODEL_NAME]["mae_days"] == second.velocity[MODEL_NAME]["mae_days"]


def test_calibrated_probabilities_are_calibrated(trained):
    assert trained.scorer.calibrator.method in {"isotonic", "sigmoid", "none"}
    assert trained.propensity[MODEL_NAME]["ece"].value < 0.08


def test_velocity_quantiles_are_ordered_and_cover(trained):
    scored = trained.scorer.score(trained.holdout, with_reasons=False)
    assert (scored["days_to_close_p10"] <= scored["days_to_close_p50"] + 1e-9).all()
    assert (scored["days_to_close_p50"] <= scored["days_to_close_p90"] + 1e-9).all()
    velocity = trained.velocity[MODEL_NAME]
    assert 0.6 <= velocity["coverage_p10_p90"].value <= 0.95
    # Days rise with the amount in the planted truth; the model must beat the median baseline.
    assert velocity["mae_days"].value < trained.velocity["median_days_baseline"]["mae_days"].value
    assert (
        "velocity_c_index" in trained.velocity_extra
        and trained.velocity_extra["velocity_c_index"] > 0.55
    )
    assert "velocity_aft_c_index" in trained.velocity_extra


def test_shuffled_labels_are_reported_as_no_better_than_chance(crm_dataset):
    shuffled = crm_dataset.frame.copy()
    closed = shuffled[OUTCOME].isin(["won", "lost"])
    rng = np.random.default_rng(0)
    shuffled.loc[closed, OUTCOME] = rng.permutation(shuffled.loc[closed, OUTCOME].to_numpy())
    noise = type(crm_dataset)(
        crm_dataset.spec,
        shuffled,
        crm_dataset.features,
        crm_dataset.rejects,
        crm_dataset.summary,
        "x",
    )
    result = train_models(noise, TrainConfig(**FAST))
    assert result.no_better_than_chance
    assert result.propensity[MODEL_NAME]["roc_auc"].low <= 0.5


def test_scorer_takes_raw_crm_records(trained):
    records = pd.DataFrame(
        [
            {
                "account_id": "A1",
                "industry": "software",
                "web_visits_30d": "14",
                "has_economic_buyer": "yes",
                "deal_amount": "25000",
            },
            {"account_id": "A2", "industry": "a brand-new industry", "uses_competitor": 1.0},
            {"account_id": "A3"},
        ]
    )
    scored = trained.scorer.score(records)
    assert list(scored["account_id"]) == ["A1", "A2", "A3"]
    assert scored["propensity"].between(0, 1).all()
    assert scored["score"].between(1, 99).all()
    assert set(scored["tier"]) <= {"A", "B", "C", "D"}
    assert scored.loc[0, "propensity"] > scored.loc[1, "propensity"]
    assert np.allclose(
        scored["priority"], scored["expected_value"] / np.maximum(scored["days_to_close_p50"], 1)
    )


def test_recurring_accounts_fall_back_to_sampled_accounts(crm_dataset):
    """A few customers with deals in every period (like Maven's 85 accounts) still split honestly."""
    from abm_ml.data.split import make_split

    frame = crm_dataset.frame.copy()
    frame[ACCOUNT_ID] = [f"BIG{i % 30}" for i in range(len(frame))]
    split = make_split(frame, crm_dataset.spec, seed=3)
    assert split.method == "time, sampled accounts"
    accounts = {
        part: set(frame[ACCOUNT_ID].iloc[getattr(split, part)])
        for part in ("train", "valid", "test")
    }
    assert accounts["test"] and accounts["train"]
    assert not accounts["train"] & accounts["test"] and not accounts["valid"] & accounts["test"]
    assert (
        frame[CREATED_AT].iloc[split.train].max()
        < pd.Timestamp(split.test_start)
        <= frame[CREATED_AT].iloc[split.test].min()
    )
    closed = frame[OUTCOME].isin(["won", "lost"]).sum()
    assert len(split.train) + len(split.valid) + len(split.test) + len(split.held_out) == closed


def test_the_packaged_booster_is_refitted_on_train_and_validation_only(crm_dataset, monkeypatch):
    from abm_ml.modeling import refit as refit_module
    from abm_ml.modeling import train as train_module

    seen = {}

    def spy(fit, rows, cross_fitted):
        seen["rows"] = rows
        seen["refit"] = refit_module.refit_propensity(fit, rows, cross_fitted)
        return seen["refit"]

    monkeypatch.setattr(train_module, "refit_propensity", spy)
    result = train_models(crm_dataset, TrainConfig(seed=5, candidates=("lightgbm",), **FAST))
    split = result.split
    assert sorted(seen["rows"]) == sorted(split.fit_rows)
    expected = np.concatenate([split.train, split.valid, split.held_valid])
    assert sorted(split.fit_rows) == sorted(expected)
    unused = set(split.held_out) - set(split.held_valid)
    assert not set(seen["rows"]) & (set(split.test) | unused)
    assert result.scorer.propensity_booster is seen["refit"].booster
    rounds = result.best_iterations["propensity_lightgbm"]
    assert result.best_iterations["propensity_refitted"] == 1
    assert result.scorer.propensity_booster.current_iteration() == rounds
    # Cross-fitted scores: none is the refitted booster's own (in-sample) score of the row.
    x = result.scorer.preprocessor.transform(crm_dataset.frame.iloc[seen["rows"]])
    in_sample = result.scorer.propensity_booster.predict(x, raw_score=True)
    assert not np.allclose(seen["refit"].cross_fitted_raw, in_sample)
    # A few hundred validation rows: the candidates were compared on the cross-fitted scores,
    # and those are the ones the calibrator learns from (no second set of fold models).
    assert all(row["cross_fitted"] for row in result.leaderboard)
    # One fold by hand: a booster with the chosen rounds on the fold's other rows scores it.
    from abm_ml.modeling import candidates as cand
    from abm_ml.modeling.evaluate import won_labels
    from abm_ml.modeling.refit import cross_fit_folds

    rows, frame = seen["rows"], crm_dataset.frame
    y = won_labels(frame)
    folds = cross_fit_folds(y[rows], frame[ACCOUNT_ID].to_numpy()[rows].astype(str), 5)
    fit_part, score_part = folds[0]
    X = result.scorer.preprocessor.matrix(result.scorer.preprocessor.raw_values(frame))
    (candidate,) = cand.portfolio(("lightgbm",))
    setup = cand.FitSetup(
        result.scorer.feature_names,
        [j for j, f in enumerate(result.scorer.features) if f.type == "categorical"],
        [f.monotone for f in result.scorer.features],
        result.config,
    )
    fold_model, _ = candidate.fit(X[rows[fit_part]], y[rows[fit_part]], setup, rounds=rounds)
    np.testing.assert_allclose(
        seen["refit"].cross_fitted_raw[score_part], fold_model.raw(X[rows[score_part]])
    )


def test_cross_fit_folds_never_split_an_account():
    from abm_ml.modeling.refit import cross_fit_folds

    rng = np.random.default_rng(0)
    groups = rng.integers(0, 60, 400).astype(str)
    y = (rng.random(400) < 0.3).astype(int)
    folds = cross_fit_folds(y, groups, seed=1)
    assert len(folds) == 3
    for fit_part, score_part in folds:
        assert not set(groups[fit_part]) & set(groups[score_part])
    assert sorted(np.concatenate([s for _, s in folds])) == list(range(400))
    # Too few wins to fold: no refit (the caller keeps the early-stopped booster).
    assert (
        cross_fit_folds(np.r_[np.ones(4, int), np.zeros(100, int)], np.arange(104).astype(str), 1)
        == []
    )


def test_without_refit_the_early_stopped_booster_is_packaged(crm_dataset):
    result = train_models(crm_dataset, TrainConfig(seed=5, refit=False, **FAST))
    assert "propensity_refitted" not in result.best_iterations
    assert result.propensity[MODEL_NAME]["roc_auc"].low > 0.6


def test_cross_fit_folds_of_one_row_accounts_are_stratified():
    from abm_ml.modeling.refit import cross_fit_folds

    # An export without account ids: every row is its own account.
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.2).astype(int)
    groups = np.array([f"row:{i}" for i in range(len(y))])
    folds = cross_fit_folds(y, groups, seed=1)
    assert len(folds) == 3
    assert sorted(np.concatenate([s for _, s in folds])) == list(range(len(y)))
    wins = [int(y[score].sum()) for _, score in folds]
    assert max(wins) - min(wins) <= 1, wins
    assert cross_fit_folds(y, groups, seed=1)[0][1].tolist() == folds[0][1].tolist()  # seeded
    assert cross_fit_folds(y, groups, seed=2)[0][1].tolist() != folds[0][1].tolist()
