"""Benchmark abm-ml's propensity and velocity models against baselines and FLAML AutoML.

For each shared dataset spec (skipped with a note when its files are absent) and a synthetic
world, one :func:`abm_ml.train.train_models` run gives abm-ml's calibrated LightGBM, the
logistic regression and the rule-based fit score. On the same fit rows (train + validation + the rows held
out only for validation's sake, ``Split.fit_rows``) and the same preprocessing (``scorer.preprocessor.transform``) the benchmark then fits

* ``lightgbm_default``: ``lightgbm.LGBMClassifier()`` with its defaults;
* ``catboost_default``: ``catboost.CatBoostClassifier()`` with its defaults (categories declared);
* ``flaml``: FLAML AutoML with a fixed time budget, metric ROC AUC, estimators
  lgbm / rf / extra_tree / lrl1 (no xgboost), fixed seed;
* ``flaml_same_budget``: the same FLAML with abm-ml's own propensity training time as budget;

and scores every contender on the SAME test rows (``result.split.test``) with
:func:`abm_ml.metrics.propensity_metrics` (95 % bootstrap intervals). abm-ml "matches" a
contender on a metric when the two intervals overlap, "beats" it when its interval lies
entirely on the better side, and is "behind" otherwise; wins by point estimate are counted too.
Because every contender is scored on the same rows, the difference is also bootstrapped
**paired** (both models on the same resamples, :func:`paired_differences`): the overlap of two
separate intervals is a conservative test, the paired interval of the difference the usual one.

Usage::

    python bench/bench_quality.py                    # every dataset, FLAML 60 s each
    python bench/bench_quality.py --quick            # olist + synthetic, FLAML 10 s, 50 resamples
    python bench/bench_quality.py --datasets olist-marketing-funnel --flaml-budget 30
    python bench/bench_quality.py --only-abm         # abm-ml and its baselines only (iterating)

Writes ``bench/results/quality.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from common import (
    SHARED_SPECS,
    SYNTH_SPEC,
    Stopwatch,
    base_report,
    fmt_metric,
    fmt_seconds,
    lightgbm_threads,
    load_shared_dataset,
    md_table,
    quiet_warnings,
    shared_dataset_missing,
    synthetic_dataset,
    threads_label,
    write_result,
)

from abm_ml.modeling.metrics import direction, is_better

NAME = "quality"
FLAML_ESTIMATORS = ["lgbm", "rf", "extra_tree", "lrl1"]
METRICS = ("roc_auc", "pr_auc", "brier", "lift_top_decile")
METRIC_LABELS = {
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "brier": "Brier",
    "lift_top_decile": "top-decile lift",
}
CONTENDERS = (
    "abm-ml",
    "logistic_regression",
    "rule_based_fit",
    "lightgbm_default",
    "catboost_default",
    "flaml",
    "flaml_same_budget",
)
CONTENDER_LABELS = {
    "abm-ml": "abm-ml (chosen candidate, calibrated)",
    "logistic_regression": "logistic regression",
    "rule_based_fit": "rule-based fit score",
    "lightgbm_default": "LGBMClassifier() defaults",
    "catboost_default": "CatBoostClassifier() defaults",
    "flaml": "FLAML AutoML",
    "flaml_same_budget": "FLAML AutoML, abm-ml's training time as budget",
}
COMPARED = (
    "flaml",
    "flaml_same_budget",
    "catboost_default",
    "lightgbm_default",
    "logistic_regression",
)
"""Contenders abm-ml is compared with, metric by metric."""
QUICK_DATASETS = ("olist-marketing-funnel", SYNTH_SPEC)


def verdict(ours: dict, theirs: dict, metric: str) -> str:
    """'matches' when the 95 % intervals overlap, else 'beats' or 'behind' for abm-ml."""
    if not ours or not theirs or ours.get("value") is None or theirs.get("value") is None:
        return "n/a"
    lo_a, hi_a = ours.get("low"), ours.get("high")
    lo_b, hi_b = theirs.get("low"), theirs.get("high")
    if None in (lo_a, hi_a, lo_b, hi_b):  # no intervals (n_boot=0): compare point values
        better = is_better(metric, ours["value"], theirs["value"])
        return "beats" if better else "behind"
    if lo_a <= hi_b and lo_b <= hi_a:
        return "matches"
    above = lo_a > hi_b
    better = above if direction(metric) > 0 else not above
    return "beats" if better else "behind"


def point_verdict(ours: dict, theirs: dict, metric: str) -> str:
    """'better', 'worse' or 'equal' for abm-ml's point estimate (at the printed precision)."""
    if not ours or not theirs or ours.get("value") is None or theirs.get("value") is None:
        return "n/a"
    a, b = round(ours["value"], 3), round(theirs["value"], 3)
    if a == b:
        return "equal"
    return "better" if is_better(metric, a, b) else "worse"


