"""Benchmark ranking on Spark ``local[2]`` against the in-process path on the same machine.

A model is trained once on a synthetic world (:func:`abm_ml.modeling.train.train_models`).
Scoring rows for N accounts (a generated world tiled to N rows with fresh ids, as in
``bench_explain.py``) are written to Parquet. Then, each in a fresh child process:

* **in-process** (the reference): :func:`abm_ml.modeling.ranking.rank_accounts` on the whole
  DataFrame, one LightGBM thread (``abm-ml rank``'s path);
* **Spark**: :func:`abm_ml.spark.rank` on ``local[2]`` (two tasks at a time, one LightGBM
  thread each) from the Parquet file, written as Parquet by as-of date (``abm-ml rank
  --engine spark``'s path, I/O included).

Spark's fixed costs (JVM start, Python workers importing the project and unpickling the
model) are timed apart, on a warm-up run over 2,000 rows in the same session; the throughput is
the steady state that a long nightly run sees. Peak memory: the in-process child's ``ru_maxrss``; for Spark, the resident memory of the
driver's Python process, the JVM (driver and executors share it in local mode) and the Python
workers, sampled every 0.1 s (largest sum per role seen at one sample).

Rows per CPU-second (user + system time of the whole process tree during the run) are given
beside rows/s: on a machine shared with other jobs, wall time says how many cores the run was
left, CPU time what the work costs. The 50M-account paragraph uses Spark's rows per CPU-second.

Usage::

    python bench/bench_spark.py                    # 200,000 accounts
    python bench/bench_spark.py --accounts 1000000
    python bench/bench_spark.py --quick            # 20,000 accounts, smaller model

Writes ``bench/results/spark.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Self

import psutil
from common import (
    ROOT,
    Stopwatch,
    base_report,
    fmt_bytes,
    md_table,
    peak_rss_self,
    quiet_warnings,
    synthetic_dataset,
    write_result,
)

NAME = "spark"
SPARK_CORES = 2
NIGHTLY_ACCOUNTS = 50_000_000
WARM_UP_ROWS = 2_000


def _run_child(args: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, *args], check=False, capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and its live descendants."""
    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


