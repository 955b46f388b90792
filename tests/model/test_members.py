"""Propensity members over the X array: exact additive explanations, blends, the choice."""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pytest

from abm_ml.modeling import candidates as cand
from abm_ml.modeling.boosting import TrainConfig
from abm_ml.modeling.evaluate import won_labels
from abm_ml.modeling.members import Blend, LightGBMMember
from abm_ml.modeling.scorer import Preprocessor

CONFIG = TrainConfig(learning_rate=0.1, max_rounds=120, early_stopping_rounds=20)


@pytest.fixture(scope="module")
def data(crm_dataset):
    features = crm_dataset.features
    frame = crm_dataset.frame
    y = won_labels(frame)
    closed = np.flatnonzero(frame["outcome"].isin(["won", "lost"]).to_numpy())
    rng = np.random.default_rng(0)
    closed = rng.permutation(closed)
    train, valid = np.sort(closed[: len(closed) * 2 // 3]), np.sort(closed[len(closed) * 2 // 3 :])
    preprocessor = Preprocessor(features).fit(frame.iloc[train])
    values = preprocessor.raw_values(frame)
    setup = cand.FitSetup(
        feature_names=[f.name for f in features],
        categorical=[j for j, f in enumerate(features) if f.type == "categorical"],
        monotone=[0] * len(features),
        config=CONFIG,
    )
    return preprocessor, values, preprocessor.matrix(values), y, train, valid, setup


@pytest.fixture(scope="module")
def members(data):
    _, _, X, y, train, valid, setup = data
    out = {}
    for name in ("lightgbm_shallow", "catboost_depth6", "linear_splines", "linear_plain"):
        (candidate,) = cand.portfolio((name,))
        key = "linear_plain" if name == "linear_plain" else candidate.kind
        out[key], _ = candidate.fit(X[train], y[train], setup, valid=(X[valid], y[valid]))
    return out


@pytest.mark.parametrize("kind", ["lightgbm", "catboost", "linear", "linear_plain"])
def test_base_plus_contributions_is_the_raw_score(members, data, kind):
    X = data[2]
    member = members[kind]
    contrib = member.contributions(X)
    assert contrib.values.shape == X.shape
    assert contrib.feature_names == data[6].feature_names
    np.testing.assert_allclose(contrib.base + contrib.values.sum(axis=1), member.raw(X), atol=1e-8)
    # Not trivially additive: features push different rows different ways.
    assert (contrib.values.std(axis=0) > 1e-6).sum() >= 3


def test_linear_shap_is_each_term_minus_its_training_mean(members, data):
    """Exact SHAP of an additive model: changing one feature moves only its own contribution,
    by exactly the change of the raw score; the base is the training rows' mean raw score."""
    X, train = data[2], data[4]
    linear = members["linear"]
    assert np.allclose(linear.contributions(X[train]).base, linear.raw(X[train]).mean())
    j = data[6].feature_names.index("web_visits_30d")
    changed = X[:50].copy()
    changed[:, j] += 7
    before, after = linear.contributions(X[:50]), linear.contributions(changed)
    delta = after.values - before.values
    assert np.allclose(np.delete(delta, j, axis=1), 0.0)
    assert np.allclose(delta[:, j], linear.raw(changed) - linear.raw(X[:50]))
    assert (delta[:, j] > 0).mean() > 0.9  # the planted driver raises the odds


def test_the_plain_linear_member_is_one_slope_per_number_like_the_baseline(members, data):
    """The portfolio's plain logistic regression is the benchmark's baseline as a member: a
    numeric feature's contribution moves by the same amount for the same change on every row
    (one slope, unlike the splines), and it ranks the rows as the baseline pipeline does."""
    from abm_ml.modeling.baselines import as_logistic_input, logistic_baseline

    preprocessor, values, X, y, train, valid, setup = data
    plain, splines = members["linear_plain"], members["linear"]
    j = setup.feature_names.index("web_visits_30d")
    rows = X[valid][np.isfinite(X[valid][:, j])][:200]
    changed = rows.copy()
    changed[:, j] += 7
    plain_step = plain.contributions(changed).values[:, j] - plain.contributions(rows).values[:, j]
    assert np.ptp(plain_step) < 1e-9 and plain_step[0] > 0
    spline_step = (
        splines.contributions(changed).values[:, j] - splines.contributions(rows).values[:, j]
    )
    assert np.ptp(spline_step) > 1e-3  # the spline member is not one slope: the test can tell

    features = preprocessor.features
    baseline = logistic_baseline(features).fit(
        as_logistic_input(values.iloc[train], features), y[train]
    )
    expected = baseline.decision_function(as_logistic_input(values.iloc[valid], features))
    assert np.corrcoef(plain.raw(X[valid]), expected)[0, 1] > 0.99


def test_blend_contributions_are_the_weighted_sum_and_add_up(members, data):
    X = data[2]
    parts = [members["lightgbm"], members["catboost"], members["linear"], members["linear_plain"]]
    blend = Blend(parts, [0.5, 0.3, 0.4, 0.2], -0.2, data[6].feature_names)
    contrib = blend.contributions(X)
    expected = sum(w * m.contributions(X).values for w, m in zip(blend.weights, parts))
    np.testing.assert_allclose(contrib.values, expected, atol=1e-10)
    np.testing.assert_allclose(contrib.base + contrib.values.sum(axis=1), blend.raw(X), atol=1e-8)
    np.testing.assert_allclose(
        blend.raw(X), -0.2 + sum(w * m.raw(X) for w, m in zip(blend.weights, parts)), atol=1e-10
    )
    restored = pickle.loads(pickle.dumps(blend))
    np.testing.assert_allclose(restored.raw(X[:20]), blend.raw(X[:20]))


def test_a_booster_trained_on_pandas_categories_predicts_the_same_from_code_arrays(data):
    preprocessor, values, X, y, train, _, _ = data
    matrix = preprocessor.encode(values)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7, "min_data_in_leaf": 5},
        lgb.Dataset(matrix.iloc[train], y[train]),
        num_boost_round=30,
    )
    assert preprocessor.categorical_names
    np.testing.assert_allclose(
        booster.predict(X, raw_score=True), booster.predict(matrix, raw_score=True)
    )
    member = LightGBMMember(booster, list(matrix.columns))
    expected = booster.predict(matrix, pred_contrib=True)
    np.testing.assert_allclose(member.contributions(X).values, expected[:, :-1])


