"""Benchmark the campaign ROI report and the pilot report on the planted campaign world.

Figures are ratios against a reference measured in the same run: ``pandas.read_csv`` of the
same four CSV files with default options (what any analysis of these tables pays first).

* ``load_tables``: reading and validating the tables (every row used or rejected);
* ``compute_roi``: credit under three views, cost ratios and the velocity bootstrap;
* ``pilot_report``: a pilot of 1 % of the accounts per arm, intervals for six outcomes.

Usage::

    python bench/bench_roi.py                     # 100k accounts
    python bench/bench_roi.py --quick             # 10k accounts
    python bench/bench_roi.py --accounts 300000

Writes ``bench/results/roi.json``. Medians of ``--repeats`` runs; no assertion on time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import pandas as pd
from common import Stopwatch, base_report, peak_rss_self, write_result

from abm_ml.roi.pilot import pilot_report, select_pilot
from abm_ml.roi.report import compute_roi
from abm_ml.roi.tables import load_tables
from abm_ml.synthetic.campaigns import generate_campaign_world, simulate_pilot


def _median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with Stopwatch() as watch:
            work()
        times.append(watch.seconds)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10k accounts, one repeat")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    accounts = 10_000 if args.quick else args.accounts
    repeats = 1 if args.quick else args.repeats

    world = generate_campaign_world(accounts, seed=7)
    with tempfile.TemporaryDirectory() as folder:
        paths = world.save(Path(folder))
        rows = {name: len(pd.read_csv(path)) for name, path in paths.items()}
        reference = _median_seconds(lambda: [pd.read_csv(p) for p in paths.values()], repeats)
        tables = load_tables(
            paths["campaigns"], paths["touches"], paths["opportunities"], paths["accounts"]
        )
        load = _median_seconds(
            lambda: load_tables(
                paths["campaigns"], paths["touches"], paths["opportunities"], paths["accounts"]
            ),
            repeats,
        )
    roi = _median_seconds(lambda: compute_roi(tables), repeats)
    pilot = select_pilot(
        world.ranking.assign(model_version="bench", as_of="2026-03-31"),
        max(accounts // 100, 20),
        started_on="2026-04-01",
    )
    touches, opportunities = simulate_pilot(world, pilot.assignment, "A", "2026-04-01")
    pilot_seconds = _median_seconds(
        lambda: pilot_report(pilot, opportunities, touches, as_of="2026-07-30"), repeats
    )
    report = base_report("roi", quick=args.quick, argv=argv)
    report["results"] = {
        "accounts": accounts,
        "rows": rows,
        "reference_read_csv_s": reference,
        "load_tables_s": load,
        "compute_roi_s": roi,
        "pilot_report_s": pilot_seconds,
        "pilot_accounts_per_arm": len(pilot.assignment) // 2,
        "ratio_load_tables_vs_read_csv": load / reference,
        "ratio_compute_roi_vs_read_csv": roi / reference,
        "ratio_pilot_report_vs_read_csv": pilot_seconds / reference,
        "peak_rss_mib": peak_rss_self() / 2**20,
    }
    path = write_result("roi", report, args.out)
    for key, value in report["results"].items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"-> {path}")
    return report


if __name__ == "__main__":
    main()
