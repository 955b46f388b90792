"""Run every benchmark and write docs/benchmarks.md from their results.

Each benchmark runs as its own subprocess (``bench/bench_NAME.py``), writes
``RESULTS_DIR/NAME.json`` and its console output to ``RESULTS_DIR/NAME.log``. A benchmark
script that does not exist yet is skipped with a note. The Markdown report is rebuilt from the
latest JSON of every benchmark (also ones not run this time, e.g. with ``--only``), with the
machine, the date and the command that reproduces it.

Usage::

    python bench/run_all.py                          # everything (make bench): docs/benchmarks.md
    python bench/run_all.py --quick                  # smoke mode: bench/results/benchmarks-quick.md
    python bench/run_all.py --quick --only explain   # one benchmark
    python bench/run_all.py --render-only            # rebuild the Markdown from existing JSON

Benchmarks never assert wall-clock times; the exit code is non-zero only if one crashed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from common import (
    BENCH_DIR,
    RESULTS_DIR,
    ROOT,
    fmt_bytes,
    fmt_seconds,
    machine_info,
    md_table,
    now_utc,
)

BENCHMARKS = (
    "quality",
    "train",
    "explain",
    "synth",
    "features",
    "service",
    "web",
    "monitor",
    "roi",
)
TITLES = {
    "quality": "Model quality: abm-ml vs baselines vs FLAML AutoML",
    "train": "Training speed: `abm-ml train`",
    "explain": "Batch ranking with reasons: throughput and memory",
    "synth": "Synthetic world and point-in-time features",
    "features": "Point-in-time features from CRM tables: numpy vs DuckDB",
    "service": "Scoring service",
    "web": "Pages for sales ops: response times and the score history's write cost",
    "monitor": "Drift monitoring and backtest",
    "roi": "ROI and pilot analysis",
}
DOCS = ROOT / "docs" / "benchmarks.md"
HISTORY = ROOT / "bench" / "history.md"


def script(name: str) -> Path:
    return BENCH_DIR / f"bench_{name}.py"


def _flags(path: Path) -> set[str]:
    """Options a benchmark script declares (read from its source: no import, no start-up cost)."""
    return set(
        re.findall(r"add_argument\(\s*[\"'](--[a-z0-9-]+)", path.read_text(errors="replace"))
    )


def run_one(name: str, args: argparse.Namespace, results_dir: Path) -> dict:
    path = script(name)
    if not path.is_file():
        return {"status": "missing", "note": f"bench/{path.name} does not exist (yet): skipped"}
    flags = _flags(path)
    cmd = [sys.executable, str(path)]
    if args.quick:
        if "--quick" not in flags:
            return {
                "status": "skipped",
                "note": f"bench/{path.name} has no --quick mode: skipped in quick mode",
            }
        cmd.append("--quick")
    out = results_dir / f"{name}.json"
    if "--out" in flags:
        cmd += ["--out", str(out)]
    if name == "quality" and args.flaml_budget is not None:
        cmd += ["--flaml-budget", str(args.flaml_budget)]
    log = results_dir / f"{name}.log"
    print(
        f"\n=== {name}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}",
        flush=True,
    )
    started = time.time()
    with log.open("w") as handle:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            handle.write(line)
            if not args.silent:
                sys.stdout.write(line)
                sys.stdout.flush()
        returncode = proc.wait()
    seconds = time.time() - started
    # A script without --out writes to bench/results/NAME.json: take it from there.
    default = RESULTS_DIR / f"{name}.json"
    if (
        "--out" not in flags
        and default.is_file()
        and default.stat().st_mtime >= started
        and default != out
    ):
        out.write_text(default.read_text())
    status = "ok" if returncode == 0 else "failed"
    entry = {
        "status": status,
        "returncode": returncode,
        "seconds": seconds,
        "command": " ".join(["python", f"bench/{path.name}", *cmd[2:]]),
    }
    if returncode != 0:
        entry["log_tail"] = log.read_text(errors="replace")[-2000:]
    if not out.is_file() or out.stat().st_mtime < started:
        entry["note"] = "wrote no result JSON"
    print(f"=== {name}: {status} in {seconds:.0f} s", flush=True)
    return entry


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _scalar(v: object) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def _flatten(d: dict, prefix: str = "", depth: int = 1) -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if _scalar(v):
            out[key] = v
        elif isinstance(v, dict) and depth > 0:
            out.update(_flatten(v, f"{key}.", depth - 1))
    return out


def generic_markdown(report: dict) -> str:
    """A readable rendering of an unknown benchmark's JSON: scalars, then tables of runs."""
    skip = {"benchmark", "created", "machine", "command", "quick"}
    parts = []
    scalars = {
        k: v for k, v in _flatten({k: v for k, v in report.items() if k not in skip}).items()
    }
    if scalars:
        parts.append(md_table(["figure", "value"], [[k, _fmt(v)] for k, v in scalars.items()]))
    for key, value in report.items():
        if (
            key in skip
            or not isinstance(value, list)
            or not value
            or not all(isinstance(x, dict) for x in value)
        ):
            continue
        rows = [_flatten(x) for x in value]
        columns: list[str] = []
        for r in rows:
            columns += [c for c in r if c not in columns]
        columns = columns[:14]
        parts.append(f"\n`{key}`:\n")
        parts.append(md_table(columns, [[_fmt(r.get(c)) for c in columns] for r in rows]))
    return "\n".join(parts) if parts else "_No figures._"