PAIRED_METRICS = ("roc_auc", "brier")


def paired_differences(
    y: np.ndarray, ours: np.ndarray, theirs: np.ndarray, *, n_boot: int, seed: int
) -> dict[str, dict]:
    """abm-ml minus a contender on the same bootstrap resamples of the test rows.

    Returns:
        Per metric of :data:`PAIRED_METRICS` the difference oriented so that positive means
        abm-ml is better (ROC AUC ours - theirs, Brier theirs - ours), with its 95 % interval
        and a verdict: ``beats`` when the interval is above 0, ``behind`` when below,
        ``matches`` otherwise.
    """
    from abm_ml.modeling.bootstrap import bootstrap, mean_kernel, roc_auc_kernel

    auc_ours, auc_theirs = roc_auc_kernel(y, ours), roc_auc_kernel(y, theirs)
    kernels = {
        "roc_auc": lambda counts: auc_ours(counts) - auc_theirs(counts),
        "brier": mean_kernel((theirs - y) ** 2 - (ours - y) ** 2),
    }
    out = {}
    for metric, diff in bootstrap(kernels, len(y), n_boot, seed).items():
        low, high = diff.low, diff.high
        if not (np.isfinite(low) and np.isfinite(high)):
            verdict_ = "n/a"
        else:
            verdict_ = "beats" if low > 0 else "behind" if high < 0 else "matches"
        out[metric] = {**diff.to_dict(), "verdict": verdict_}
    return out


def _velocity_verdict(ours: dict, baseline: dict) -> str:
    """abm-ml's P50 vs the median-days baseline on MAE.

    ``mae_improvement`` (1 - MAE / baseline MAE) is bootstrapped on the same resamples for both
    forecasts, so its interval is the paired comparison: above 0 = beats, below 0 = behind.
    Without it, fall back to the overlap of the two MAE intervals.
    """
    gain = ours.get("mae_improvement")
    if gain and gain.get("low") is not None and gain.get("high") is not None:
        if gain["low"] > 0:
            return "beats"
        if gain["high"] < 0:
            return "behind"
        return "matches"
    return verdict(ours.get("mae_days"), baseline.get("mae_days"), "brier")


def _import_automl():
    """``flaml.AutoML``, even without xgboost installed.

    FLAML 2.x imports ``xgboost.__version__`` at module level in ``flaml.automl.model`` although
    xgboost is only needed for the xgboost estimators, which this benchmark never selects. When
    xgboost is absent, a placeholder module (no estimators, only a version string) lets the
    import through; FLAML's own ``try: from xgboost.callback import ...`` still fails cleanly.
    """
    import importlib.util
    import types

    if "xgboost" not in sys.modules and importlib.util.find_spec("xgboost") is None:

        class _Absent:
            """Placeholder for an xgboost estimator (xgboost is not installed)."""

            def __init__(self, *args: object, **kwargs: object) -> None:
                raise ImportError("xgboost is not installed")

            fit = predict = predict_proba = __init__

        stub = types.ModuleType("xgboost")
        stub.__version__ = "0.0.0"  # never used: no xgboost estimator is in FLAML_ESTIMATORS
        stub.XGBClassifier = type("XGBClassifier", (_Absent,), {"__doc__": _Absent.__doc__})
        stub.XGBRegressor = type("XGBRegressor", (_Absent,), {"__doc__": _Absent.__doc__})
        sys.modules["xgboost"] = stub
    from flaml.automl.automl import AutoML

    return AutoML