def _fitted(name, loss, explain, raw=None):
    return cand.Fitted(
        candidate=cand.Candidate(name, "lightgbm"),
        member=None,
        rounds=1,
        valid_raw=raw if raw is not None else np.zeros(3),
        fit_s=0.1,
        explain_ms_per_1k=0.0,  # measured, shown; ties are broken on the units
        explain_units=explain,
        valid_log_loss_calibrated=loss,
    )


def test_explain_units_follow_the_size_of_the_trees(members, data):
    _, _, X, y, train, _, setup = data
    small = members["lightgbm"]
    (deep,) = cand.portfolio(("lightgbm_63_leaves",))
    big, _ = deep.fit(X[train], y[train], setup, rounds=60)
    assert cand.explain_units(big) > cand.explain_units(small) > 0
    assert cand.explain_units(members["linear"]) < cand.explain_units(small)
    assert cand.explain_units(members["catboost"]) > 0


def test_ties_go_to_the_model_cheaper_to_explain():
    deep, shallow, worse = _fitted("deep", 0.5000, 400), _fitted("shallow", 0.5004, 40), None
    worse = _fitted("worse", 0.52, 1)
    ranked = cand.rank([deep, worse, shallow])
    assert [f.candidate.name for f in ranked] == ["shallow", "deep", "worse"]
    # Outside the tolerance the lower loss wins however costly.
    clear = _fitted("clear", 0.49, 400)
    assert cand.rank([shallow, clear])[0] is clear


