"""The fast internals of scoring give exactly what the plain LightGBM and Python calls give."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from abm_ml.modeling import reasons
from abm_ml.modeling.feature_info import FeatureInfo
from abm_ml.modeling.single_row import SingleRowPredictor
from abm_ml.testing import make_crm_export


@pytest.fixture(scope="module")
def matrix(trained) -> np.ndarray:
    scorer = trained.scorer
    frame = scorer._canonical(make_crm_export(200, seed=3))
    return scorer.preprocessor.matrix(scorer.preprocessor.raw_values(frame))


@pytest.mark.parametrize(
    ("kind", "options"),
    [("normal", {}), ("raw", {"raw_score": True}), ("contrib", {"pred_contrib": True})],
)
def test_single_row_predictions_equal_booster_predict(trained, matrix, kind, options):
    boosters = [trained.scorer.propensity_booster, *trained.scorer.velocity.boosters.values()]
    for booster in boosters:
        predict = SingleRowPredictor(booster, kind, matrix.shape[1])
        expected = np.asarray(booster.predict(matrix, **options)).reshape(len(matrix), -1)
        got = np.vstack([predict(row) for row in matrix])
        np.testing.assert_array_equal(got, expected)


def test_single_row_results_are_not_overwritten_by_the_next_call(trained, matrix):
    """Each thread predicts into one buffer: a result handed out must be a copy of it."""
    predict = SingleRowPredictor(trained.scorer.propensity_booster, "contrib", matrix.shape[1])
    first = predict(matrix[0])
    kept = first.copy()
    second = predict(matrix[1])
    np.testing.assert_array_equal(first, kept)
    assert not np.array_equal(first, second)


def test_one_row_velocity_quantiles_equal_the_batch_ones(trained, matrix):
    velocity = trained.scorer.velocity
    batch = velocity.predict_log(matrix)
    for i in range(len(matrix)):
        one = velocity.predict_log(matrix[i : i + 1])
        for q in ("p10", "p50", "p90"):
            assert one[q].shape == (1,) and one[q].dtype == np.float64
            assert one[q][0] == batch[q][i], (q, i)
    assert (batch["p10"] <= batch["p50"]).all() and (batch["p50"] <= batch["p90"]).all()


def test_single_row_predictor_refuses_a_row_of_the_wrong_width(trained, matrix):
    predict = SingleRowPredictor(trained.scorer.propensity_booster, "raw", matrix.shape[1])
    with pytest.raises(ValueError, match="expected"):
        predict(matrix[0, :-1])


def test_single_row_predictions_are_right_from_many_threads(trained, matrix):
    """Each thread has its own LightGBM handle: concurrent rows do not mix their buffers."""
    scorer = trained.scorer
    expected = scorer.propensity_booster.predict(matrix, pred_contrib=True)

    def contributions(i: int) -> np.ndarray:
        c = scorer._propensity_contributions(matrix[i : i + 1])
        return np.append(c.values[0], c.base[0])

    with ThreadPoolExecutor(max_workers=4) as pool:
        got = np.vstack(list(pool.map(contributions, range(len(matrix)))))
    np.testing.assert_array_equal(got, expected)


def test_a_scorer_used_one_record_at_a_time_pickles_without_its_handles(trained):
    scorer = trained.scorer
    record = {"Industry": "software", "Account": "x", "Employees": 300}
    before = scorer.score_record(record)
    assert "_single_row" in scorer.__dict__ and "_single_row" in scorer.velocity.__dict__
    loaded = pickle.loads(pickle.dumps(scorer))
    assert "_single_row" not in loaded.__dict__
    assert "_single_row" not in loaded.velocity.__dict__
    assert loaded.score_record(record) == before


def test_top_indices_break_ties_by_column_on_the_sorted_and_argmax_paths():
    rng = np.random.default_rng(0)
    values = rng.integers(-3, 4, size=(500, 40)).astype(float)  # many exact ties
    for largest in (True, False):
        keyed = -values if largest else values
        expected = np.argsort(keyed, axis=1, kind="stable")[:, :3]
        np.testing.assert_array_equal(reasons.top_indices(values, 3, largest=largest), expected)
        np.testing.assert_array_equal(
            reasons.top_indices(values[:5], 3, largest=largest), expected[:5]
        )


def _one_by_one(feature: FeatureInfo, values: list) -> tuple[list, list]:
    return [reasons.display_value(v) for v in values], [
        reasons.reason_text(feature, v) for v in values
    ]


@pytest.mark.parametrize(
    "values",
    [
        [0.0, -0.0, 1.0, np.nan, 2.5, 1234.0] * 30,
        ["EMEA", None, "APAC", np.nan, "EMEA", "5"] * 30,
        [1, 1.0, True, None, "1", 0.0, -0.0] * 30,
    ],
)
def test_distinct_values_are_worded_like_each_value_alone(values):
    """Many rows word each distinct value once; -0.0, 0.0, 1, 1.0 and True still read apart."""
    feature = FeatureInfo("x", "x", "numeric", "web visits", template="{value} visits")
    column = pd.Series(values) if not isinstance(values[0], int) else values
    rows = np.arange(len(values))
    shown, text = reasons._word_values(feature, column, rows)
    expected_shown, expected_text = _one_by_one(feature, list(np.asarray(column, dtype=object)))
    assert text.tolist() == expected_text
    # repr tells -0.0 from 0.0 and 1 from 1.0 and True.
    assert [repr(v) for v in shown.tolist()] == [repr(v) for v in expected_shown]
    assert len(set(text.tolist())) > 3


@pytest.mark.parametrize(("k_up", "k_down"), [(3, 1), (0, 2), (60, 60), (5, 0)])
def test_one_row_reasons_equal_the_array_path_on_each_row(k_up, k_down):
    """The plain-Python one-row path picks, orders and words the reasons as the array path."""
    rng = np.random.default_rng(1)
    n, m = 300, 40
    # Many exact ties and zeros (which are no reason), mixed with ordinary values.
    values = rng.integers(-3, 4, size=(n, m)).astype(float)
    values[: n // 2] += rng.normal(0, 0.01, size=(n // 2, m)).round(3)
    features = [
        FeatureInfo(f"f{j}", f"F{j}", "numeric", f"signal {j}", template="{value} hits")
        for j in range(m)
    ]
    raw_values = {f.name: rng.choice([1.0, 2.5, np.nan, 1234.0], size=n).tolist() for f in features}
    contrib = reasons.Contributions(
        values=values, base=rng.normal(size=n), feature_names=[f.name for f in features]
    )

    def effect(with_c: np.ndarray, without_c: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-with_c)) - 1 / (1 + np.exp(-without_c))

    options = {"k_up": k_up, "k_down": k_down, "effect": effect, "effect_unit": "points"}
    batch = reasons.reasons(contrib, raw_values, features, **options)
    for i in range(n):
        one = reasons.Contributions(
            values[i : i + 1], contrib.base[i : i + 1], contrib.feature_names
        )
        row_values = {name: [column[i]] for name, column in raw_values.items()}
        assert reasons.reasons(one, row_values, features, **options) == [batch[i]], i
    assert sum(len(r["up"]) + len(r["down"]) for r in batch) > n


def test_one_value_calibration_equals_the_array_calibration_bit_for_bit():
    """Scalar arithmetic plus numpy's own exp gives the array path's every bit (math.exp does not)."""
    from sklearn.isotonic import IsotonicRegression

    from abm_ml.modeling.scorer import Calibrator

    rng = np.random.default_rng(4)
    raw = np.concatenate(
        [
            rng.normal(0, 3, 20_000),
            [0.0, -0.0, 35.0, -35.0, 35.5, -40.0, 1e300, -1e300, np.inf, -np.inf, np.nan],
        ]
    )
    iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4)
    iso.fit(raw[:500], (raw[:500] + rng.normal(0, 1, 500) > 0).astype(int))
    for calibrator in (
        Calibrator("sigmoid", coef=0.8317, intercept=-1.2093),
        Calibrator("none"),
        Calibrator("isotonic", isotonic=iso),
    ):
        values = raw if calibrator.method != "isotonic" else raw[np.isfinite(raw)]  # as sklearn
        expected = calibrator(values)
        one = np.array([calibrator.one(x) for x in values.tolist()])
        np.testing.assert_array_equal(one, expected)
        # A 1-element array takes the scalar path: the same number as inside a big array.
        np.testing.assert_array_equal(
            np.concatenate([calibrator(values[i : i + 1]) for i in range(len(values))]), expected
        )
        assert calibrator(values[:1]).shape == (1,) and calibrator(values[:1]).dtype == np.float64
