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

The 50M-account paragraph uses the measured per-core throughput (Spark rows/s / 2 cores).

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
    with Stopwatch() as sw:
        result = rank_accounts(scorer, accounts, tiers=(10, 50, 500), as_of="2026-01-05")
    return {
        "rows": len(accounts),
        "ranked": len(result.ranked),
        "seconds": sw.seconds,
        "rows_per_s": len(accounts) / sw.seconds,
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
        with Stopwatch() as sw:
            result = rank(accounts, scorer, tiers=(10, 50, 500), partitions=partitions)
            written = write_ranking(result, str(out / "run"), show=3)
        spark.stop()
    return {
        "rows": written.ranked + written.unscorable,
        "ranked": written.ranked,
        "session_start_s": sw_start.seconds,
        "warm_up_s": sw_warm.seconds,
        "warm_up_rows": WARM_UP_ROWS,
        "seconds": sw.seconds,
        "rows_per_s": (written.ranked + written.unscorable) / sw.seconds,
        "partitions": partitions,
        "peak_rss_bytes": peaks.peaks,
        "python_workers_seen": peaks.workers_seen,
    }


def nightly_paragraph(per_core: float, accounts: int = NIGHTLY_ACCOUNTS) -> str:
    """What a nightly run of ``accounts`` costs, from the measured per-core throughput."""
    core_hours = accounts / per_core / 3600
    return (
        f"At the measured {per_core:,.0f} accounts/s per core (Spark local[{SPARK_CORES}] on this "
        f"machine, reasons included), a nightly run of {accounts / 1e6:,.0f}M accounts needs about "
        f"{core_hours:,.1f} core-hours of scoring: {core_hours / 64:,.1f} h on 64 cores "
        f"(e.g. 8 workers x 8 cores), {core_hours / 256 * 60:,.0f} min on 256. "
        "Priced per vCPU-hour of the chosen cloud (on-demand general-purpose instances are "
        "of the order of cents per vCPU-hour), that is core-hours x price, plus the cluster's "
        "start-up and the read/write of the account table."
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
    per_core = spark["rows_per_s"] / SPARK_CORES
    report.update(
        {
            "status": "ok",
            "model": {"train_accounts": train_accounts, "train_s": sw_train.seconds},
            "in_process": local,
            "spark": spark,
            "spark_over_in_process_rows_per_s": spark["rows_per_s"] / local["rows_per_s"],
            "spark_rows_per_s_per_core": per_core,
            "nightly_50m": nightly_paragraph(per_core),
        }
    )
    path = write_result(NAME, report, args.out)
    peaks = spark["peak_rss_bytes"]
    print(
        md_table(
            ["path", "rows", "seconds", "rows/s", "peak memory"],
            [
                [
                    "in-process rank_accounts (1 thread)",
                    f"{local['rows']:,}",
                    f"{local['seconds']:.1f}",
                    f"{local['rows_per_s']:,.0f}",
                    fmt_bytes(local["peak_rss_bytes"]),
                ],
                [
                    f"Spark local[{SPARK_CORES}] rank + write",
                    f"{spark['rows']:,}",
                    f"{spark['seconds']:.1f}",
                    f"{spark['rows_per_s']:,.0f}",
                    (
                        f"driver Python {fmt_bytes(peaks['driver_python'])}, JVM "
                        f"{fmt_bytes(peaks['jvm'])}, {spark['python_workers_seen']} Python "
                        f"workers {fmt_bytes(peaks['python_workers'])}"
                    ),
                ],
            ],
        )
    )
    print(
        f"Spark / in-process throughput: {report['spark_over_in_process_rows_per_s']:.2f}; "
        f"Spark fixed costs: session {spark['session_start_s']:.0f} s, warm-up "
        f"{spark['warm_up_s']:.0f} s; load average {report['machine']['load_average_1_5_15']}"
    )
    print(report["nightly_50m"])
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ABM_ML_NUM_THREADS", "1")
    raise SystemExit(main())