def test_a_blend_is_chosen_only_when_it_beats_the_winner_on_held_out_folds():
    rng = np.random.default_rng(3)
    n = 4000
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a + b)))).astype(int)
    # Two members each seeing one half of the signal: the blend is clearly better.
    first, second = _fitted("a", 0.6, 1, a), _fitted("b", 0.61, 1, b)
    choice = cand.choose_blend([first, second], y, seed=0)
    assert choice.is_blend and np.all(choice.weights > 0.5)
    # A near copy of the winner adds nothing: the winner alone is kept.
    copy = _fitted("copy", 0.6, 1, a + rng.normal(scale=1e-3, size=n))
    assert not cand.choose_blend([first, copy], y, seed=0).is_blend


def test_the_blend_partner_is_the_one_that_adds_most_not_the_runner_up():
    """Two near-identical tree models top a leaderboard; the partner that errs differently
    (ranked last alone) is the one the forward selection adds."""
    rng = np.random.default_rng(5)
    n = 4000
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a + b)))).astype(int)
    winner = _fitted("tree", 0.60, 40, a + 0.3 * b)
    twin = _fitted("tree_twin", 0.601, 40, a + 0.3 * b + rng.normal(scale=1e-3, size=n))
    other = _fitted("linear", 0.62, 1, b)
    choice = cand.choose_blend([winner, twin, other], y, seed=0)
    assert [f.candidate.name for f in choice.members] == ["tree", "linear"]
    assert np.all(choice.weights > 0.3)
    # The blend's held-out loss is what the choice reports, and it beats the winner's.
    raws = np.column_stack([winner.valid_raw, other.valid_raw])
    assert choice.valid_log_loss_calibrated == pytest.approx(cand.cross_validated_loss(raws, y, 0))
    single = cand.cross_validated_loss(winner.valid_raw[:, None], y, 0)
    assert choice.valid_log_loss_calibrated < single * (1 - cand.TIE_TOLERANCE)


def test_of_partners_tied_in_the_blend_the_one_cheaper_to_explain_joins():
    """Two tree partners blend equally well with the linear winner (one is a near copy of the
    other): the cheaper one joins, as ties go in rank(). A partner clearly better joins
    however costly."""
    rng = np.random.default_rng(6)
    n = 4000
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a + b)))).astype(int)
    winner = _fitted("linear", 0.60, 1, b)
    costly = _fitted("deep_tree", 0.61, 400, a)
    cheap = _fitted("shallow_tree", 0.612, 40, a + rng.normal(scale=0.02, size=n))
    choice = cand.choose_blend([winner, costly, cheap], y, seed=0)
    assert [f.candidate.name for f in choice.members] == ["linear", "shallow_tree"]
    weak = _fitted("shallow_tree", 0.65, 40, 0.3 * a + rng.normal(size=n))
    choice = cand.choose_blend([winner, costly, weak], y, seed=0)
    assert choice.members[1].candidate.name == "deep_tree"


def test_weights_fitted_on_validation_are_not_negative():
    rng = np.random.default_rng(4)
    a = rng.normal(size=3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-a))).astype(int)
    # The second score carries the signal upside down: unconstrained, it would enter negatively.
    scores = np.column_stack([a + rng.normal(size=3000), -a + rng.normal(size=3000)])
    weights, _ = cand.fit_weights(scores, y)
    assert weights[0] > 0.3 and weights[1] == 0.0


def test_a_scorer_pickled_with_a_bare_booster_still_loads(trained):
    """Scorers registered before the members carried ``propensity_booster``, a LightGBM booster
    trained on pandas categoricals: they load, score through it, and keep the old attribute."""
    scorer, holdout = trained.scorer, trained.holdout
    matrix = scorer.preprocessor.transform(holdout)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7, "min_data_in_leaf": 5},
        lgb.Dataset(matrix, won_labels(holdout)),
        num_boost_round=20,
    )
    state = {k: v for k, v in scorer.__dict__.items() if k != "propensity_model"}
    state["propensity_booster"] = booster
    old = pickle.loads(pickle.dumps(scorer))
    old.__dict__.clear()
    old.__setstate__(state)
    assert old.propensity_booster is booster
    expected = scorer.calibrator(booster.predict(matrix, raw_score=True))
    np.testing.assert_allclose(old.score(holdout)["propensity"], expected)


