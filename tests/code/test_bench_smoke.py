"""Smoke test of the benchmarks: `bench/run_all.py --quick --only explain` end to end.

The benchmark trains a small model, streams 20k synthetic accounts through abm-ml and through
LightGBM alone, and must leave its JSON (with the expected keys) and a Markdown report. Results
go to a temporary folder, so neither bench/results/ nor docs/benchmarks.md is touched. No
timing is asserted: the figures are only checked to be present and sane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def _bench_module(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(BENCH))


def test_quality_verdict_uses_interval_overlap() -> None:
    verdict = _bench_module("bench_quality").verdict
    a = {"value": 0.80, "low": 0.78, "high": 0.82}
    assert verdict(a, {"value": 0.81, "low": 0.79, "high": 0.83}, "roc_auc") == "matches"
    assert verdict(a, {"value": 0.70, "low": 0.68, "high": 0.72}, "roc_auc") == "beats"
    assert verdict(a, {"value": 0.90, "low": 0.88, "high": 0.92}, "roc_auc") == "behind"
    # Lower Brier is better.
    assert (
        verdict(
            {"value": 0.10, "low": 0.09, "high": 0.11},
            {"value": 0.2, "low": 0.18, "high": 0.22},
            "brier",
        )
        == "beats"
    )
    assert verdict(a, None, "roc_auc") == "n/a"


def test_quality_paired_difference_sees_a_consistent_gain_that_overlapping_intervals_hide():
    """The same rows, a second model slightly but consistently better: the two separate ROC AUC
    intervals overlap, the paired interval of the difference does not."""
    bench = _bench_module("bench_quality")
    from abm_ml.modeling.metrics import propensity_metrics

    rng = np.random.default_rng(0)
    n = 3000
    signal = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-signal))).astype(int)
    weak = 1 / (1 + np.exp(-(signal + rng.normal(scale=1.2, size=n))))
    strong = 1 / (1 + np.exp(-(signal + rng.normal(scale=0.9, size=n))))
    ours = propensity_metrics(y, strong, n_boot=200, seed=1)["roc_auc"].to_dict()
    theirs = propensity_metrics(y, weak, n_boot=200, seed=1)["roc_auc"].to_dict()
    assert bench.verdict(ours, theirs, "roc_auc") == "matches"
    paired = bench.paired_differences(y, strong, weak, n_boot=200, seed=1)
    assert paired["roc_auc"]["verdict"] == "beats" and paired["roc_auc"]["value"] > 0
    assert paired["brier"]["verdict"] == "beats"  # positive = abm-ml's Brier is lower
    assert bench.paired_differences(y, weak, strong, n_boot=200, seed=1)["roc_auc"]["verdict"] == (
        "behind"
    )
    # The same model on both sides: a difference of exactly 0 is no win.
    assert bench.paired_differences(y, weak, weak, n_boot=50, seed=1)["roc_auc"]["verdict"] == (
        "matches"
    )


@pytest.mark.slow
def test_run_all_quick_explain(tmp_path: Path) -> None:
    results = tmp_path / "results"
    docs = tmp_path / "benchmarks.md"
    cmd = [
        sys.executable,
        str(BENCH / "run_all.py"),
        "--quick",
        "--only",
        "explain",
        "--results-dir",
        str(results),
        "--docs",
        str(docs),
        "--silent",
    ]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    report = json.loads((results / "explain.json").read_text())
    assert report["benchmark"] == "explain" and report["quick"] is True and report["status"] == "ok"
    for key in ("machine", "model", "data", "runs", "goal_ratio", "config"):
        assert key in report, key
    assert {"logical_cores", "memory_gib", "cpu_model"} <= report["machine"].keys()
    (run,) = report["runs"]
    for key in (
        "rows",
        "abm_ml_rows_per_s",
        "reference_rows_per_s",
        "ratio_vs_reference",
        "peak_rss_bytes",
        "rss_before_stream_bytes",
        "seconds",
    ):
        assert key in run, key
    assert run["rows"] == 20_000
    assert run["abm_ml_rows_per_s"] > 0 and run["reference_rows_per_s"] > 0
    assert 0 < run["ratio_vs_reference"] < 10
    assert run["peak_rss_bytes"] >= run["rss_before_stream_bytes"] > 0
    assert len(run["top_10_account_ids"]) == 10

    summary = json.loads((results / "run_all.json").read_text())
    assert summary["runs"]["explain"]["status"] == "ok"
    text = docs.read_text()
    assert "# Benchmarks" in text and "make bench" in text and "Batch ranking with reasons" in text
    assert "ratio" in text
