"""Benchmark batch ranking with SHAP reasons: rows per second and peak memory, streamed.

A model is trained once (:func:`abm_ml.train.train_models` on a synthetic world of 5,000
accounts). Scoring rows for a large synthetic world (``generate_world`` +
``build_scoring_rows``, one row per account) are written to a Parquet file, and each size
(100k and 1M accounts by default) is processed in a fresh child process that streams the file
in chunks of 100k rows:

* **abm-ml**: read the chunk and hand it to
  :class:`~abm_ml.modeling.rank_stream.StreamedRanking`, what ``abm-ml rank`` runs:
  :meth:`AccountScorer.score` (preprocessing, calibrated propensity, P10/P50/P90 days to close,
  top-3 reasons up and the top risk), the reasons as text, the chunk spilled to Parquet; at the
  end, the whole list ranked and tiered and written in order (only ids, sort keys and
  propensities are kept across chunks, so memory is bounded by the chunk size, not the row
  count);
* **reference** (the practical limit), on the same chunks right after, in the same process:
  LightGBM's own ``booster.predict`` + ``booster.predict(pred_contrib=True)`` on the already
  preprocessed matrix, with no I/O, calibration, velocity or text.

abm-ml runs first, on its own (its chunks are scored in the background while the next is
read, as in ``abm-ml rank``), then the reference on the same chunks in the same process. The headline is
the throughput ratio abm-ml / reference (goal: at least 0.5). Peak memory is the child's
``ru_maxrss``. For contrast, the in-memory path of the CLI (:func:`abm_ml.rank.rank_accounts`
on a whole DataFrame) is measured at 100k rows in its own child.

Usage::

    python bench/bench_explain.py                  # 100k and 1M accounts
    python bench/bench_explain.py --quick          # 20k accounts, smaller training run
    python bench/bench_explain.py --sizes 200000   # one size

Writes ``bench/results/explain.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import (
    ROOT,
    Stopwatch,
    base_report,
    fmt_bytes,
    fmt_seconds,
    lightgbm_threads,
    md_table,
    peak_rss_self,
    quiet_warnings,
    rss_self,
    synthetic_dataset,
    threads_label,
    write_result,
)

NAME = "explain"
ONE_RECORD_ROUNDS = 3
GOAL_RATIO = 0.5
CHUNK_ROWS = 100_000


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _reference_threads(threads: int):
    """The reference model's library threads (the members read ``ABM_ML_NUM_THREADS``)."""
    before = os.environ.get("ABM_ML_NUM_THREADS")
    os.environ["ABM_ML_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ABM_ML_NUM_THREADS", None)
        else:
            os.environ["ABM_ML_NUM_THREADS"] = before