def _noisy_pair(n: int, seed: int):
    """Per-row losses of a cheap and a costly candidate on n validation rows: the costly one
    is better on average by 0.6 % of log loss, with row-to-row noise much larger than that."""
    rng = np.random.default_rng(seed)
    cheap = rng.exponential(0.5, size=n)
    noise = rng.normal(scale=0.15, size=n)
    costly = cheap + noise - noise.mean() - 0.006 * cheap.mean()
    return cheap, costly


def test_a_gain_within_one_standard_error_of_the_validation_rows_is_not_clear():
    """The same relative gain (0.6 % of log loss, above the fixed tolerance) is clear on
    20,000 validation rows, far beyond the paired standard error, and not on 150 rows, where
    the noise of the sample is larger than the gain."""
    for n, clear in ((150, False), (20_000, True)):
        cheap_rows, costly_rows = _noisy_pair(n, seed=1)
        gain = (cheap_rows.mean() - costly_rows.mean()) / cheap_rows.mean()
        assert gain == pytest.approx(0.006) and gain > cand.TIE_TOLERANCE
        assert cand.clearly_better(costly_rows.mean(), cheap_rows.mean()), n  # tolerance alone
        verdict = cand.clearly_better(
            costly_rows.mean(), cheap_rows.mean(), costly_rows, cheap_rows
        )
        assert verdict is clear, n


def test_the_margin_is_the_paired_standard_error_of_the_difference():
    rng = np.random.default_rng(2)
    reference = rng.exponential(0.5, size=400)
    # A constant improvement has no noise: any gain above the tolerance is clear ...
    assert cand.clearly_better(
        reference.mean() * 0.99, reference.mean(), reference * 0.99, reference
    )
    # ... while the same mean gain with noise per row is not, though the means are identical.
    noisy = reference * 0.99 + rng.normal(scale=0.3, size=400)
    noisy += reference.mean() * 0.99 - noisy.mean()
    assert not cand.clearly_better(noisy.mean(), reference.mean(), noisy, reference)
    se = np.std(reference - noisy, ddof=1) / np.sqrt(400)
    assert reference.mean() - noisy.mean() < se


def test_a_blend_within_the_noise_of_small_validation_rows_is_not_taken():
    """A partner with a little signal of its own lowers the held-out loss on average, but on
    a few hundred rows by less than the paired standard error: the winner stays alone; with
    many rows the same construction is a clear gain and the blend is taken."""
    for n, blended in ((300, False), (20_000, True)):
        rng = np.random.default_rng(7)
        a, b = rng.normal(size=n), rng.normal(size=n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(a + 0.25 * b)))).astype(int)
        winner = _fitted("tree", 0.6, 40, a)
        winner.valid_row_losses = cand.cross_validated_row_losses(a[:, None], y, 0)
        other = _fitted("linear", 0.65, 1, b)
        choice = cand.choose_blend([winner, other], y, seed=0)
        assert choice.is_blend is blended, n


def test_the_plain_logistic_regression_is_a_default_and_catboost_waits_for_a_budget():
    """See DEFAULT_CANDIDATES for why: the baseline itself is a candidate; CatBoost costs."""
    default = [c.name for c in cand.portfolio(None)]
    budgeted = [c.name for c in cand.portfolio(None, budget_s=30.0)]
    assert "linear_plain" in default and "catboost_depth6" not in default
    assert budgeted[: len(default)] == default
    assert budgeted.index("linear_plain") < budgeted.index("catboost_depth6")


