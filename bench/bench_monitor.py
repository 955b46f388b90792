"""Benchmark what `rank --monitor` adds to a ranking run, and the label-free AUC estimate.

A model is trained once on a synthetic world of 5,000 accounts and carries its training
profile. The scoring rows of a larger world (100k accounts by default) are then, in the same
process and in alternating order, per repeat:

* **reference**: :func:`abm_ml.modeling.ranking.rank_accounts` (scoring with reasons, tiers),
  what `abm-ml rank` does before anything is written;
* **monitor**: :func:`abm_ml.monitoring.monitor.monitor_accounts` (parse, score without
  reasons, profile every feature and the score, compare, store the profile).

The headline is the median time ratio monitor / reference: the share that monitoring adds to
a ranking run. Also timed: :func:`abm_ml.monitoring.stats.expected_roc_auc` on the run's scores
against scikit-learn's ``roc_auc_score`` on the same scores with drawn labels (the same sort,
so the ratio says whether the estimate costs more than one AUC).

Usage::

    python bench/bench_monitor.py            # 100k accounts, 3 repeats
    python bench/bench_monitor.py --quick    # 20k accounts

Writes ``bench/results/monitor.json``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import base_report, quiet_warnings, synthetic_dataset, write_result

NAME = "monitor"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    quiet_warnings()
    n_accounts = args.accounts or (20_000 if args.quick else 100_000)

    from sklearn.metrics import roc_auc_score

    from abm_ml.features.point_in_time import build_scoring_rows
    from abm_ml.modeling.ranking import rank_accounts
    from abm_ml.modeling.train import TrainConfig, train_models
    from abm_ml.monitoring.monitor import monitor_accounts
    from abm_ml.monitoring.profile import METADATA_KEY, ProfileStore, training_profile
    from abm_ml.monitoring.stats import expected_roc_auc
    from abm_ml.synthetic.generate import generate_world

    with synthetic_dataset(5000) as dataset:
        result = train_models(dataset, TrainConfig(n_boot=0))
    scorer = result.scorer
    started = time.perf_counter()
    scorer.metadata[METADATA_KEY] = training_profile(result).to_dict()
    profile_s = time.perf_counter() - started
    world = generate_world(n_accounts, seed=3)
    rows = build_scoring_rows(world, world.as_of)
    del world

    reference, monitor, estimate, sklearn_auc = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = ProfileStore(Path(tmp), "bench", "1")
        for repeat in range(args.repeats):
            order = ("reference", "monitor") if repeat % 2 == 0 else ("monitor", "reference")
            for which in order:
                t0 = time.perf_counter()
                if which == "reference":
                    ranked = rank_accounts(scorer, rows, as_of="2026-06-30").ranked
                    reference.append(time.perf_counter() - t0)
                else:
                    verdict = monitor_accounts(scorer, rows, as_of="2026-06-30", store=store)
                    monitor.append(time.perf_counter() - t0)
            propensity = ranked["propensity"].to_numpy()
            labels = np.random.default_rng(repeat).random(propensity.size) < propensity
            t0 = time.perf_counter()
            expected_roc_auc(propensity)
            estimate.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            roc_auc_score(labels, propensity)
            sklearn_auc.append(time.perf_counter() - t0)

    report = base_report(NAME, quick=args.quick, argv=argv)
    medians = {
        "rank_s": statistics.median(reference),
        "monitor_s": statistics.median(monitor),
        "expected_auc_s": statistics.median(estimate),
        "sklearn_auc_s": statistics.median(sklearn_auc),
    }
    report.update(
        accounts=len(rows),
        repeats=args.repeats,
        training_profile_s=profile_s,
        medians=medians,
        monitor_over_rank=medians["monitor_s"] / medians["rank_s"],
        expected_auc_over_sklearn_auc=medians["expected_auc_s"] / medians["sklearn_auc_s"],
        verdict=verdict.verdict,
    )
    path = write_result(NAME, report)
    print(
        f"{len(rows):,} accounts, median of {args.repeats}: rank {medians['rank_s']:.2f} s, "
        f"monitor {medians['monitor_s']:.2f} s -> monitor/rank = {report['monitor_over_rank']:.2f}; "
        f"expected AUC {medians['expected_auc_s'] * 1000:.1f} ms vs roc_auc_score "
        f"{medians['sklearn_auc_s'] * 1000:.1f} ms (ratio {report['expected_auc_over_sklearn_auc']:.2f}); "
        f"training profile {profile_s:.2f} s -> {path}"
    )
    return report


if __name__ == "__main__":
    main()
