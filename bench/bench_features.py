"""Benchmark building point-in-time rows from CRM tables in Parquet, and numpy against DuckDB.

For each world size, in separate child processes (so each ``ru_maxrss`` is that step's own
peak resident memory):

1. ``prepare`` (not part of the figures): generate the synthetic world and write its tables
   as Parquet (``abm-ml synth --format parquet``), plus the cut-offs of step 3.
2. ``rows``: what ``abm-ml rows training/specs/synthetic-tables.yaml`` does: read every table
   through the multi-table spec (every row checked, orphans rejected), then build the training
   rows (each opportunity as of its creation) and the scoring rows (each account as of the
   world's end). Rows/s counts training + scoring rows over the whole step.
3. ``window-numpy`` and ``window-duckdb``: the same 16 activity window counts (per channel,
   7/30/90 days before each cut-off, for every training and scoring row) computed by the
   builder's sorted-key searches (:mod:`abm_ml.features.events`) and by one DuckDB range join
   over the Parquet files. This is the reference measured in the same run: the figure to read
   is the ratio, and both must give identical counts.

Usage::

    python bench/bench_features.py                     # 100k accounts
    python bench/bench_features.py --accounts 1000000  # ~33M activities
    python bench/bench_features.py --quick             # 10k accounts

Writes ``bench/results/features.json`` and prints a table. Nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Stopwatch,
    base_report,
    fmt_bytes,
    md_table,
    peak_rss_self,
    write_result,
)

SPEC = Path(__file__).resolve().parents[1] / "training" / "specs" / "synthetic-tables.yaml"
DAY = 86_400


def _window_features() -> list[tuple[str, str | None, int]]:
    from abm_ml.features.columns import WINDOW_COUNTS

    return list(WINDOW_COUNTS)


# --------------------------------------------------------------------------------------------
# Child steps
# --------------------------------------------------------------------------------------------


def _prepare(folder: Path, accounts: int) -> dict:
    import numpy as np
    import pandas as pd

    from abm_ml.synthetic.export import export_world
    from abm_ml.synthetic.generate import generate_world

    with Stopwatch() as sw:
        world = generate_world(n_accounts=accounts, seed=7)
        export_world(world, folder / "tables", "parquet")
    opp = world.opportunities
    cutoffs = pd.concat(
        [
            pd.DataFrame({"account_id": opp["account_id"].astype(str), "as_of": opp["created_at"]}),
            pd.DataFrame(
                {
                    "account_id": world.accounts["account_id"].astype(str),
                    "as_of": np.full(len(world.accounts), world.as_of.to_datetime64()),
                }
            ),
        ],
        ignore_index=True,
    )
    cutoffs.insert(0, "row_idx", np.arange(len(cutoffs)))
    cutoffs["as_of"] = cutoffs["as_of"].astype("datetime64[us]")
    cutoffs.to_parquet(folder / "cutoffs.parquet", index=False)
    return {
        "seconds": sw.seconds,
        "accounts": len(world.accounts),
        "contacts": len(world.contacts),
        "activities": len(world.activities),
        "intent": len(world.intent),
        "opportunities": len(world.opportunities),
        "cutoffs": len(cutoffs),
    }


def _rows(folder: Path) -> dict:
    from abm_ml.data.spec import load_spec
    from abm_ml.data.tables import load_tables
    from abm_ml.features.point_in_time import build_opportunity_rows, build_scoring_rows

    os.environ["ABM_ML_SYNTH_DIR"] = str(folder)
    spec = load_spec(SPEC)
    cpu = time.process_time()
    with Stopwatch() as read:
        tables = load_tables(spec.tables)
    with Stopwatch() as train:
        training = build_opportunity_rows(tables)
    with Stopwatch() as score:
        scoring = build_scoring_rows(tables, tables.latest_event())
    total = read.seconds + train.seconds + score.seconds
    n_rows = len(training) + len(scoring)
    return {
        # CPU time tells more than wall time on a shared machine; the step is single-threaded.
        "cpu_seconds": time.process_time() - cpu,
        "rows_per_cpu_second": n_rows / (time.process_time() - cpu),
        "read_seconds": read.seconds,
        "training_seconds": train.seconds,
        "scoring_seconds": score.seconds,
        "seconds": total,
        "training_rows": len(training),
        "scoring_rows": len(scoring),
        "rows_per_second": n_rows / total,
        "rejected": len(tables.rejects),
        "peak_rss": peak_rss_self(),
    }


def _window_numpy(folder: Path) -> dict:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from abm_ml.data.tables import CHANNELS
    from abm_ml.features.events import Events, to_seconds

    def codes(column: pa.ChunkedArray, keys: pa.Array) -> np.ndarray:
        # Arrow's hash lookup, so no Python string is ever made.
        return pc.index_in(column, value_set=keys).fill_null(-1).to_numpy().astype(np.int32)

    cpu = time.process_time()
    with Stopwatch() as encode:
        cut = pq.read_table(folder / "cutoffs.parquet")
        act = pq.read_table(
            folder / "tables" / "activities.parquet",
            columns=["account_id", "occurred_at", "channel"],
        )
        keys = pc.unique(cut.column("account_id"))
        acc = codes(cut.column("account_id"), keys)
        now = to_seconds(pd.Series(cut.column("as_of").to_numpy()))
        a = codes(act.column("account_id"), keys)
        t = to_seconds(pd.Series(act.column("occurred_at").to_numpy()))
        ch = codes(pc.cast(act.column("channel"), pa.string()), pa.array(CHANNELS))
        del act
    with Stopwatch() as count:
        counts = {}
        every = Events(a, t)
        per_channel = {c: Events(a[ch == i], t[ch == i]) for i, c in enumerate(CHANNELS)}
        for name, channel, days in _window_features():
            ev = every if channel is None else per_channel[channel]
            counts[name] = ev.count(acc, now - days * DAY, now)
    out = pd.DataFrame(counts)
    out.to_parquet(folder / "window_numpy.parquet", index=False)
    return {
        "seconds": encode.seconds + count.seconds,
        "read_encode_seconds": encode.seconds,
        "count_seconds": count.seconds,
        "cpu_seconds": time.process_time() - cpu,
        "rows": len(out),
        "peak_rss": peak_rss_self(),
        "ok": True,
    }


def _window_duckdb(folder: Path) -> dict:
    import duckdb
    import numpy as np
    import pandas as pd

    parts = []
    for name, channel, days in _window_features():
        cond = f"a.occurred_at >= c.as_of - INTERVAL {days} DAY"
        if channel is not None:
            cond += f" AND a.channel = '{channel}'"
        parts.append(f"count(*) FILTER (WHERE {cond})::INTEGER AS {name}")
    # Whole seconds on both sides, as the builder compares them (an event in the cut-off's
    # second is left out).
    query = f"""
        WITH c AS (SELECT row_idx, account_id, date_trunc('second', as_of) AS as_of
                   FROM read_parquet('{folder / "cutoffs.parquet"}')),
             a AS (SELECT account_id, date_trunc('second', occurred_at) AS occurred_at,
                          CAST(channel AS VARCHAR) AS channel
                   FROM read_parquet('{folder / "tables" / "activities.parquet"}'))
        SELECT c.row_idx, {", ".join(parts)}
        FROM c LEFT JOIN a
          ON a.account_id = c.account_id
         AND a.occurred_at < c.as_of
         AND a.occurred_at >= c.as_of - INTERVAL 90 DAY
        GROUP BY c.row_idx ORDER BY c.row_idx
    """
    cpu = time.process_time()
    with Stopwatch() as sw:
        con = duckdb.connect()
        out = con.execute(query).df()
        con.close()
    cpu = time.process_time() - cpu  # every DuckDB thread's CPU time
    ref = pd.read_parquet(folder / "window_numpy.parquet")
    names = [n for n, _, _ in _window_features()]
    same = bool(
        len(out) == len(ref) and np.array_equal(out[names].to_numpy(), ref[names].to_numpy())
    )
    return {
        "seconds": sw.seconds,
        "cpu_seconds": cpu,
        "rows": len(out),
        "peak_rss": peak_rss_self(),
        "ok": same,
        "threads": duckdb.connect().execute("SELECT current_setting('threads')").fetchone()[0],
    }


_STEPS = {
    "rows": _rows,
    "window-numpy": _window_numpy,
    "window-duckdb": _window_duckdb,
}


def _child(step: str, folder: Path, accounts: int) -> dict:
    """Run one step in a fresh interpreter; its JSON result is the last line of stdout."""
    cmd = [sys.executable, __file__, "--step", step, "--folder", str(folder)]
    cmd += ["--accounts", str(accounts)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, action="append")
    parser.add_argument("--quick", action="store_true", help="10k accounts only")
    parser.add_argument("--out", default=None)
    parser.add_argument("--step", choices=["prepare", *_STEPS], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        if args.step == "prepare":
            result = _prepare(args.folder, args.accounts[0])
        else:
            result = _STEPS[args.step](args.folder)
        print(json.dumps(result, default=float))
        return

    sizes = [10_000] if args.quick else (args.accounts or [100_000])
    report = base_report("features", quick=args.quick)
    report["sizes"] = []
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="abm-features-") as tmp:
            folder = Path(tmp)
            entry = {"accounts": n, "prepare": _child("prepare", folder, n)}
            for step in _STEPS:
                entry[step] = _child(step, folder, n)
                print(f"{n:,} accounts, {step}: {entry[step]}", file=sys.stderr, flush=True)
        entry["duckdb_over_numpy"] = entry["window-duckdb"]["seconds"] / max(
            entry["window-numpy"]["seconds"], 1e-9
        )
        report["sizes"].append(entry)
        r, p = entry["rows"], entry["prepare"]
        rows.append(
            [
                f"{n:,}",
                f"{p['activities']:,}",
                f"{r['training_rows']:,} + {r['scoring_rows']:,}",
                f"{r['read_seconds']:.1f} + {r['training_seconds']:.1f} + {r['scoring_seconds']:.1f}",
                f"{r['rows_per_second']:,.0f} ({r['cpu_seconds']:.1f} s CPU)",
                fmt_bytes(r["peak_rss"]),
                (
                    f"{entry['window-numpy']['read_encode_seconds']:.1f} + "
                    f"{entry['window-numpy']['count_seconds']:.1f}"
                    f" / {entry['window-duckdb']['seconds']:.1f}"
                    f" (x{entry['duckdb_over_numpy']:.2f}, same: {entry['window-duckdb']['ok']})"
                ),
                (
                    f"{fmt_bytes(entry['window-numpy']['peak_rss'])} / "
                    f"{fmt_bytes(entry['window-duckdb']['peak_rss'])}"
                ),
            ]
        )
    path = write_result("features", report, args.out)
    print(
        md_table(
            [
                "accounts",
                "activities",
                "training + scoring rows",
                "read + train + score s",
                "rows/s (CPU s)",
                "peak RSS",
                "window counts numpy read + count / DuckDB s (DuckDB/numpy)",
                "peak RSS numpy / DuckDB",
            ],
            rows,
        )
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