def _fit_flaml(x_fit, y_fit, *, budget: float, seed: int) -> tuple[object, dict]:
    AutoML = _import_automl()

    automl = AutoML()
    automl.fit(
        X_train=x_fit,
        y_train=y_fit,
        task="classification",
        metric="roc_auc",
        time_budget=budget,
        estimator_list=list(FLAML_ESTIMATORS),
        seed=seed,
        verbose=0,
        log_file_name="",
    )
    info = {
        "best_estimator": automl.best_estimator,
        "best_config": automl.best_config,
        "best_validation_roc_auc": 1.0 - float(automl.best_loss)
        if automl.best_loss is not None
        else None,
        "trials_per_estimator": {
            k: int(v) for k, v in (getattr(automl, "_iter_per_learner", None) or {}).items()
        },
        "trials": int(sum((getattr(automl, "_iter_per_learner", None) or {}).values())) or None,
        "time_budget_s": budget,
        "estimator_list": list(FLAML_ESTIMATORS),
    }
    return automl, info


def evaluate(name: str, dataset, args: argparse.Namespace) -> dict:
    """Train abm-ml and the contenders on one dataset; metrics on the same test rows."""
    import lightgbm as lgb

    from abm_ml.modeling import metrics as m
    from abm_ml.modeling.baselines import as_logistic_input, logistic_baseline
    from abm_ml.modeling.train import MODEL_NAME, TrainConfig, train_models
    from abm_ml.schema import AMOUNT, OUTCOME, WON

    config = TrainConfig(seed=args.seed, n_boot=args.n_boot)
    threads = int(getattr(config, "num_threads", 0) or 0)
    print(f"[{name}] training abm-ml ({len(dataset.frame):,} rows)...", flush=True)
    with Stopwatch() as sw_total:
        result = train_models(dataset, config)
    frame = dataset.frame
    split = result.split
    fit_rows = split.fit_rows
    test = split.test
    y = (frame[OUTCOME].to_numpy() == WON).astype(int)
    y_test = y[test]
    # The contenders must be scored on exactly the rows abm-ml was scored on.
    assert np.array_equal(result.holdout_predictions["won"].to_numpy(), y_test)
    amounts = frame[AMOUNT].to_numpy(dtype=float)
    test_amounts = amounts[test] if np.isfinite(amounts[test]).all() else None

    def score(p: np.ndarray) -> dict:
        return m.propensity_metrics(
            y_test,
            np.clip(p, 0.0, 1.0),
            k=config.capacity,
            n_boot=config.n_boot,
            seed=config.seed,
            amounts=test_amounts,
        )

    propensity = {k: v for k, v in result.propensity.items()}
    holdout = result.holdout_predictions
    # Test-row probabilities of every contender, for the paired differences.
    test_p = {c: holdout[c].to_numpy(dtype=float) for c in (MODEL_NAME, "logistic_regression")}
    train_s: dict[str, float] = {
        "abm-ml": float(result.timings.get("propensity_fit_s", np.nan)),
    }

    # Logistic regression: train_models does not time it, so time the identical refit.
    features = result.scorer.features
    with Stopwatch() as sw:
        logistic_baseline(features, seed=config.seed).fit(
            as_logistic_input(frame.iloc[fit_rows], features), y[fit_rows]
        )
    train_s["logistic_regression"] = sw.seconds

    matrix = result.scorer.preprocessor.transform(frame)
    x_fit, y_fit, x_test = matrix.iloc[fit_rows], y[fit_rows], matrix.iloc[test]

    if args.only_abm:
        return _result(result, config, propensity, test_p, y_test, train_s, {}, sw_total)

    print(f"[{name}] LGBMClassifier() defaults...", flush=True)
    with Stopwatch() as sw:
        default = lgb.LGBMClassifier(verbose=-1, n_jobs=threads or None).fit(x_fit, y_fit)
    train_s["lightgbm_default"] = sw.seconds
    test_p["lightgbm_default"] = default.predict_proba(x_test)[:, 1]
    propensity["lightgbm_default"] = score(test_p["lightgbm_default"])

    print(f"[{name}] CatBoostClassifier() defaults...", flush=True)
    from catboost import CatBoostClassifier, Pool

    from abm_ml.modeling.members import catboost_frame

    X = result.scorer.preprocessor.matrix(result.scorer.preprocessor.raw_values(frame))
    categorical = [j for j, f in enumerate(features) if f.type == "categorical"]

    def pool(rows, label=None):
        return Pool(catboost_frame(X[rows], categorical), label, cat_features=categorical)

    with Stopwatch() as sw:
        catboost = CatBoostClassifier(
            verbose=False,
            allow_writing_files=False,
            random_seed=args.seed,
            thread_count=threads or -1,
        ).fit(pool(fit_rows, y_fit))
    train_s["catboost_default"] = sw.seconds
    test_p["catboost_default"] = catboost.predict_proba(pool(test))[:, 1]
    propensity["catboost_default"] = score(test_p["catboost_default"])

    flaml_info: dict = {}
    budgets = {"flaml": args.flaml_budget}
    if args.flaml_same_budget:
        budgets["flaml_same_budget"] = max(1.0, round(train_s["abm-ml"], 1))
    for contender, budget in budgets.items():
        if budget <= 0:
            continue
        print(f"[{name}] FLAML AutoML ({budget:g} s budget)...", flush=True)
        try:
            with Stopwatch() as sw:
                automl, info = _fit_flaml(x_fit, y_fit, budget=budget, seed=args.seed)
            train_s[contender] = sw.seconds
            test_p[contender] = np.asarray(automl.predict_proba(x_test))[:, 1]
            propensity[contender] = score(test_p[contender])
        except Exception as error:  # noqa: BLE001 - reported, the other contenders still count
            info = {"error": f"{type(error).__name__}: {error}"}
            print(f"[{name}] FLAML failed: {info['error']}", flush=True)
        flaml_info[contender] = info
    return _result(result, config, propensity, test_p, y_test, train_s, flaml_info, sw_total)