class RolePeaks:
    """Peak resident memory per role (driver Python, JVM, Python workers) of this process tree."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peaks = {"driver_python": 0, "jvm": 0, "python_workers": 0}
        self.workers_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        sums = {"driver_python": me.memory_info().rss, "jvm": 0, "python_workers": 0}
        workers = 0
        for child in me.children(recursive=True):
            try:
                name, rss = child.name(), child.memory_info().rss
            except psutil.Error:
                continue
            if name.startswith("java"):
                sums["jvm"] += rss
            elif name.startswith("python"):
                sums["python_workers"] += rss
                workers += 1
        for role, value in sums.items():
            self.peaks[role] = max(self.peaks[role], value)
        self.workers_seen = max(self.workers_seen, workers)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def in_process(rows_file: Path, scorer_file: Path) -> dict:
    """Child: ``rank_accounts`` on the whole file in one process (the reference)."""
    quiet_warnings()
    import joblib
    import pandas as pd

    from abm_ml.modeling.ranking import rank_accounts

    scorer = joblib.load(scorer_file)
    accounts = pd.read_parquet(rows_file)
    cpu_start = tree_cpu_seconds()
    with Stopwatch() as sw:
        result = rank_accounts(scorer, accounts, tiers=(10, 50, 500), as_of="2026-01-05")
    cpu = tree_cpu_seconds() - cpu_start
    return {
        "rows": len(accounts),
        "ranked": len(result.ranked),
        "seconds": sw.seconds,
        "rows_per_s": len(accounts) / sw.seconds,
        "cpu_seconds": cpu,
        "rows_per_cpu_s": len(accounts) / cpu,
        "peak_rss_bytes": peak_rss_self(),
    }


def on_spark(rows_file: Path, scorer_file: Path, out: Path, partitions: int) -> dict:
    """Child: ``abm_ml.spark.rank`` on local[2], read from and written to Parquet."""
    quiet_warnings()
    import joblib

    from abm_ml.spark import get_session, rank
    from abm_ml.spark.job import write_ranking

    scorer = joblib.load(scorer_file)
    with RolePeaks() as peaks:
        with Stopwatch() as sw_start:
            spark = get_session(master=f"local[{SPARK_CORES}]", app_name="abm-ml bench")
            spark.sparkContext.setLogLevel("ERROR")
        accounts = spark.read.parquet(str(rows_file))
        with Stopwatch() as sw_warm:
            # Start the Python workers (imports, the broadcast model) on a small slice: a
            # nightly run pays this once, so the throughput below is the steady state.
            warm = rank(accounts.limit(WARM_UP_ROWS), scorer, partitions=partitions)
            write_ranking(warm, str(out / "warm-up"), show=3)
        cpu_start = tree_cpu_seconds()
        with Stopwatch() as sw:
            result = rank(accounts, scorer, tiers=(10, 50, 500), partitions=partitions)
            written = write_ranking(result, str(out / "run"), show=3)
        # Driver, JVM and Python workers (reused from the warm-up, so alive before and after).
        cpu = tree_cpu_seconds() - cpu_start
        spark.stop()
    return {
        "rows": written.ranked + written.unscorable,
        "ranked": written.ranked,
        "session_start_s": sw_start.seconds,
        "warm_up_s": sw_warm.seconds,
        "warm_up_rows": WARM_UP_ROWS,
        "seconds": sw.seconds,
        "rows_per_s": (written.ranked + written.unscorable) / sw.seconds,
        "cpu_seconds": cpu,
        "rows_per_cpu_s": (written.ranked + written.unscorable) / cpu,
        "partitions": partitions,
        "peak_rss_bytes": peaks.peaks,
        "python_workers_seen": peaks.workers_seen,
    }


def nightly_paragraph(
    per_core: float, accounts: int = NIGHTLY_ACCOUNTS, price_per_core_hour: float = 0.05
) -> str:
    """What a nightly run of ``accounts`` costs, from the measured rows per CPU-second.

    ``price_per_core_hour`` is an assumption (order of magnitude of an on-demand
    general-purpose vCPU-hour), printed as such: the core-hours are the measured part.
    """
    core_hours = accounts / per_core / 3600
    return (
        f"At the measured {per_core:,.0f} accounts per CPU-second (Spark local[{SPARK_CORES}] "
        "on this machine, reasons included, JVM and driver counted), a nightly run of "
        f"{accounts / 1e6:,.0f}M accounts needs about {core_hours:,.1f} core-hours of scoring: "
        f"{core_hours / 64 * 60:,.0f} min on 64 cores (e.g. 8 workers x 8 cores), "
        f"{core_hours / 256 * 60:,.0f} min on 256, before the cluster's start-up and the "
        "read and write of the account table. At an assumed "
        f"${price_per_core_hour:.2f} per vCPU-hour that is about "
        f"${core_hours * price_per_core_hour:,.2f} of compute per night; scoring is not the "
        "cost that matters, the cluster's minimum billing and idle time are."
    )


def markdown(report: dict) -> str:
    """The table, the ratios and the nightly-cost paragraph (``run_all.py`` renders it too)."""
    if report.get("status") != "ok":
        return f"_Skipped: {report.get('note', report.get('status'))}_"
    local, spark = report["in_process"], report["spark"]
    peaks = spark["peak_rss_bytes"]
    table = md_table(
        ["path", "rows", "seconds", "rows/s", "rows per CPU-second", "peak memory"],
        [
            [
                "in-process rank_accounts (1 thread)",
                f"{local['rows']:,}",
                f"{local['seconds']:.1f}",
                f"{local['rows_per_s']:,.0f}",
                f"{local['rows_per_cpu_s']:,.0f}",
                fmt_bytes(local["peak_rss_bytes"]),
            ],
            [
                f"Spark local[{SPARK_CORES}] rank + write",
                f"{spark['rows']:,}",
                f"{spark['seconds']:.1f}",
                f"{spark['rows_per_s']:,.0f}",
                f"{spark['rows_per_cpu_s']:,.0f}",
                (
                    f"driver Python {fmt_bytes(peaks['driver_python'])}, JVM "
                    f"{fmt_bytes(peaks['jvm'])}, {spark['python_workers_seen']} Python "
                    f"workers {fmt_bytes(peaks['python_workers'])}"
                ),
            ],
        ],
    )
    return "\n\n".join(
        [
            table,
            (
                f"Spark / in-process: rows/s {report['spark_over_in_process_rows_per_s']:.2f}, rows "
                f"per CPU-second {report['spark_over_in_process_rows_per_cpu_s']:.2f}. Spark's fixed "
                f"costs: session {spark['session_start_s']:.0f} s, warm-up "
                f"{spark['warm_up_s']:.0f} s ({spark['warm_up_rows']:,} rows). Load average at the "
                f"start: {report['machine']['load_average_1_5_15']}."
            ),
            report["nightly_50m"],
        ]
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, help="rows to rank (default 200,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 rows, smaller model")
    parser.add_argument("--train-accounts", type=int, help="accounts in the training world")
    parser.add_argument("--partitions", type=int, help="Spark partitions (default rows/25,000)")
    parser.add_argument("--out", help="result JSON (default bench/results/spark.json)")
    parser.add_argument("--worker", choices=["rows", "local", "spark"], help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scorer-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "rows":
        import pyarrow.parquet as pq
        from bench_explain import make_rows

        n = args.accounts
        data = make_rows(args.rows_file, n, 11, 100_000, min(n, 10_000))
        # Spark reads no nanosecond timestamps (pandas' default): microseconds, as Spark writes.
        table = pq.read_table(args.rows_file)
        pq.write_table(
            table, args.rows_file, coerce_timestamps="us", allow_truncated_timestamps=True
        )
        print(json.dumps(data))
        return 0
    if args.worker == "local":
        print(json.dumps(in_process(args.rows_file, args.scorer_file)))
        return 0
    if args.worker == "spark":
        out = json.dumps(on_spark(args.rows_file, args.scorer_file, args.out_dir, args.partitions))
        print(out)
        return 0

    quiet_warnings()
    import joblib

    from abm_ml.modeling.train import TrainConfig, train_models

    n = args.accounts or (20_000 if args.quick else 200_000)
    partitions = args.partitions or max(SPARK_CORES, n // 25_000)
    train_accounts = args.train_accounts or (2000 if args.quick else 5000)
    report = base_report(NAME, quick=args.quick, argv=argv)
    config = TrainConfig(seed=42, learning_rate=0.1, max_rounds=400) if args.quick else None
    with tempfile.TemporaryDirectory(prefix="abm-bench-spark-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"training on {train_accounts:,} synthetic accounts...", flush=True)
        with synthetic_dataset(train_accounts, seed=7) as dataset, Stopwatch() as sw_train:
            result = train_models(dataset, config or TrainConfig(seed=42))
        scorer_file = tmp / "scorer.joblib"
        joblib.dump(result.scorer, scorer_file)
        rows_file = tmp / "rows.parquet"
        print(f"scoring rows for {n:,} accounts...", flush=True)
        common = ["--rows-file", str(rows_file), "--accounts", str(n)]
        report["data"] = _run_child(["--worker", "rows", *common])
        print("in-process rank_accounts...", flush=True)
        local = _run_child(["--worker", "local", *common, "--scorer-file", str(scorer_file)])
        print(f"Spark local[{SPARK_CORES}], {partitions} partitions...", flush=True)
        spark = _run_child(
            [
                "--worker",
                "spark",
                *common,
                "--scorer-file",
                str(scorer_file),
                "--out-dir",
                str(tmp / "spark-out"),
                "--partitions",
                str(partitions),
            ]
        )
    # Per core: rows per CPU-second of the whole Spark process tree (JVM included), which does
    # not depend on how many of the 2 cores other jobs left free during the run.
    per_core = spark["rows_per_cpu_s"]
    report.update(
        {
            "status": "ok",
            "model": {"train_accounts": train_accounts, "train_s": sw_train.seconds},
            "in_process": local,
            "spark": spark,
            "spark_over_in_process_rows_per_s": spark["rows_per_s"] / local["rows_per_s"],
            "spark_over_in_process_rows_per_cpu_s": spark["rows_per_cpu_s"]
            / local["rows_per_cpu_s"],
            "spark_rows_per_s_per_core": per_core,
            "nightly_50m": nightly_paragraph(per_core),
        }
    )
    path = write_result(NAME, report, args.out)
    print(markdown(report))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ABM_ML_NUM_THREADS", "1")
    raise SystemExit(main())