def synth_markdown(report: dict) -> str:
    runs = report.get("runs") or []
    if not runs or "generate_s" not in runs[0]:
        return generic_markdown(report)
    rows = []
    for r in runs:
        ratios = r.get("ratios", {})
        ref = r.get("reference", {})
        rows.append(
            [
                f"{r['n_accounts']:,}",
                ", ".join(f"{k} {v:,}" for k, v in r.get("rows", {}).items()),
                fmt_seconds(r.get("generate_s")),
                fmt_seconds(r.get("training_rows_s")),
                fmt_seconds(r.get("scoring_rows_s")),
                fmt_bytes((r.get("peak_rss_gib") or 0) * 1024**3),
                (
                    f"{ratios.get('generate_vs_numpy_draw', float('nan')):.1f}x numpy draw ({fmt_seconds(ref.get('numpy_draw_s'))}), "
                    f"{ratios.get('generate_vs_parquet_write', float('nan')):.1f}x Parquet write ({fmt_seconds(ref.get('parquet_write_s'))})"
                ),
            ]
        )
    return (
        "Each world size in a fresh process (peak RSS = that process's `ru_maxrss`). References, same process: "
        "drawing as many normal numbers as the world has cells, and writing the world to Parquet.\n\n"
        + md_table(
            [
                "accounts",
                "rows",
                "generate",
                "training rows",
                "scoring rows",
                "peak RSS",
                "generate vs references",
            ],
            rows,
        )
    )


def service_markdown(report: dict) -> str:
    ip, sv = report.get("in_process"), report.get("served")
    if not ip or not sv or "score_1" not in sv:
        return generic_markdown(report)
    settings = report.get("settings", {})
    model = report.get("model", {})

    def lat(a: dict) -> list[str]:
        return [
            f"{a.get(k):.1f}" if a.get(k) is not None else "n/a"
            for k in ("p50_ms", "p95_ms", "p99_ms")
        ] + [str(a.get("n", ""))]

    out = [
        (
            f"Model: {model.get('source', '?')}, {model.get('features', '?')} features. `bentoml serve` on loopback, "
            f"{settings.get('workers')} worker(s), each one process scoring in process (no runner), OMP_NUM_THREADS="
            f"{settings.get('omp_num_threads')}; started in {fmt_seconds(report.get('server', {}).get('startup_seconds'))}. "
            "Reference: `AccountScorer.score` in process on the same records, same run. The load generator shares the machine.\n"
        ),
        md_table(
            ["latency (ms)", "p50", "p95", "p99", "n"],
            [
                ["in process, 1 record", *lat(ip["score_1"])],
                ["served `POST /score`, 1 record", *lat(sv["score_1"])],
                ["in process, 100 records", *lat(ip["score_100"])],
                ["served `POST /score`, 100 records", *lat(sv["score_100"])],
            ],
        ),
        "",
    ]
    rows = [
        ["in process, sequential 1-record calls", f"{ip.get('records_per_s_1', 0):,.1f}", "", ""],
        ["in process, 100-record calls", f"{ip.get('records_per_s_100', 0):,.1f}", "", ""],
    ]
    rows = [row + ["", ""] for row in rows]
    bare = report.get("reference") or {}
    for label, server in (("served", sv), ("bare Starlette reference", bare)):
        for run in server.get("throughput", []):
            la = run.get("latency", {})
            cpu = run.get("server_cpu_ms_per_request")
            share = run.get("server_cpu_share_busiest_process")
            rows.append(
                [
                    f"{label}, {run.get('concurrency')} concurrent clients",
                    f"{run.get('requests_per_s') or 0:,.1f}",
                    f"{la.get('p50_ms') or float('nan'):.1f} / {la.get('p99_ms') or float('nan'):.1f}",
                    str(run.get("errors", "")),
                    "" if cpu is None else f"{cpu:.3f}",
                    "" if share is None else f"{share:.0%}",
                ]
            )
    settings = report.get("settings", {})
    if settings.get("load_generator_detail"):
        out.append(f"Load generator: {settings['load_generator_detail']}.\n")
    out.append(
        md_table(
            [
                "throughput (1-record requests)",
                "records/s",
                "p50 / p99 ms",
                "errors",
                "server CPU ms / request",
                "busiest worker's CPU share",
            ],
            rows,
        )
    )
    ratios = report.get("ratios", {})
    if ratios:
        out.append("\nRatios (same run):\n")
        out.append(
            md_table(
                ["ratio", "value"],
                [[k.replace("_", " "), f"{v:.2f}"] for k, v in ratios.items() if v is not None],
            )
        )
    return "\n".join(out)


