"""Response times of the sales-ops pages at 100k ranked accounts, against reading the run whole.

Two ranking runs of N accounts (default 100k) are stored in a SQLite score history through
:func:`abm_ml.reporting.history.record_run` (details included), then each page is requested
through the pages' ASGI app in process (SQL, Jinja rendering and HTTP framing included; no
network). The reference, measured in the same run, is what a page without SQL-side paging would
pay before rendering anything: reading the latest run with its details into pandas.

    python bench/bench_web.py                 # 100k accounts
    python bench/bench_web.py --quick         # 10k accounts
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_report, write_result

REPEATS = 5
INPUT_FEATURES = 40
"""Model inputs stored per account (a wide ABM model: activity windows, committee, firmographics)."""


def ranked_run(n: int, as_of: str, version: str, seed: int) -> pd.DataFrame:
    """A ranked run shaped as rank_accounts makes it (scores drawn, not modelled: SQL is measured)."""
    from abm_ml.modeling.ranking import abm_tiers
    from abm_ml.web.waterfall import inputs_json

    rng = np.random.default_rng(seed)
    propensity = rng.beta(2, 5, n)
    amount = rng.lognormal(10, 1, n)
    days = rng.gamma(4, 20, n)
    priority = propensity * amount / np.maximum(days, 1)
    order = np.argsort(-priority, kind="stable")
    frame = pd.DataFrame(
        {
            "account_id": [f"A{i:07d}" for i in range(n)],
            "propensity": propensity,
            "score": np.clip(np.rint(propensity * 100), 1, 99).astype(int),
            "tier": np.where(propensity > 0.5, "A", "B"),
            "days_to_close_p10": days * 0.5,
            "days_to_close_p50": days,
            "days_to_close_p90": days * 1.8,
            "amount": amount,
            "expected_value": propensity * amount,
            "priority": priority,
            "segment": rng.choice(["enterprise", "mid-market", "smb"], n),
            "region": rng.choice(["EMEA", "NA", "APAC", "LATAM"], n),
            "owner": [f"rep-{i % 120}" for i in range(n)],
        }
    ).iloc[order]
    frame["rank"] = np.arange(1, n + 1)
    frame["abm_tier"] = abm_tiers(n, (10, 50, 500))
    reason = {"feature": "web_visits_30d", "value": "12", "probability_points": 0.08}
    frame["top_reasons"] = "+ 12 web visits in the last 30 days; + economic buyer engaged"
    frame["risk"] = "- competitor in place"
    frame["reasons"] = [
        {"up": [{**reason, "text": "12 web visits in the last 30 days"}], "down": []}
    ] * n
    frame["model_inputs"] = inputs_json(model_values(n, rng))
    frame["model_version"], frame["as_of"], frame["model_name"] = version, as_of, "bench"
    return frame.reset_index(drop=True)


def model_values(n: int, rng: np.random.Generator, features: int = INPUT_FEATURES) -> pd.DataFrame:
    """Feature values as the scorer reports them: counts, rates, categories, yes/no, some missing."""
    columns: dict[str, object] = {}
    for j in range(features):
        kind = j % 4
        if kind == 0:
            values = rng.poisson(6, n).astype(float)
        elif kind == 1:
            values = rng.random(n).round(4)
        elif kind == 2:
            values = rng.choice(["software", "retail", "finance", "health"], n).astype(object)
        else:
            values = rng.random(n) < 0.4
        column = pd.Series(values)
        columns[f"feature_{j:02d}"] = column.where(rng.random(n) > 0.1)  # 10 % missing
    return pd.DataFrame(columns)


def median_seconds(call, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k accounts")
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    n = args.accounts or (10_000 if args.quick else 100_000)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    from starlette.testclient import TestClient

    from abm_ml.reporting.history import read_engine, record_run
    from abm_ml.web import create_app
    from abm_ml.web.waterfall import INPUTS_COLUMN, inputs_json

    report = base_report("web", quick=args.quick, argv=argv)
    with tempfile.TemporaryDirectory(prefix="abm-bench-web-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'history.db'}"
        first = ranked_run(n, "2026-01-05", "1", seed=1)
        second = ranked_run(n, "2026-01-12", "2", seed=2)
        start = time.perf_counter()
        record_run(first, url, run_at="2026-01-05T08:00:00")
        record_seconds = time.perf_counter() - start
        # The same run without the detail columns: what storing the details adds to a run.
        from abm_ml.reporting.history import DETAIL_COLUMNS

        bare_url = f"sqlite:///{Path(tmp) / 'bare.db'}"
        start = time.perf_counter()
        record_run(first.drop(columns=list(DETAIL_COLUMNS), errors="ignore"), bare_url)
        bare_seconds = time.perf_counter() - start
        # The details as they were before the model inputs were kept (the account page's
        # waterfall): what keeping them adds to a run.
        no_inputs_url = f"sqlite:///{Path(tmp) / 'no-inputs.db'}"
        start = time.perf_counter()
        record_run(first.drop(columns=[INPUTS_COLUMN]), no_inputs_url)
        no_inputs_seconds = time.perf_counter() - start
        values = model_values(n, np.random.default_rng(1))
        start = time.perf_counter()
        inputs_json(values)
        encode_seconds = time.perf_counter() - start
        inputs_bytes = int(first[INPUTS_COLUMN].str.len().mean())
        record_run(second, url, run_at="2026-01-12T08:00:00")

        engine = read_engine(url)
        # The pages' own columns only: the model inputs (read for one account at a time) would
        # make the reference slower and every ratio look better.
        shown = ", ".join(f"d.{c}" for c in DETAIL_COLUMNS if c != INPUTS_COLUMN)
        reference_sql = (
            f"SELECT h.*, {shown} FROM abm_score_history h JOIN abm_score_details d "
            "ON d.account_id = h.account_id AND d.model_version = h.model_version "
            "AND d.as_of = h.as_of WHERE h.as_of = '2026-01-12' AND h.model_version = '2'"
        )
        reference = median_seconds(lambda: pd.read_sql(reference_sql, engine), 3)
        engine.dispose()

        requests = {
            "list, first page (50 rows)": "/",
            "list, fragment (htmx)": ("/?page=2", {"HX-Request": "true", "HX-Target": "rows"}),
            "tier 1:many": "/?tier=1:many",
            "segment + region + owner": "/?segment=smb&region=EMEA&owner=rep-7",
            "moved up": "/?move=up",
            "sorted by movement": "/?sort=movement",
            "sorted by expected value": "/?sort=expected_value",
            "search by id": "/?q=A00012",
            "last page": f"/?page={n // 50}",
            "account page": "/accounts/A0000042",
            "CSV, tier 1:many (500 rows)": "/accounts.csv?tier=1:many",
            f"CSV, all {n:,} rows": "/accounts.csv",
        }
        timings = {}
        with TestClient(create_app(history_url=url, token="")) as client:
            for label, target in requests.items():
                path, headers = target if isinstance(target, tuple) else (target, {})
                response = client.get(path, headers=headers)
                assert response.status_code == 200, (label, response.status_code)
                repeats = 3 if label.startswith("CSV, all") else REPEATS
                timings[label] = median_seconds(
                    lambda p=path, h=headers: client.get(p, headers=h), repeats
                )
    report.update(
        {
            "accounts": n,
            "reference": "read the latest run with its details into pandas (pd.read_sql)",
            "reference_seconds": reference,
            "record_run_seconds_first_run": record_seconds,
            "record_run_seconds_without_details": bare_seconds,
            "record_run_seconds_details_without_model_inputs": no_inputs_seconds,
            "model_inputs_encode_seconds": encode_seconds,
            "model_inputs_features": INPUT_FEATURES,
            "model_inputs_mean_bytes": inputs_bytes,
            "pages": {
                label: {"median_seconds": s, "ratio_to_reference": s / reference}
                for label, s in timings.items()
            },
        }
    )
    print(f"{n:,} ranked accounts; reference (read the run whole): {reference * 1000:.0f} ms")
    print(
        f"record_run of one run: {record_seconds:.1f} s with details, "
        f"{bare_seconds:.1f} s without ({record_seconds / bare_seconds:.2f}x)"
    )
    print(
        f"model inputs ({INPUT_FEATURES} features, {inputs_bytes} bytes of JSON per account): "
        f"record_run {record_seconds:.2f} s with them, {no_inputs_seconds:.2f} s without "
        f"({record_seconds / no_inputs_seconds:.2f}x); encoding them {encode_seconds:.2f} s"
    )
    for label, s in timings.items():
        print(f"  {label:<32} {s * 1000:8.1f} ms   {s / reference:6.2f}x reference")
    path = write_result("web", report, args.out)
    print(f"-> {path}")
    return report


def markdown(report: dict) -> str:
    """The docs/benchmarks.md section (bench/run_all.py calls it)."""
    from common import md_table

    n = report.get("accounts", 0)
    reference = report.get("reference_seconds") or float("nan")
    with_inputs = report.get("record_run_seconds_first_run") or float("nan")
    without_inputs = report.get("record_run_seconds_details_without_model_inputs")
    bare = report.get("record_run_seconds_without_details")
    lines = [
        (
            f"{n:,} ranked accounts in a SQLite score history, pages requested in process (no "
            f"network). Reference, same run: reading the latest run with its details into pandas, "
            f"{reference * 1000:,.0f} ms.\n"
        ),
        md_table(
            ["page", "median ms", "x reference"],
            [
                [label, f"{p['median_seconds'] * 1000:,.1f}", f"{p['ratio_to_reference']:.2f}"]
                for label, p in (report.get("pages") or {}).items()
            ],
        ),
        "",
        md_table(
            ["storing one run (record_run)", "seconds", "x without details"],
            [
                [label, f"{value:.2f}", f"{value / bare:.2f}" if bare else "n/a"]
                for label, value in (
                    ("scores only (no details)", bare),
                    ("with details, without model inputs", without_inputs),
                    (
                        (
                            f"with details and model inputs "
                            f"({report.get('model_inputs_features')} features, "
                            f"{report.get('model_inputs_mean_bytes')} bytes each)"
                        ),
                        with_inputs,
                    ),
                )
                if value is not None
            ],
        ),
        "",
        f"Encoding the model inputs as JSON: {report.get('model_inputs_encode_seconds', 0):.2f} s.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