def _run_child(args: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, *args], check=False, capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_rows(path: Path, n_accounts: int, seed: int, chunk: int, tile_from: int | None) -> dict:
    """Child: scoring rows of a synthetic world (or tiled copies of a smaller one) to Parquet."""
    import numpy as np
    import pandas as pd

    from abm_ml.features.point_in_time import build_scoring_rows
    from abm_ml.synthetic.generate import generate_world

    base_n = tile_from or n_accounts
    with Stopwatch() as sw_world:
        world = generate_world(base_n, seed=seed)
    with Stopwatch() as sw_rows:
        rows = build_scoring_rows(world, world.as_of)
    as_of = str(world.as_of.date())
    del world
    if tile_from and n_accounts > len(rows):
        # Copies of the smaller world with fresh ids: same feature distribution, n_accounts rows.
        reps = -(-n_accounts // len(rows))
        parts = []
        for r in range(reps):
            part = rows.copy()
            ids = part["account_id"].astype(str) + (f"-{r}" if r else "")
            part["account_id"] = ids.to_numpy()
            part["row_id"] = ids.to_numpy()
            parts.append(part)
        rows = pd.concat(parts, ignore_index=True).iloc[:n_accounts]
    rows = rows.reset_index(drop=True)
    rows.to_parquet(path, index=False, row_group_size=chunk)
    return {
        "accounts": len(rows),
        "columns": int(rows.shape[1]),
        "generated_accounts": base_n,
        "tiled": bool(tile_from and n_accounts > base_n),
        "generate_world_s": sw_world.seconds,
        "build_scoring_rows_s": sw_rows.seconds,
        "as_of": as_of,
        "parquet_bytes": path.stat().st_size,
        "peak_rss_bytes": peak_rss_self(),
        "open_deal_share": float(np.mean(rows["source"].astype(str) != "outbound"))
        if "source" in rows
        else None,
    }


def stream(
    rows_file: Path,
    scorer_file: Path,
    n_rows: int,
    chunk: int,
    k_up: int,
    workers: int,
    reasons_for: int | None = None,
) -> dict:
    """Child: stream ``n_rows`` rows through abm-ml and through the LightGBM reference.

    abm-ml ranks the streamed chunks with :class:`abm_ml.modeling.rank_stream.StreamedRanking`,
    what ``abm-ml rank`` runs (``workers`` sub-chunks at once, one LightGBM thread each); the
    reference runs LightGBM with ``workers`` x ``ABM_ML_NUM_THREADS`` threads, the same CPU.
    With ``reasons_for``, abm-ml explains only the top ``reasons_for`` accounts of the whole
    list (``--reasons-for``), to measure what the option saves.
    """
    quiet_warnings()
    import joblib
    import pyarrow.parquet as pq

    from abm_ml.modeling.rank_stream import StreamedRanking
    from abm_ml.modeling.ranking import chunk_rows

    scorer = joblib.load(scorer_file)
    # The reference is the propensity model's own library (LightGBM, CatBoost, a blend of them).
    model = scorer.propensity_model
    velocity = scorer.velocity
    # The reference gets the CPU abm-ml gets: its workers times their LightGBM threads.
    threads = workers * max(lightgbm_threads(), 1)
    rss_start = rss_self()
    t = dict.fromkeys(
        (
            "read",
            "score",
            "flatten",
            "write",
            "rank",
            "ref_preprocess",
            "ref_predict",
            "ref_contrib",
            "ref_velocity_predict",
            "ref_contrib_in_workers",
        ),
        0.0,
    )
    done = 0
    chunk_peaks = []
    with tempfile.TemporaryDirectory(prefix="abm-bench-explain-") as tmp:
        out_path = Path(tmp) / "ranked.parquet"
        (Path(tmp) / "spill").mkdir()
        ranking = StreamedRanking(
            scorer,
            Path(tmp) / "spill",
            unscorable_path=Path(tmp) / "unscorable.csv",
            k_up=k_up,
            reasons_for=reasons_for,
            workers=workers,
        )

        def chunks():
            """The first ``n_rows`` rows of the file as frames of ``chunk`` rows."""
            left = n_rows
            for batch in pq.ParquetFile(rows_file).iter_batches(batch_size=chunk):
                if left <= 0:
                    return
                yield batch.slice(0, min(batch.num_rows, left)).to_pandas()
                left -= batch.num_rows

        # abm-ml first, on its own: what `abm-ml rank` does (each chunk read, checked and
        # handed over; scored in the background while the next is read; then the whole list
        # ranked, written in order and summed up for the report). No reference work
        # interleaves with it, so the overlap of one chunk's parsing with another's TreeSHAP
        # is measured as the CLI gets it.
        started = time.perf_counter()
        with ranking:
            t0 = time.perf_counter()
            for frame in chunks():
                t["read"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                ranking.add(frame)
                done += len(frame)
                del frame
                t["score"] += time.perf_counter() - t0
                chunk_peaks.append(peak_rss_self())
                t0 = time.perf_counter()
            # The last chunk's scoring ends inside finish(): counted as scoring.
            t0 = time.perf_counter()
            ranking.finish()
            t["score"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            result = ranking.result(ranking.light())
            t["rank"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            ranking.write(out_path)
            t["write"] = time.perf_counter() - t0
        top_ids = result.ranked["account_id"].head(10).astype(str).tolist()
        wall = time.perf_counter() - started
        output_bytes = out_path.stat().st_size if out_path.exists() else 0

        # Reference, right after, on the same chunks: LightGBM alone on the preprocessed
        # matrix (preprocessing timed apart, not counted).
        for frame in chunks():
            t0 = time.perf_counter()
            canonical = scorer._canonical(frame)
            matrix = scorer.preprocessor.matrix(scorer.preprocessor.raw_values(canonical))
            t1 = time.perf_counter()
            with _reference_threads(threads):
                model.raw(matrix)
                t2 = time.perf_counter()
                model.contributions(matrix)
                t3 = time.perf_counter()
                if velocity is not None:
                    velocity.predict_log(matrix)
            t4 = time.perf_counter()
            t["ref_preprocess"] += t1 - t0
            t["ref_predict"] += t2 - t1
            t["ref_contrib"] += t3 - t2
            t["ref_velocity_predict"] += t4 - t3
            # The same pred_contrib laid out as abm-ml lays out its work: the chunk cut into
            # `workers` parts, each in a thread of its own with ABM_ML_NUM_THREADS threads.
            t0 = time.perf_counter()
            part = chunk_rows(len(matrix), workers)
            pieces = [matrix[s : s + part] for s in range(0, len(matrix), part)]
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(model.contributions, pieces))
            del pieces, matrix, frame
            t["ref_contrib_in_workers"] += time.perf_counter() - t0

    abm_s = t["read"] + t["score"] + t["flatten"] + t["write"] + t["rank"]
    ref_s = t["ref_predict"] + t["ref_contrib"]
    ref_same_work_s = t["ref_contrib"] + t["ref_velocity_predict"]
    return {
        "rows": done,
        "lightgbm_threads": threads,
        "workers": workers,
        "reasons_for": reasons_for,
        "chunk_rows": chunk,
        "chunks": len(chunk_peaks),
        "k_up": k_up,
        "seconds": {k: v for k, v in t.items()},
        "abm_ml_s": abm_s,
        "reference_s": ref_s,
        "reference_same_lightgbm_work_s": ref_same_work_s,
        "loop_wall_s": wall,
        "abm_ml_rows_per_s": done / abm_s if abm_s else None,
        "reference_rows_per_s": done / ref_s if ref_s else None,
        "reference_same_lightgbm_work_rows_per_s": done / ref_same_work_s
        if ref_same_work_s
        else None,
        "ratio_vs_reference": ref_s / abm_s if abm_s else None,
        "ratio_vs_same_lightgbm_work": ref_same_work_s / abm_s if abm_s else None,
        # The goal's measure: abm-ml's rows/s over LightGBM pred_contrib's alone, with the
        # reference's threads in one call, and laid out in abm-ml's worker threads.
        "ratio_vs_pred_contrib": t["ref_contrib"] / abm_s if abm_s else None,
        "ratio_vs_pred_contrib_in_workers": t["ref_contrib_in_workers"] / abm_s if abm_s else None,
        "rss_before_stream_bytes": rss_start,
        "peak_rss_bytes": peak_rss_self(),
        "peak_rss_after_each_chunk_bytes": chunk_peaks,
        "output_parquet_bytes": output_bytes,
        "top_10_account_ids": top_ids,
    }


def one_record(rows_file: Path, scorer_file: Path, n_records: int) -> dict:
    """Child: one record at a time, in process, against LightGBM's own calls on that record.

    Paths: ``score_record`` (the one-record path: parse, matrix row, propensity with
    reasons, velocity with and without its reasons), ``score`` on a one-row DataFrame (the
    frame path, what a single request cost before the one-record path), and two references
    on the record's already preprocessed row, through LightGBM's Python API: the narrow one,
    ``booster.predict(raw_score=True)`` + ``booster.predict(pred_contrib=True)`` of the
    propensity model, and the same-work one, the LightGBM calls ``score_record`` makes
    (propensity ``pred_contrib``, the three velocity quantiles, and with velocity reasons
    the P50 model's ``pred_contrib``).
    """
    quiet_warnings()
    import joblib
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from abm_ml.testing import json_records

    scorer = joblib.load(scorer_file)
    # The reference is the propensity model's own library (LightGBM, CatBoost, a blend of them).
    model = scorer.propensity_model
    threads = lightgbm_threads()
    batch = next(pq.ParquetFile(rows_file).iter_batches(batch_size=n_records))
    frame = batch.to_pandas()
    records = json_records(frame, scorer.features, n_records)
    velocity_boosters = list(scorer.velocity.boosters.values()) if scorer.velocity else []
    p50 = scorer.velocity.boosters["p50"] if scorer.velocity else None
    rows = [
        scorer.preprocessor.matrix(
            scorer.preprocessor.raw_values(scorer._canonical(pd.DataFrame.from_records([r])))
        )
        for r in records
    ]
    paths = {
        "score_record": lambda r, x: scorer.score_record(r),
        "score_record_no_velocity_reasons": lambda r, x: scorer.score_record(
            r, with_velocity_reasons=False
        ),
        "score_one_row_frame": lambda r, x: scorer.score(pd.DataFrame.from_records([r])),
        "reference": lambda r, x: (
            model.raw(x),
            model.contributions(x),
        ),
        # The LightGBM calls score_record itself asks for, through LightGBM's Python API:
        # propensity pred_contrib, the three velocity quantiles and, with velocity reasons,
        # the P50 model's pred_contrib.
        "reference_same_work": lambda r, x: (
            model.contributions(x),
            *(b.predict(x, num_threads=threads) for b in velocity_boosters),
            p50.predict(x, pred_contrib=True, num_threads=threads),
        ),
        "reference_same_work_no_velocity_reasons": lambda r, x: (
            model.contributions(x),
            *(b.predict(x, num_threads=threads) for b in velocity_boosters),
        ),
    }
    if scorer.velocity is None:
        for name in ("reference_same_work", "reference_same_work_no_velocity_reasons"):
            paths.pop(name)
    for name, call in paths.items():  # warm-up: lazy lookups, first-call allocations
        call(records[0], rows[0])
    times: dict[str, list[float]] = {name: [] for name in paths}
    # Each path runs over the records in a block of its own (a service serves one path over
    # and over), in ONE_RECORD_ROUNDS rounds so machine noise hits every path alike. Paths
    # interleaved record by record measured each one with caches left cold by the one
    # before it (LightGBM's own calls took twice as long after the DataFrame path).
    for _ in range(ONE_RECORD_ROUNDS):
        for name, call in paths.items():
            # The DataFrame path is ~100x slower: a tenth of the records are enough.
            n = len(records) // 10 if name == "score_one_row_frame" else len(records)
            for record, x in zip(records[:n], rows[:n]):
                t0 = time.perf_counter()
                call(record, x)
                times[name].append(time.perf_counter() - t0)
    out = {
        name: {
            "p50_ms": float(np.median(ts) * 1e3),
            "p90_ms": float(np.percentile(ts, 90) * 1e3),
            "p99_ms": float(np.percentile(ts, 99) * 1e3),
        }
        for name, ts in times.items()
    }
    ref = out["reference"]["p50_ms"]
    same = {
        "score_record": "reference_same_work",
        "score_record_no_velocity_reasons": "reference_same_work_no_velocity_reasons",
    }
    return {
        "records": len(records),
        "lightgbm_threads": threads,
        "latency": out,
        "ratio_vs_reference": {
            name: out[name]["p50_ms"] / ref
            for name in paths
            if name != "reference" and not name.startswith("reference_")
        },
        "ratio_vs_same_lightgbm_work": {
            name: out[name]["p50_ms"] / out[other]["p50_ms"]
            for name, other in same.items()
            if other in out
        },
    }


def rank_in_memory(rows_file: Path, scorer_file: Path, n_rows: int, k_up: int) -> dict:
    """Child: the CLI's in-memory path, ``rank_accounts`` on one DataFrame of ``n_rows`` rows."""
    quiet_warnings()
    import joblib
    import pandas as pd
    import pyarrow.parquet as pq

    from abm_ml.modeling.ranking import rank_accounts

    scorer = joblib.load(scorer_file)
    parts, done = [], 0
    for batch in pq.ParquetFile(rows_file).iter_batches(batch_size=CHUNK_ROWS):
        parts.append(batch.slice(0, min(batch.num_rows, n_rows - done)).to_pandas())
        done += len(parts[-1])
        if done >= n_rows:
            break
    accounts = pd.concat(parts, ignore_index=True)
    del parts
    rss_start = rss_self()
    with Stopwatch() as sw:
        result = rank_accounts(scorer, accounts, tiers=(10, 50, 500), k_up=k_up)
    return {
        "rows": len(accounts),
        "ranked": len(result.ranked),
        "seconds": sw.seconds,
        "rows_per_s": len(accounts) / sw.seconds,
        "rss_before_bytes": rss_start,
        "peak_rss_bytes": peak_rss_self(),
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def markdown(report: dict) -> str:
    """The batch-explain section of docs/benchmarks.md."""
    if report.get("status") != "ok":
        return f"_Skipped: {report.get('note', report.get('status'))}_"
    model, data = report["model"], report["data"]
    out = [
        f"Model: `train_models` on a synthetic world of {model['train_accounts']:,} accounts "
        f"(propensity model {model.get('propensity_model', 'lightgbm')}: "
        f"{model['propensity_trees']} boosting rounds in all; {model['features']} features, trained in "
        f"{fmt_seconds(model['train_s'])}). Scoring rows: "
        + (
            f"a synthetic world of {data['generated_accounts']:,} accounts tiled to {data['accounts']:,} rows"
            if data.get("tiled")
            else f"a synthetic world of {data['accounts']:,} accounts (`generate_world` + `build_scoring_rows`, "
            f"{fmt_seconds(data['generate_world_s'] + data['build_scoring_rows_s'])})"
        )
        + f", read from Parquet in chunks of {report['config']['chunk_rows']:,} rows in a fresh process per size. "
        f"abm-ml = read + `AccountScorer.score` (top-{report['config']['k_up']} reasons up, top risk, P10/P50/P90 days) "
        "+ reasons to text, spilled per chunk; then the whole list ranked, tiered and written in order "
        "(`StreamedRanking`, what `abm-ml rank` runs). Reference = LightGBM `predict` + "
        "`predict(pred_contrib=True)` on the preprocessed chunks, timed right after abm-ml in the same process. "
        f"abm-ml scores each chunk's parts on {report['config'].get('workers', 1)} threads shared across chunks "
        f"(`StreamedRanking`, LightGBM {threads_label(report['config'].get('lightgbm_threads', 0))} in each); "
        "the reference's LightGBM gets as many threads in total. "
        f"Goal: ratio >= {report['goal_ratio']}.\n"
    ]
    rows = []
    for run in report["runs"]:
        rows.append(
            [
                f"{run['rows']:,}",
                f"{run['abm_ml_rows_per_s']:,.0f}",
                f"{run['reference_rows_per_s']:,.0f}",
                f"**{run['ratio_vs_reference']:.2f}**",
                f"{run['ratio_vs_same_lightgbm_work']:.2f}",
                _ratio(run.get("ratio_vs_pred_contrib")),
                _ratio(run.get("ratio_vs_pred_contrib_in_workers")),
                fmt_seconds(run["abm_ml_s"]),
                fmt_bytes(run["peak_rss_bytes"]),
                fmt_bytes(run["rss_before_stream_bytes"]),
            ]
        )
    out.append(
        md_table(
            [
                "rows",
                "abm-ml rows/s",
                "reference rows/s",
                "ratio",
                "ratio vs same LightGBM work",
                "vs pred_contrib",
                "vs pred_contrib in abm-ml's threads",
                "abm-ml time",
                "peak RSS",
                "RSS before streaming",
            ],
            rows,
        )
    )
    if report["runs"]:
        last = report["runs"][-1]
        s = last["seconds"]
        out.append(
            f"\nWhere abm-ml's time goes at {last['rows']:,} rows: score (TreeSHAP + calibration + velocity + reasons) "
            f"{fmt_seconds(s['score'])} (with the reasons' text and the spill), read {fmt_seconds(s['read'])}, "
            f"rank the whole list {fmt_seconds(s['rank'])}, write it in order {fmt_seconds(s['write'])}; the reference's `pred_contrib` alone took "
            f"{fmt_seconds(s['ref_contrib'])} and `predict` {fmt_seconds(s['ref_predict'])}. "
            '"Same LightGBM work" = `pred_contrib` + the three velocity quantile predictions, the LightGBM calls '
            "abm-ml itself makes."
        )
    chunked = [r for r in report["runs"] if len(r.get("peak_rss_after_each_chunk_bytes", [])) > 1]
    if chunked:
        r = chunked[-1]
        peaks = r["peak_rss_after_each_chunk_bytes"]
        out.append(
            f"\nMemory while streaming {r['rows']:,} rows: peak RSS {fmt_bytes(peaks[0])} after the first chunk, "
            f"{fmt_bytes(peaks[-1])} after the last ({(peaks[-1] - peaks[0]) / max(len(peaks) - 1, 1) / 2**20:.0f} MiB per "
            "further chunk: ids, sort keys and propensities kept for the final ranking, allocator buffers)."
        )
    rf = report.get("reasons_for_run")
    if rf and report["runs"]:
        full = report["runs"][-1]
        out.append(
            f"\nWith reasons for only the top {rf.get('reasons_for', rf.get('reasons_for_per_chunk')):,} "
            f"accounts of the list (`--reasons-for`): {rf['abm_ml_rows_per_s']:,.0f} rows/s "
            f"vs {full['abm_ml_rows_per_s']:,.0f} explaining every account "
            f"({full['abm_ml_s'] / rf['abm_ml_s']:.1f}x faster; same run, same rows)."
        )
    one = report.get("one_record")
    if one:
        lat, ratio = one["latency"], one["ratio_vs_reference"]
        names = {
            "score_record": "`score_record` (reasons + velocity reasons)",
            "score_record_no_velocity_reasons": "`score_record`, no velocity reasons",
            "score_one_row_frame": "`score` on a one-row DataFrame",
            "reference": "reference: LightGBM predict + pred_contrib on the row",
            "reference_same_work": "same-work reference: the LightGBM calls `score_record` makes",
            "reference_same_work_no_velocity_reasons": "same-work reference, no velocity reasons",
        }
        same = one.get("ratio_vs_same_lightgbm_work", {})
        out.append(
            f"\nOne record in process ({one['records']:,} records, one at a time, p50 over them):\n"
        )
        out.append(
            md_table(
                ["path", "p50", "p90", "p99", "p50 / reference", "p50 / same-work reference"],
                [
                    [
                        label,
                        f"{lat[name]['p50_ms']:.3f} ms",
                        f"{lat[name]['p90_ms']:.3f} ms" if "p90_ms" in lat[name] else "",
                        f"{lat[name]['p99_ms']:.3f} ms",
                        f"{ratio[name]:.2f}" if name in ratio else "",
                        f"{same[name]:.2f}" if name in same else "",
                    ]
                    for name, label in names.items()
                    if name in lat
                ],
            )
        )
    mem = report.get("rank_in_memory")
    if mem:
        out.append(
            f"\nFor contrast, the CLI's in-memory `rank_accounts` on one {mem['rows']:,}-row DataFrame: "
            f"{mem['rows_per_s']:,.0f} rows/s, peak RSS {fmt_bytes(mem['peak_rss_bytes'])}."
        )
    for note in report.get("notes", []):
        out.append(f"\n_{note}_")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="20k rows, a 2,000-account model with a fast config"
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="rows per run (default 100000 1000000; 20000 with --quick)",
    )
    parser.add_argument(
        "--chunk",
        type=int,
        help="rows read and ranked at a time (default: what `abm-ml rank` reads at a time)",
    )
    parser.add_argument("--k-up", type=int, default=3)
    parser.add_argument(
        "--train-accounts",
        type=int,
        help="accounts in the training world (default 5000; 2000 with --quick)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the training world")
    parser.add_argument("--score-seed", type=int, default=11, help="seed of the scoring world")
    parser.add_argument(
        "--tile",
        action="store_true",
        help="generate 100k accounts and tile them instead of a full-size world",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="LightGBM threads for abm-ml and the reference (sets ABM_ML_NUM_THREADS; default: abm-ml's default)",
    )
    parser.add_argument(
        "--no-rank-in-memory", action="store_true", help="skip the in-memory rank_accounts contrast"
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="chunks abm-ml scores at once (default: one per core, as `abm-ml rank`)",
    )
    parser.add_argument(
        "--reasons-for",
        type=int,
        default=10_000,
        help="also rank the biggest size explaining only the top N accounts of the list "
        "(0 skips that run)",
    )
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/explain.json)")
    parser.add_argument(
        "--one-record",
        type=int,
        help="records for the one-record latency run (default 1000; 300 with --quick; 0 skips it)",
    )
    parser.add_argument(
        "--worker", choices=["rows", "stream", "rank", "one"], help=argparse.SUPPRESS
    )
    parser.add_argument("--rows-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scorer-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tile-from", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.chunk is None:
        from abm_ml.modeling.rank_stream import READ_ROWS

        args.chunk = READ_ROWS

    if args.worker == "rows":
        print(
            json.dumps(
                make_rows(args.rows_file, args.n, args.score_seed, args.chunk, args.tile_from)
            )
        )
        return 0
    if args.worker == "stream":
        print(
            json.dumps(
                stream(
                    args.rows_file,
                    args.scorer_file,
                    args.n,
                    args.chunk,
                    args.k_up,
                    args.workers,
                    args.reasons_for or None,
                )
            )
        )
        return 0
    if args.worker == "one":
        print(json.dumps(one_record(args.rows_file, args.scorer_file, args.n)))
        return 0
    if args.worker == "rank":
        print(json.dumps(rank_in_memory(args.rows_file, args.scorer_file, args.n, args.k_up)))
        return 0

    quiet_warnings()
    if args.threads is not None:
        os.environ["ABM_ML_NUM_THREADS"] = str(args.threads)  # inherited by the child processes
    import joblib

    from abm_ml.modeling.train import TrainConfig, train_models
    from abm_ml.service.settings import available_cores

    workers = args.workers or available_cores()

    sizes = sorted(args.sizes or ([20_000] if args.quick else [100_000, 1_000_000]))
    train_accounts = args.train_accounts or (2000 if args.quick else 5000)
    report = base_report(NAME, quick=args.quick, argv=argv)
    report.update({"goal_ratio": GOAL_RATIO, "notes": [], "runs": []})
    if args.quick:
        # Smoke mode: fewer, larger boosting steps; the throughput ratio is indicative only.
        config = TrainConfig(
            seed=42,
            n_boot=20,
            learning_rate=0.1,
            early_stopping_rounds=30,
            max_rounds=400,
            velocity_aft=False,
        )
        report["notes"].append(
            f"Quick mode: {sizes[-1]:,} rows, a {train_accounts:,}-account model with learning rate 0.1 "
            "(fewer trees than the default model, so TreeSHAP is cheaper)."
        )
    else:
        config = TrainConfig(seed=42)
    report["config"] = {
        "sizes": sizes,
        "lightgbm_threads": lightgbm_threads(),
        "workers": workers,
        "chunk_rows": args.chunk,
        "k_up": args.k_up,
        "train_accounts": train_accounts,
        "train_seed": args.seed,
        "score_seed": args.score_seed,
        "train_config": vars(config),
    }

    with tempfile.TemporaryDirectory(prefix="abm-bench-explain-") as tmp:
        tmp = Path(tmp)
        print(f"training the model on {train_accounts:,} synthetic accounts...", flush=True)
        with synthetic_dataset(train_accounts, seed=args.seed) as dataset, Stopwatch() as sw:
            result = train_models(dataset, config)
        scorer_file = tmp / "scorer.joblib"
        joblib.dump(result.scorer, scorer_file)
        report["model"] = {
            "train_accounts": train_accounts,
            "train_rows": len(dataset.frame),
            "train_s": sw.seconds,
            "propensity_model": result.propensity_choice,
            "propensity_trees": int(
                sum(
                    v
                    for k, v in result.best_iterations.items()
                    if k.startswith("propensity_") and k != "propensity_refitted"
                )
            ),
            "velocity_trees": {
                k: v for k, v in result.best_iterations.items() if k.startswith("velocity")
            },
            "features": len(result.scorer.features),
            "roc_auc": result.propensity["abm-ml"]["roc_auc"].value,
        }
        del result, dataset

        biggest = sizes[-1]
        rows_file = tmp / "scoring_rows.parquet"
        print(f"scoring rows for {biggest:,} synthetic accounts...", flush=True)
        base = [
            "--worker",
            "rows",
            "--rows-file",
            str(rows_file),
            "--n",
            str(biggest),
            "--score-seed",
            str(args.score_seed),
            "--chunk",
            str(args.chunk),
        ]
        tile_from = min(CHUNK_ROWS, biggest) if args.tile else None
        try:
            if biggest <= CHUNK_ROWS and not tile_from:
                # Small worlds: no need for a fresh process (saves one round of imports).
                data = make_rows(rows_file, biggest, args.score_seed, args.chunk, None)
                data["peak_rss_bytes"] = None  # the parent's ru_maxrss says nothing about this step
            else:
                data = _run_child(base + (["--tile-from", str(tile_from)] if tile_from else []))
        except RuntimeError as error:
            if tile_from:
                raise
            tile_from = min(CHUNK_ROWS, biggest)
            report["notes"].append(
                f"Generating {biggest:,} accounts failed ({str(error).splitlines()[-1][:200]}); "
                f"tiled {tile_from:,} generated accounts instead."
            )
            data = _run_child(base + ["--tile-from", str(tile_from)])
        report["data"] = data
        if data.get("tiled"):
            report["notes"].append(
                f"Scoring rows: {data['generated_accounts']:,} generated accounts tiled to {data['accounts']:,} rows."
            )
        print(
            f"  {data['accounts']:,} rows ({fmt_seconds(data['generate_world_s'] + data['build_scoring_rows_s'])}, "
            f"peak RSS {fmt_bytes(data['peak_rss_bytes'])})",
            flush=True,
        )

        n_one = args.one_record if args.one_record is not None else (300 if args.quick else 1000)
        if n_one:
            n = min(n_one, biggest)
            print(f"one record at a time, {n:,} records...", flush=True)
            one = _run_child(
                [
                    "--worker",
                    "one",
                    "--rows-file",
                    str(rows_file),
                    "--scorer-file",
                    str(scorer_file),
                    "--n",
                    str(n),
                ]
            )
            report["one_record"] = one
            print(
                f"  score_record p50 {one['latency']['score_record']['p50_ms']:.3f} ms, "
                f"{one['ratio_vs_reference']['score_record']:.1f}x LightGBM's own calls",
                flush=True,
            )

        def stream_child(n: int, reasons_for: int) -> dict:
            """One streamed run of ``n`` rows in a fresh process (0: reasons for every row)."""
            return _run_child(
                [
                    *("--worker", "stream", "--rows-file", str(rows_file)),
                    *("--scorer-file", str(scorer_file), "--n", str(n)),
                    *("--chunk", str(args.chunk), "--k-up", str(args.k_up)),
                    *("--workers", str(workers), "--reasons-for", str(reasons_for)),
                ]
            )

        for n in sizes:
            print(f"streaming {n:,} rows...", flush=True)
            run = stream_child(n, 0)
            report["runs"].append(run)
            print(
                f"  abm-ml {run['abm_ml_rows_per_s']:,.0f} rows/s vs LightGBM predict+pred_contrib "
                f"{run['reference_rows_per_s']:,.0f} rows/s: ratio {run['ratio_vs_reference']:.2f} "
                f"(goal >= {GOAL_RATIO}); peak RSS {fmt_bytes(run['peak_rss_bytes'])}",
                flush=True,
            )
            report["status"] = "ok"
            write_result(NAME, report, args.out)

        if args.reasons_for:
            n = sizes[-1]
            print(
                f"streaming {n:,} rows, reasons for {args.reasons_for:,} per chunk...", flush=True
            )
            report["reasons_for_run"] = stream_child(n, args.reasons_for)
            r = report["reasons_for_run"]
            print(
                f"  abm-ml {r['abm_ml_rows_per_s']:,.0f} rows/s with reasons for "
                f"{args.reasons_for:,} per chunk; peak RSS {fmt_bytes(r['peak_rss_bytes'])}",
                flush=True,
            )

        if not args.no_rank_in_memory and not args.quick:
            n = min(CHUNK_ROWS, biggest)
            print(f"in-memory rank_accounts on {n:,} rows...", flush=True)
            report["rank_in_memory"] = _run_child(
                [
                    "--worker",
                    "rank",
                    "--rows-file",
                    str(rows_file),
                    "--scorer-file",
                    str(scorer_file),
                    "--n",
                    str(n),
                    "--k-up",
                    str(args.k_up),
                ]
            )
    report["status"] = "ok"
    path = write_result(NAME, report, args.out)
    print(markdown(report))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