def _result(result, config, propensity, test_p, y_test, train_s, flaml_info, sw_total) -> dict:
    """The dataset's entry of the report: metrics, verdicts (overlap, paired, point)."""
    from abm_ml.data.leakage import refused
    from abm_ml.modeling.train import MODEL_NAME

    frame, split = result.dataset.frame, result.split
    features = result.scorer.features
    threads = int(getattr(config, "num_threads", 0) or 0)
    as_dicts = {
        model: {k: v.to_dict() for k, v in metrics.items()} for model, metrics in propensity.items()
    }
    ours = as_dicts[MODEL_NAME]
    verdicts = {
        other: {
            metric: verdict(ours.get(metric), as_dicts[other].get(metric), metric)
            for metric in METRICS
        }
        for other in COMPARED
        if other in as_dicts
    }
    point_verdicts = {
        other: {
            metric: point_verdict(ours.get(metric), as_dicts[other].get(metric), metric)
            for metric in METRICS
        }
        for other in COMPARED
        if other in as_dicts
    }
    paired = {
        other: paired_differences(
            y_test,
            np.clip(test_p[MODEL_NAME], 0.0, 1.0),
            np.clip(test_p[other], 0.0, 1.0),
            n_boot=config.n_boot,
            seed=config.seed,
        )
        for other in COMPARED
        if other in test_p
    }
    velocity = {
        model: {k: v.to_dict() for k, v in metrics.items()}
        for model, metrics in result.velocity.items()
    }
    velocity_verdict = None
    if MODEL_NAME in velocity and "median_days_baseline" in velocity:
        velocity_verdict = _velocity_verdict(velocity[MODEL_NAME], velocity["median_days_baseline"])
    return {
        "status": "ok",
        "rows": len(frame),
        "split": split.describe(),
        "n_features": len(features),
        "features_refused_by_leakage_guard": sorted(refused(result.leak_findings)),
        "calibration": result.scorer.calibrator.method,
        "calibration_losses": dict(result.calibration_choice),
        "lightgbm_threads": threads,
        "best_iterations": result.best_iterations,
        "no_better_than_chance": bool(result.no_better_than_chance),
        "propensity": as_dicts,
        "train_seconds": train_s,
        "abm_ml_timings": dict(result.timings),
        "abm_ml_train_models_seconds": sw_total.seconds,
        "flaml": flaml_info.get("flaml", {}),
        "flaml_same_budget": flaml_info.get("flaml_same_budget", {}),
        "verdicts": verdicts,
        "point_verdicts": point_verdicts,
        "paired_differences": paired,
        "propensity_choice": result.propensity_choice,
        "leaderboard": result.leaderboard,
        "velocity": velocity,
        "velocity_extra": dict(result.velocity_extra),
        "velocity_verdict_mae_vs_median": velocity_verdict,
    }


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _summary_rows(datasets: dict) -> list[list[str]]:
    rows = []
    for name, res in datasets.items():
        if res.get("status") != "ok" or "flaml" not in res["propensity"]:
            continue
        prop = res["propensity"]
        vs = res["verdicts"].get("flaml", {})
        row = [name]
        for metric in METRICS:
            ours = fmt_metric(prop["abm-ml"].get(metric))
            theirs = fmt_metric(prop.get("flaml", {}).get(metric)) if "flaml" in prop else "n/a"
            row.append(f"{ours} vs {theirs}: **{vs.get(metric, 'n/a')}**")
        rows.append(row)
    return rows