@pytest.mark.parametrize("kind", ["linear", "linear_plain"])
def test_a_linear_record_alone_gets_the_bits_of_the_whole_batch(members, data, kind):
    """One record's terms come from remembered values, not 48 transforms, with the same bits."""
    X = data[2].copy()
    X[3, :] = np.nan  # every feature missing
    member = pickle.loads(pickle.dumps(members[kind]))
    whole = member.terms(X)
    calls = []
    for basis in member.bases_:
        transform = basis.transform

        def counted(values, transform=transform):
            calls.append(len(values))
            return transform(values)

        basis.transform = counted
    alone = np.vstack([member.terms(X[i : i + 1]) for i in range(40)])
    np.testing.assert_array_equal(alone, whole[:40])  # bit for bit, NaN rows included
    first = len(calls)
    again = np.vstack([member.terms(X[i : i + 1]) for i in range(40)])
    np.testing.assert_array_equal(again, whole[:40])
    assert first > 0 and len(calls) == first  # the second pass transformed nothing
    # The remembered values are not part of the pickled model.
    for basis in member.bases_:
        del basis.transform
    assert member.__dict__["_remembered"][0]
    assert "_remembered" not in pickle.loads(pickle.dumps(member)).__dict__


def test_candidates_are_compared_on_cross_fitted_scores_when_validation_rows_are_few(members, data):
    """Each candidate's figures come from its fold models (its rounds fixed) scoring rows
    they did not see; the chosen model's cross-fitted scores are what calibration takes."""
    from abm_ml.modeling.refit import cross_fit_folds

    _, _, X, y, train, valid, setup = data
    assert cand.needs_cross_fit(y[valid])  # the small export: a few hundred validation rows
    assert not cand.needs_cross_fit(np.r_[np.ones(1000, int), np.zeros(3000, int)])
    ranked = cand.search(
        X,
        y,
        train,
        valid,
        setup,
        budget_s=None,
        portfolio=cand.portfolio(("linear_splines", "lightgbm_shallow")),
    )
    rows = np.concatenate([train, valid])
    folds = cross_fit_folds(y[rows], rows.astype(str), seed=0)
    crossed = cand.cross_fit(ranked, X, y, rows, folds, setup)
    assert {f.candidate.name for f in crossed} == {"linear_splines", "lightgbm_shallow"}
    for f in crossed:
        assert f.cross_fitted and len(f.valid_raw) == len(rows)
        fit_part, score_part = folds[1]
        fold_model, _ = f.candidate.fit(
            X[rows[fit_part]], y[rows[fit_part]], setup, rounds=f.rounds
        )
        np.testing.assert_allclose(f.valid_raw[score_part], fold_model.raw(X[rows[score_part]]))
        assert f.valid_log_loss_calibrated == pytest.approx(
            cand.cross_validated_loss(f.valid_raw[:, None], y[rows], setup.config.seed)
        )
        assert f.member is next(r.member for r in ranked if r.candidate == f.candidate)
    choice = cand.choose_blend(crossed, y[rows], seed=0)
    blend = cand.Choice(crossed, np.array([0.7, 0.4]), -0.1, 0.5)
    np.testing.assert_allclose(
        blend.cross_fitted_raw, -0.1 + 0.7 * crossed[0].valid_raw + 0.4 * crossed[1].valid_raw
    )
    if not choice.is_blend:
        np.testing.assert_allclose(choice.cross_fitted_raw, choice.members[0].valid_raw)
    # Chosen on the validation rows alone: there are no cross-fitted scores to calibrate on.
    assert cand.Choice(ranked[:1], np.ones(1), 0.0, 0.5).cross_fitted_raw is None