def _renderer(name: str):
    if name == "synth":
        return synth_markdown
    if name == "service":
        return service_markdown
    try:
        module = __import__(f"bench_{name}")
        return getattr(module, "markdown", generic_markdown)
    except Exception:  # noqa: BLE001 - an unknown or broken module still gets a generic table
        return generic_markdown


def _headlines(reports: dict[str, dict]) -> list[str]:
    lines = []
    q = reports.get("quality")
    if q:
        counts: dict[str, int] = {}
        n = 0
        for res in q.get("datasets", {}).values():
            if res.get("status") == "ok" and "flaml" in res.get("verdicts", {}):
                n += 1
                for v in res["verdicts"]["flaml"].values():
                    counts[v] = counts.get(v, 0) + 1
        failed = [
            name for name, res in q.get("datasets", {}).items() if res.get("status") == "error"
        ]
        skipped = [
            name for name, res in q.get("datasets", {}).items() if res.get("status") == "skipped"
        ]
        if n:
            lines.append(
                f"- **Quality**: over {n} datasets x 4 metrics, abm-ml vs FLAML AutoML ({q['config']['flaml_budget_s']:g} s): "
                + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("beats", "matches", "behind"))
                + " (95 % bootstrap intervals)."
                + (f" **abm-ml failed on {', '.join(failed)}.**" if failed else "")
                + (f" Skipped (data absent): {', '.join(skipped)}." if skipped else "")
            )
    t = reports.get("train")
    if t and t.get("status") == "ok":
        lines.append(
            f"- **Training**: `abm-ml train {t['spec']}` end to end {fmt_seconds(t['cli']['wall_s'])} "
            f"(goal < {t['goal_seconds']:.0f} s: {'met' if t['goal_met'] else 'not met'}), peak RSS "
            f"{fmt_bytes(t['cli']['peak_rss_bytes'])}; {t['ratios']['cli_vs_lgbm_default_fit']:.1f}x a default LGBMClassifier fit on the same rows."
        )
    e = reports.get("explain")
    if e and e.get("status") == "ok" and e.get("runs"):
        parts = [
            f"{r['rows']:,} rows {r['abm_ml_rows_per_s']:,.0f} rows/s, ratio {r['ratio_vs_reference']:.2f}, peak RSS {fmt_bytes(r['peak_rss_bytes'])}"
            for r in e["runs"]
        ]
        lines.append(
            f"- **Batch explain** (vs LightGBM predict + pred_contrib, goal ratio >= {e['goal_ratio']}): "
            + "; ".join(parts)
            + "."
        )
    return lines