TABLE_CONTENDERS = (
    "abm-ml",
    "logistic_regression",
    "lightgbm_default",
    "catboost_default",
    "flaml",
    "flaml_same_budget",
)
SHORT_LABELS = {
    "abm-ml": "abm-ml",
    "logistic_regression": "LR",
    "lightgbm_default": "LightGBM default",
    "catboost_default": "CatBoost default",
    "flaml": "FLAML 60 s",
    "flaml_same_budget": "FLAML same budget",
}


def _quality_table(datasets: dict) -> list[str]:
    """ROC AUC and Brier per dataset and contender (point estimates), and the win counts."""
    ok = {name: res for name, res in datasets.items() if res.get("status") == "ok"}
    rows = []
    for name, res in ok.items():
        prop = res["propensity"]
        for metric in ("roc_auc", "brier"):
            rows.append(
                [
                    f"{name} {METRIC_LABELS[metric]}",
                    *[
                        fmt_metric(prop[c].get(metric)) if c in prop else "-"
                        for c in TABLE_CONTENDERS
                    ],
                ]
            )
    if not rows:
        return []
    counts = []
    for other in COMPARED:
        tally = {"better": 0, "equal": 0, "worse": 0, "beats": 0, "matches": 0, "behind": 0}
        paired = {"beats": 0, "matches": 0, "behind": 0}
        for res in ok.values():
            for metric in ("roc_auc", "brier"):
                for table in ("point_verdicts", "verdicts"):
                    v = res.get(table, {}).get(other, {}).get(metric)
                    if v in tally:
                        tally[v] += 1
                v = res.get("paired_differences", {}).get(other, {}).get(metric, {}).get("verdict")
                if v in paired:
                    paired[v] += 1
        if not any(other in res.get("propensity", {}) for res in ok.values()):
            continue
        counts.append(
            [
                SHORT_LABELS[other],
                f"{tally['better']} / {tally['equal']} / {tally['worse']}",
                f"{tally['beats']} / {tally['matches']} / {tally['behind']}",
                f"{paired['beats']} / {paired['matches']} / {paired['behind']}",
            ]
        )
    return [
        "\n**ROC AUC and Brier on the same test rows** (point estimates)\n",
        md_table(["dataset, metric", *[SHORT_LABELS[c] for c in TABLE_CONTENDERS]], rows),
        (
            "\n**abm-ml vs each contender over ROC AUC and Brier**: by point estimate "
            "(better / equal / worse at 3 decimals), by overlap of the two 95 % intervals and by "
            "the paired 95 % interval of the difference (beats / matches / behind)\n"
        ),
        md_table(["contender", "point estimate", "interval overlap", "paired difference"], counts),
        *_paired_table(ok),
    ]