def test_the_spline_columns_are_computed_as_scikit_learn_computes_them(members, data):
    """A linear member's numbers skip scikit-learn's per-call checks (half a millisecond per
    new value of a served record); the columns must be the same bits as ``transform``'s,
    inside the knots, on them, beyond them and for a missing value."""
    from abm_ml.modeling.members import _spline_block

    member = members["linear"]
    checked = 0
    for j, basis in enumerate(member.bases_):
        if j in member.categorical:
            continue
        column = data[2][:, j]
        finite = column[np.isfinite(column)]
        values = np.concatenate(
            [
                np.unique(finite),
                [np.nan, finite.min() - 1e6, finite.max() + 1e6, np.median(finite) + 1e-9],
                np.random.default_rng(j).uniform(finite.min(), finite.max(), 200),
            ]
        )
        block = _spline_block(basis, values)
        if block is None:  # a column of fewer than three values: imputed value, no splines
            continue
        np.testing.assert_array_equal(block, basis.transform(values.reshape(-1, 1)))
        checked += 1
    assert checked >= 1
    # The plain logistic regression's one slope is not a spline basis.
    plain = members["linear_plain"]
    assert all(_spline_block(b, np.array([1.0])) is None for b in plain.bases_)


def test_the_slope_columns_are_computed_as_scikit_learn_computes_them(members, data):
    """The plain logistic regression's numbers (and a spline member's columns of fewer than
    three values) skip scikit-learn's per-call checks too, with the same bits."""
    from abm_ml.modeling.members import _fast_block, _linear_basis, _slope_block

    checked = 0
    for member in (members["linear_plain"], members["linear"]):
        for j, basis in enumerate(member.bases_):
            if j in member.categorical:
                assert _fast_block(basis, np.array([0.0, 1.0])) is None
                continue
            column = data[2][:, j]
            finite = column[np.isfinite(column)]
            values = np.concatenate(
                [np.unique(finite), [np.nan, finite.min() - 1e6, finite.max() + 1e6, 0.0]]
            )
            expected = basis.transform(values.reshape(-1, 1))
            np.testing.assert_array_equal(_fast_block(basis, values), expected)
            checked += _slope_block(basis, values) is not None
    assert checked >= len(members["linear_plain"].bases_) - len(members["linear_plain"].categorical)
    # A column missing in every training row: its value column is imputed with 0.
    empty = np.full((50, 1), np.nan)

    fitted = _linear_basis(empty[:, 0]).fit(empty)
    values = np.array([np.nan, 3.0])
    np.testing.assert_array_equal(_fast_block(fitted, values), fitted.transform(values[:, None]))


def test_the_vocabulary_keeps_rare_categories_and_cuts_ties_by_value_not_row_order(monkeypatch):
    import pandas as pd

    from abm_ml.modeling import scorer
    from abm_ml.modeling.feature_info import FeatureInfo

    features = [FeatureInfo("page", "page", "categorical", "landing page")]
    # 300 pages seen once and one seen three times: every one is part of the vocabulary.
    pages = [f"p{i:03d}" for i in range(300)] + ["home"] * 3
    kept = Preprocessor(features).fit(pd.DataFrame({"page": pages})).categories_["page"]
    assert len(kept) == 301
    monkeypatch.setattr(scorer, "MAX_CATEGORIES", 3)
    frame = pd.DataFrame({"page": pages})
    cuts = {
        tuple(
            Preprocessor(features)
            .fit(frame.sample(frac=1.0, random_state=seed))
            .categories_["page"]
        )
        for seed in range(5)
    }
    assert cuts == {("home", "p000", "p001")}


def test_a_budget_is_charged_for_the_cross_fitted_comparison_that_follows(data, monkeypatch):
    """On a clock that moves one second per reading, a 10 s budget fits four candidates
    when the search is all there is, and one when each fit will be refitted on three folds."""
    _, _, X, y, train, valid, setup = data
    names = ("linear_splines", "linear_strong_l2", "linear_plain", "lightgbm_shallow", "lightgbm")

    def fitted(charge: float) -> list[str]:
        ticks = iter(range(10_000))
        monkeypatch.setattr(cand.time, "perf_counter", lambda: float(next(ticks)))
        ranked = cand.search(
            X, y, train, valid, setup, budget_s=10.0, portfolio=cand.portfolio(names), charge=charge
        )
        return sorted(f.candidate.name for f in ranked)

    in_order = [c.name for c in cand.portfolio(names)]
    assert fitted(1.0) == sorted(in_order[:4])
    assert fitted(4.0) == in_order[:1]