def render(
    results_dir: Path, runs: dict[str, dict], *, quick: bool, started: str, load_start: object
) -> str:
    machine = machine_info()
    reports: dict[str, dict] = {}
    for name in BENCHMARKS:
        path = results_dir / f"{name}.json"
        if path.is_file():
            try:
                reports[name] = json.loads(path.read_text())
            except json.JSONDecodeError:
                pass
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by bench/run_all.py: edit the benchmarks, not this file. -->",
        "",
        (
            f"Generated {started} (UTC) by `python bench/run_all.py{' --quick' if quick else ''}`. "
            "Reproduce with **`make bench`** (everything, refreshes this file) or `make bench-quick` (smoke mode). "
            "Raw results: `bench/results/*.json` (git-ignored)."
        ),
        "",
        f"**Machine**: {machine['cpu_model']}, {machine['logical_cores']} logical cores"
        + (f" ({machine['physical_cores']} physical)" if machine.get("physical_cores") else "")
        + f", {machine['memory_gib']:.1f} GiB memory; {machine['platform']}; Python {machine['python']}; {versions}.",
        "",
        (
            f"Load average (1/5/15 min) at the start: {load_start}; at the end: {machine['load_average_1_5_15']}. "
            "On a shared machine absolute times are noisy: compare the ratios, which pit abm-ml against a reference "
            "measured in the same run. No benchmark asserts a wall-clock time."
        ),
    ]
    if quick:
        out += ["", "> **Quick (smoke) mode**: small budgets and sizes; not the figures to quote."]
    heads = _headlines(reports)
    if heads:
        out += ["", "## Summary", "", *heads]
    if HISTORY.exists() and not quick:
        # Earlier figures are facts of their date: kept by hand in one file, shown as written.
        out += ["", HISTORY.read_text(encoding="utf-8").strip()]
    for name in BENCHMARKS:
        out += ["", f"## {TITLES[name]}", ""]
        run = runs.get(name)
        report = reports.get(name)
        if run and run.get("status") in ("missing", "skipped"):
            out.append(f"_Not run: {run['note']}._")
            if report:
                out.append(f"_Showing the previous result ({report.get('created')})._\n")
            else:
                continue
        if run and run.get("status") == "failed":
            out.append(
                f"**The benchmark failed this run (exit {run.get('returncode')})**; last output:\n"
            )
            out.append("```\n" + run.get("log_tail", "")[-1500:] + "\n```\n")
        if not report:
            if not run:
                out.append("_No results yet: run `python bench/run_all.py`._")
            continue
        meta = (
            f"`{report['command']}`, {report.get('created', '?')}"
            if report.get("command")
            else str(report.get("created", "?"))
        )
        if report.get("quick"):
            meta += ", **quick mode**"
        out.append(f"Source: `bench/results/{name}.json` ({meta}).\n")
        try:
            out.append(_renderer(name)(report))
        except Exception as error:  # noqa: BLE001 - a format change must not lose the other sections
            out.append(f"_Could not render ({type(error).__name__}: {error}); generic view:_\n")
            out.append(generic_markdown(report))
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode of every benchmark")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    parser.add_argument(
        "--skip", nargs="+", choices=BENCHMARKS, default=[], help="do not run these"
    )
    parser.add_argument(
        "--flaml-budget", type=float, help="FLAML budget per dataset for the quality benchmark"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where result JSON and logs go"
    )
    parser.add_argument(
        "--docs",
        type=Path,
        help="Markdown report (default docs/benchmarks.md; bench/results/benchmarks-quick.md with --quick)",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="only rebuild the Markdown from existing results"
    )
    parser.add_argument("--silent", action="store_true", help="do not echo the benchmarks' output")
    args = parser.parse_args(argv)

    results_dir = args.results_dir.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    docs = args.docs or (results_dir / "benchmarks-quick.md" if args.quick else DOCS)
    started = now_utc()
    load_start = machine_info()["load_average_1_5_15"]
    runs: dict[str, dict] = {}
    if not args.render_only:
        selected = [b for b in (args.only or BENCHMARKS) if b not in args.skip]
        for name in selected:
            runs[name] = run_one(name, args, results_dir)
        summary = {
            "created": started,
            "quick": args.quick,
            "machine": machine_info(),
            "load_average_at_start": load_start,
            "runs": runs,
        }
        (results_dir / "run_all.json").write_text(json.dumps(summary, indent=2) + "\n")
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(
        render(results_dir, runs, quick=args.quick, started=started, load_start=load_start)
    )
    print(f"\nwrote {docs}")
    for name, run in runs.items():
        print(f"  {name:8s} {run['status']:8s} {run.get('note', '')}")
    return 1 if any(r["status"] == "failed" for r in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
