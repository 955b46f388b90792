"""Benchmark the synthetic world generator and the point-in-time feature builder.

Each world size runs in its own subprocess so ``ru_maxrss`` (the process's peak resident
memory) belongs to that size alone. Two references are measured in the same process, so the
figures can be compared across machines as ratios:

* ``numpy_draw``: drawing as many standard-normal numbers as the world has cells
  (rows x columns over all tables) with ``numpy.random.Generator``;
* ``parquet_write``: writing the world's tables to Parquet (``World.save``).

Usage::

    python bench/bench_synth.py                      # 100k and 1M accounts
    python bench/bench_synth.py --accounts 100000    # one size
    python bench/bench_synth.py --quick              # 10k accounts only

Writes ``bench/results/synth.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from abm_ml.features.point_in_time import build_scoring_rows, build_training_rows
from abm_ml.synthetic.generate import generate_world
from abm_ml.synthetic.world import TABLES

GIB = 1024**3
RESULTS = Path(__file__).resolve().parent / "results" / "synth.json"


def _peak_rss() -> int:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _numpy_draw_seconds(n_numbers: int, seed: int) -> float:
    """Time to draw ``n_numbers`` normals, in chunks so the reference itself stays small."""
    rng = np.random.default_rng(seed)
    chunk = 10_000_000
    start = time.perf_counter()
    left = n_numbers
    while left > 0:
        rng.standard_normal(min(chunk, left), dtype=np.float64)
        left -= chunk
    return time.perf_counter() - start


def run_one(n_accounts: int, seed: int) -> dict:
    """Measure one world size in this process."""
    rss_start = _rss()
    t = time.perf_counter()
    world = generate_world(n_accounts, seed=seed)
    generate_s = time.perf_counter() - t
    peak_generate = _peak_rss()
    rows = {name: len(getattr(world, name)) for name in TABLES}
    cells = sum(len(f) * f.shape[1] for f in world.tables().values())
    world_bytes = sum(int(f.memory_usage(deep=True).sum()) for f in world.tables().values())

    t = time.perf_counter()
    training = build_training_rows(world)
    training_s = time.perf_counter() - t
    n_training = len(training)
    del training
    peak_training = _peak_rss()

    t = time.perf_counter()
    scoring = build_scoring_rows(world, world.as_of)
    scoring_s = time.perf_counter() - t
    n_scoring = len(scoring)
    del scoring
    peak_features = _peak_rss()

    draw_s = _numpy_draw_seconds(cells, seed)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        world.save(tmp)
        parquet_s = time.perf_counter() - t
        parquet_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir())

    return {
        "n_accounts": n_accounts,
        "seed": seed,
        "rows": rows,
        "cells": cells,
        "world_memory_gib": world_bytes / GIB,
        "generate_s": generate_s,
        "training_rows": n_training,
        "training_rows_s": training_s,
        "scoring_rows": n_scoring,
        "scoring_rows_s": scoring_s,
        "rss_at_start_gib": rss_start / GIB,
        "peak_rss_after_generate_gib": peak_generate / GIB,
        "peak_rss_after_training_rows_gib": peak_training / GIB,
        "peak_rss_gib": peak_features / GIB,
        "reference": {
            "numpy_draw_s": draw_s,
            "numpy_draw_numbers": cells,
            "parquet_write_s": parquet_s,
            "parquet_bytes": parquet_bytes,
        },
        "ratios": {
            "generate_vs_numpy_draw": generate_s / draw_s,
            "generate_vs_parquet_write": generate_s / parquet_s,
            "training_rows_vs_parquet_write": training_s / parquet_s,
        },
    }


def _print(res: dict) -> None:
    r = res["ratios"]
    ref = res["reference"]
    print(
        f"{res['n_accounts']:>9,} accounts | rows: "
        + ", ".join(f"{k} {v:,}" for k, v in res["rows"].items())
    )
    print(
        f"  generate        {res['generate_s']:8.1f} s   peak RSS {res['peak_rss_after_generate_gib']:.2f} GiB"
        f"   ({r['generate_vs_numpy_draw']:.1f}x numpy draw of {ref['numpy_draw_numbers']:,} numbers"
        f" {ref['numpy_draw_s']:.1f} s; {r['generate_vs_parquet_write']:.1f}x parquet write"
        f" {ref['parquet_write_s']:.1f} s)"
    )
    print(
        f"  training rows   {res['training_rows_s']:8.1f} s   peak RSS"
        f" {res['peak_rss_after_training_rows_gib']:.2f} GiB   ({res['training_rows']:,} rows,"
        f" {r['training_rows_vs_parquet_write']:.1f}x parquet write)"
    )
    print(
        f"  scoring rows    {res['scoring_rows_s']:8.1f} s   peak RSS {res['peak_rss_gib']:.2f} GiB"
        f"   ({res['scoring_rows']:,} rows)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--quick", action="store_true", help="10k accounts only")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        print(json.dumps(run_one(args.worker, args.seed)))
        return 0

    sizes = [10_000] if args.quick else args.accounts
    runs = []
    for n in sizes:
        # A fresh process per size: ru_maxrss only ever grows within one.
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", str(n), "--seed", str(args.seed)],
            check=True,
            capture_output=True,
            text=True,
        )
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        _print(res)
        runs.append(res)

    report = {
        "benchmark": "synth",
        "created": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "memory_gib": psutil.virtual_memory().total / GIB,
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