def _paired_table(ok: dict) -> list[str]:
    """abm-ml minus LR (the simplest contender) per dataset, paired on the same resamples."""
    rows = []
    for name, res in ok.items():
        diff = res.get("paired_differences", {}).get("logistic_regression")
        if not diff:
            continue
        rows.append(
            [name]
            + [
                f"{fmt_metric(diff[metric])}: **{diff[metric]['verdict']}**"
                for metric in PAIRED_METRICS
            ]
        )
    if not rows:
        return []
    return [
        (
            "\n**abm-ml vs logistic regression, paired** (ROC AUC ours - LR, Brier LR - ours: "
            "above 0 = abm-ml better)\n"
        ),
        md_table(["dataset", *[METRIC_LABELS[m] for m in PAIRED_METRICS]], rows),
    ]


def _leaderboard_lines(res: dict) -> list[str]:
    """abm-ml's own choice on its validation rows: the candidates and the calibration.

    These figures, not the test rows', decided the packaged model; they are shown so that a
    change of design can be judged on them without looking at the test rows."""
    board = res.get("leaderboard") or []
    if not board:
        return []
    rows = [
        [
            ("**" + row["candidate"] + "**") if row["chosen"] else row["candidate"],
            f"{row['valid_log_loss_calibrated']:.4f}",
            f"{row['valid_roc_auc']:.3f}",
            str(row["rounds"]),
            fmt_seconds(row["fit_s"]),
            f"{row['explain_ms_per_1k']:.0f}",
        ]
        for row in board
    ]
    losses = res.get("calibration_losses") or {}
    calibration = ", ".join(
        f"{name.removeprefix('calibration_cv_log_loss_')} {value:.4f}"
        for name, value in sorted(losses.items())
    )
    where = (
        "on cross-fitted scores of the fit rows (the validation rows were too few to "
        "tell candidates apart)"
        if board[0].get("cross_fitted")
        else "on the validation rows"
    )
    return [
        (
            f"\nCandidates {where} (held-out log loss after a cross-validated "
            "Platt scaling; the chosen one in bold):\n"
        ),
        md_table(
            [
                "candidate",
                "log loss",
                "ROC AUC",
                "rounds",
                "fit",
                "explain ms / 1k rows",
            ],
            rows,
        ),
        f"\nCalibration, cross-fitted log loss: {calibration} (chosen: {res.get('calibration')})."
        if calibration
        else "",
    ]


