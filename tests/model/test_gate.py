"""The "no better than chance" gate holds its one-sided 97.5 % bound.

A model trained on noise must be called no better than chance nearly always (an honest gate
lets about 2.5 % through), including when outcomes are correlated within accounts, as real
CRM outcomes are; a model with real signal must still pass. ``bench/bench_gate.py`` measures
the same rates over more seeds and exports.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from abm_ml.data.spec import load_spec
from abm_ml.data.validate import Dataset, load_dataset
from abm_ml.modeling.evaluate import evaluate_scorer
from abm_ml.modeling.metrics import is_no_better_than_chance, propensity_metrics, roc_auc_delong
from abm_ml.modeling.train import train_models
from abm_ml.schema import ACCOUNT_ID, LOST, OUTCOME, WON
from abm_ml.testing import CRM_SPEC, make_crm_export, small_train_config


def _clustered_noise(rng: np.random.Generator, n_accounts: int = 30):
    """Labels with an account-level win rate and scores with an account-level part, unrelated."""
    sizes = rng.integers(1, 8, n_accounts)
    groups = np.repeat(np.arange(n_accounts), sizes)
    rate = rng.beta(0.6, 1.4, n_accounts)[groups]
    y = (rng.random(groups.size) < rate).astype(int)
    score = rng.normal(size=n_accounts)[groups] + 0.3 * rng.normal(size=groups.size)
    return y, 1 / (1 + np.exp(-score)), groups


def _false_pass_rate(draws: int, *, with_groups: bool) -> float:
    rng = np.random.default_rng(0)
    passed = []
    for seed in range(draws):
        y, p, groups = _clustered_noise(rng)
        if y.min() == y.max():
            continue
        metrics = propensity_metrics(
            y, p, n_boot=100, seed=seed, groups=groups if with_groups else None
        )
        passed.append(not is_no_better_than_chance(metrics))
    return float(np.mean(passed))


def test_account_correlated_noise_stays_no_better_than_chance() -> None:
    # Deals of one account share their outcome and their score. Treated as independent rows
    # they look like evidence (the second rate shows the test can fail); as clusters, not.
    clustered = _false_pass_rate(300, with_groups=True)
    rows = _false_pass_rate(300, with_groups=False)
    assert clustered <= 0.06
    assert rows >= 0.09 and rows > 2 * clustered


def test_delong_matches_sklearn_and_clusters_widen_it() -> None:
    from sklearn.metrics import roc_auc_score

    y, p, groups = _clustered_noise(np.random.default_rng(4), n_accounts=60)
    p = np.round(p, 1)  # ties count half
    auc, se_rows = roc_auc_delong(y, p)
    auc_clustered, se_clustered = roc_auc_delong(y, p, groups)
    assert auc == pytest.approx(roc_auc_score(y, p), abs=1e-12) == auc_clustered
    assert se_clustered > 1.2 * se_rows
    # One row per cluster is the plain DeLong variance.
    assert roc_auc_delong(y, p, np.arange(y.size))[1] == pytest.approx(se_rows)


def test_small_iid_noise_holdout_keeps_the_one_sided_level() -> None:
    # 60 rows, as in a first export's holdout: the percentile bootstrap alone is too narrow.
    rng = np.random.default_rng(1)
    passed = []
    for seed in range(400):
        y = (rng.random(60) < 0.3).astype(int)
        if y.min() == y.max():
            continue
        p = rng.integers(0, 8, 60) / 8  # calibrated scores have ties
        passed.append(not is_no_better_than_chance(propensity_metrics(y, p, seed=seed)))
    assert np.mean(passed) <= 0.045


# --- end to end: the real training on shuffled and account-correlated noise -----------------


def _crm_dataset(folder: Path, n: int, seed: int) -> Dataset:
    make_crm_export(n, seed=seed).to_csv(folder / "opportunities.csv", index=False)
    (folder / "spec.yaml").write_text(yaml.safe_dump(copy.deepcopy(CRM_SPEC), sort_keys=False))
    return load_dataset(load_spec(folder / "spec.yaml"))


def _shuffled(dataset: Dataset, seed: int) -> Dataset:
    """Won / lost permuted among the closed deals: nothing left to learn, holdout included."""
    frame = dataset.frame.copy()
    closed = frame[OUTCOME].isin([WON, LOST]).to_numpy()
    rng = np.random.default_rng(seed)
    frame.loc[closed, OUTCOME] = rng.permutation(frame.loc[closed, OUTCOME].to_numpy())
    return dataclasses.replace(dataset, frame=frame)


@pytest.mark.slow
def test_models_trained_on_noise_are_no_better_than_chance(tmp_path: Path) -> None:
    config = small_train_config()
    base = _crm_dataset(tmp_path, 500, seed=21)
    passed = [
        not train_models(
            _shuffled(base, seed), dataclasses.replace(config, seed=seed)
        ).no_better_than_chance
        for seed in range(20)
    ]
    assert np.mean(passed) <= 0.10, passed


@pytest.mark.slow
def test_a_small_planted_signal_export_still_passes(tmp_path: Path) -> None:
    result = train_models(_crm_dataset(tmp_path, 500, seed=22), small_train_config())
    assert not result.no_better_than_chance
    # The evaluation resamples accounts, not rows: the same rows in three accounts give
    # another interval around the same AUC.
    holdout = result.holdout.copy()
    rows = evaluate_scorer(result.scorer, holdout).propensity["roc_auc"]
    holdout[ACCOUNT_ID] = [f"A{i % 3}" for i in range(len(holdout))]
    accounts = evaluate_scorer(result.scorer, holdout).propensity["roc_auc"]
    assert accounts.value == pytest.approx(rows.value)
    assert (accounts.low, accounts.high) != pytest.approx((rows.low, rows.high), abs=1e-3)