def markdown(report: dict) -> str:
    """The quality section of docs/benchmarks.md."""
    cfg = report.get("config", {})
    out = []
    out.append(
        f"Every contender is scored on the same test rows of abm-ml's split with 95 % bootstrap "
        f"intervals ({cfg.get('n_boot')} resamples). LightGBM defaults and FLAML are fitted on abm-ml's "
        f"fit rows (train, validation and the rows held out only for validation's sake) with abm-ml's preprocessing; FLAML gets a {cfg.get('flaml_budget_s')} s "
        f"budget per dataset, metric ROC AUC, estimators {', '.join(cfg.get('flaml_estimators', []))}, "
        f"seed {cfg.get('seed')}. Verdict: **matches** = intervals overlap, **beats**/**behind** = "
        "abm-ml's interval is entirely better/worse (lower Brier is better). Train time for abm-ml is the "
        "propensity model (split, leakage guard, preprocessing, boosting with early stopping); "
        "FLAML's is its budget plus the final refit. abm-ml and the default LightGBM use abm-ml's LightGBM "
        f"threads ({threads_label(cfg.get('lightgbm_threads', 0))}, `ABM_ML_NUM_THREADS`); FLAML uses its own default (all cores)."
    )
    out.extend(_quality_table(report.get("datasets", {})))
    rows = _summary_rows(report.get("datasets", {}))
    if rows:
        out.append("\n**abm-ml vs FLAML AutoML** (abm-ml vs FLAML: verdict)\n")
        out.append(md_table(["dataset", *[METRIC_LABELS[m] for m in METRICS]], rows))
    for name, res in report.get("datasets", {}).items():
        out.append(f"\n#### {name}\n")
        if res.get("status") == "error":
            out.append(f"**Failed**: `{res.get('note')}` (see the benchmark log).")
            continue
        if res.get("status") != "ok":
            out.append(f"_Skipped: {res.get('note', res.get('status'))}_")
            continue
        split = res["split"]
        base = res["propensity"]["abm-ml"].get("base_rate", {}).get("value")
        out.append(
            f"{res['rows']:,} rows, {res['n_features']} features, {split.get('method')} split: "
            f"train {split.get('n_train', 0):,} / valid {split.get('n_valid', 0):,} / test {split.get('n_test', 0):,}"
            + (f", test win rate {base:.3f}" if base is not None else "")
            + f", calibration {res.get('calibration')}."
            + (
                " abm-ml reports this dataset as **no better than chance**."
                if res.get("no_better_than_chance")
                else ""
            )
            + "\n"
        )
        table = []
        for model in CONTENDERS:
            metrics = res["propensity"].get(model)
            if metrics is None:
                continue
            label = CONTENDER_LABELS[model]
            if model.startswith("flaml") and res.get(model, {}).get("best_estimator"):
                info = res[model]
                label += f" ({info.get('time_budget_s')} s; best: {info['best_estimator']}, {info.get('trials', '?')} trials)"
            if model == "abm-ml" and res.get("propensity_choice"):
                label += f": {res['propensity_choice']}"
            t = res["train_seconds"].get(model)
            table.append(
                [
                    label,
                    *[fmt_metric(metrics.get(m)) for m in METRICS],
                    fmt_seconds(t) if t is not None else "-",
                ]
            )
        out.append(md_table(["model", *[METRIC_LABELS[m] for m in METRICS], "train time"], table))
        out.extend(_leaderboard_lines(res))
        for model in ("flaml", "flaml_same_budget"):
            if res.get(model, {}).get("error"):
                out.append(f"\nFLAML failed: `{res[model]['error']}`")
        lines = []
        for other, label in (
            ("flaml", "FLAML"),
            ("flaml_same_budget", "FLAML (same budget)"),
            ("catboost_default", "CatBoost defaults"),
            ("lightgbm_default", "LightGBM defaults"),
            ("logistic_regression", "logistic regression"),
        ):
            v = res["verdicts"].get(other)
            if v:
                lines.append(
                    f"- vs {label}: " + ", ".join(f"{METRIC_LABELS[m]} {v[m]}" for m in METRICS)
                )
        if lines:
            out.append("\nabm-ml\n" + "\n".join(lines))
        vel = res.get("velocity") or {}
        if "abm-ml" in vel:
            out.append("\nDeal velocity (won deals in the test rows, days):\n")
            vrows = []
            for model, label in (
                ("abm-ml", "abm-ml P50 (quantile LightGBM)"),
                ("median_days_baseline", "median-days baseline"),
            ):
                metrics = vel.get(model, {})
                vrows.append(
                    [
                        label,
                        fmt_metric(metrics.get("mae_days"), 1),
                        fmt_metric(metrics.get("median_ape"), 3),
                        fmt_metric(metrics.get("coverage_p10_p90"), 3)
                        if "coverage_p10_p90" in metrics
                        else "-",
                    ]
                )
            out.append(
                md_table(
                    ["model", "MAE (days)", "median APE", "P10-P90 coverage (target 0.8)"], vrows
                )
            )
            gain = vel["abm-ml"].get("mae_improvement")
            out.append(
                f"\nabm-ml's MAE vs the median baseline: **{_velocity_verdict(vel['abm-ml'], vel.get('median_days_baseline', {}))}**"
                + (f" (paired MAE improvement {fmt_metric(gain)})." if gain else ".")
            )
        else:
            out.append("\nNo velocity model (too few won deals with a duration).")
    for note in report.get("notes", []):
        out.append(f"\n_{note}_")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="olist + synthetic only, FLAML 10 s, 50 resamples"
    )
    parser.add_argument(
        "--datasets", nargs="+", help=f"subset of: {', '.join((*SHARED_SPECS, SYNTH_SPEC))}"
    )
    parser.add_argument(
        "--flaml-budget",
        type=float,
        help="FLAML time budget per dataset in seconds (default 60; 10 with --quick; 0 skips FLAML)",
    )
    parser.add_argument(
        "--no-flaml-same-budget",
        dest="flaml_same_budget",
        action="store_false",
        help="skip FLAML with abm-ml's own training time as budget",
    )
    parser.add_argument(
        "--n-boot", type=int, help="bootstrap resamples (default 200; 50 with --quick)"
    )
    parser.add_argument(
        "--only-abm",
        action="store_true",
        help="abm-ml and its baselines only (no LightGBM/CatBoost defaults, no FLAML): they do "
        "not change while abm-ml's training does",
    )
    parser.add_argument("--synth-accounts", type=int, default=5000)
    parser.add_argument("--synth-seed", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when abm-ml fails on a dataset"
    )
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/quality.json)")
    args = parser.parse_args(argv)
    args.flaml_budget = (
        args.flaml_budget if args.flaml_budget is not None else (10.0 if args.quick else 60.0)
    )
    args.n_boot = args.n_boot if args.n_boot is not None else (50 if args.quick else 200)
    names = args.datasets or (list(QUICK_DATASETS) if args.quick else [*SHARED_SPECS, SYNTH_SPEC])
    quiet_warnings()

    report = base_report(NAME, quick=args.quick, argv=argv)
    report["config"] = {
        "flaml_budget_s": args.flaml_budget,
        "only_abm": args.only_abm,
        "flaml_estimators": FLAML_ESTIMATORS,
        "n_boot": args.n_boot,
        "seed": args.seed,
        "lightgbm_threads": lightgbm_threads(),
        "synthetic_accounts": args.synth_accounts,
        "synthetic_seed": args.synth_seed,
        "datasets": names,
    }
    report["notes"] = []
    if args.quick:
        report["notes"].append(
            "Quick mode: olist and synthetic only, FLAML 10 s, 50 bootstrap resamples."
        )
    report["datasets"] = {}
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        try:
            if name == SYNTH_SPEC:
                with synthetic_dataset(args.synth_accounts, seed=args.synth_seed) as dataset:
                    res = evaluate(f"{name} ({args.synth_accounts:,} accounts)", dataset, args)
                res["synthetic_accounts"] = args.synth_accounts
            else:
                missing = shared_dataset_missing(name)
                if missing:
                    print(f"[{name}] skipped: {missing}", flush=True)
                    report["datasets"][name] = {"status": "skipped", "note": missing}
                    write_result(NAME, report, args.out)
                    continue
                res = evaluate(name, load_shared_dataset(name), args)
        except Exception as error:  # noqa: BLE001 - one dataset failing must not hide the others
            traceback.print_exc()
            res = {"status": "error", "note": f"{type(error).__name__}: {error}"}
        res["seconds"] = time.perf_counter() - t0
        report["datasets"][name] = res
        report["seconds"] = time.perf_counter() - started
        write_result(NAME, report, args.out)  # partial results survive an interrupted run
    path = write_result(NAME, report, args.out)
    print(markdown(report))
    print(f"\nwrote {path}")
    failed = [name for name, r in report["datasets"].items() if r.get("status") == "error"]
    if failed:
        # Reported in the JSON and the Markdown; --strict makes it fail the run as well.
        print(f"abm-ml could not be trained on: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
