"""Benchmark end-to-end training: `abm-ml train SPEC` wall time and peak memory.

The real CLI runs in a child process with a private, temporary MLflow store
(``ABM_ML_MODELS_DIR``), so the figure includes everything a user waits for: imports, data
validation, the propensity model with early stopping and calibration, the velocity quantile
models and the censoring-aware comparison, baselines, bootstrap intervals, SHAP importance,
plots, the model card and MLflow logging and registration. Peak memory is the child's
``ru_maxrss`` (exact, largest single process) and the sampled RSS of its process tree.

The reference, measured in the same run in a fresh child process, is ``LGBMClassifier()`` with
its defaults fitted on the same rows (abm-ml's train + validation rows, same preprocessing).
The same child then runs :func:`abm_ml.train.train_models` in process, so the report can
split the CLI's time into data loading, training and the rest (imports, MLflow logging).

The issue's goal: under 30 s for IBM win-loss on a 2-core machine. Printed, never asserted.
The child's CPU time (user + system) is reported next to its wall time: on a shared machine
the wall time measures the neighbours as much as abm-ml.

Usage::

    python bench/bench_train.py            # IBM sales win-loss (78k opportunities)
    python bench/bench_train.py --quick    # olist marketing funnel (8k leads)

Writes ``bench/results/train.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

from common import (
    ROOT,
    PeakRSS,
    Stopwatch,
    base_report,
    fmt_bytes,
    fmt_seconds,
    lightgbm_threads,
    md_table,
    peak_rss_children,
    peak_rss_self,
    quiet_warnings,
    shared_dataset_missing,
    spec_path,
    threads_label,
    write_result,
)

NAME = "train"
GOAL_SECONDS = 30.0
FULL_SPEC = "ibm-sales-win-loss"
QUICK_SPEC = "olist-marketing-funnel"


class CpuStopwatch(Stopwatch):
    """A :class:`Stopwatch` that also takes this process's CPU seconds (all threads).

    On a machine shared with other jobs the wall time measures the neighbours as much as
    abm-ml; the CPU time of each step does not.
    """

    def __enter__(self) -> Self:
        self.cpu_seconds = 0.0
        self._cpu_start = time.process_time()
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.cpu_seconds = time.process_time() - self._cpu_start


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "abm-ml"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from abm_ml.cli import main; main()"]


def _private_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ABM_ML_MODELS_DIR"] = str(tmp / "models")
    env["ABM_ML_REPORTS_DIR"] = str(tmp / "reports")
    env["ABM_ML_DATA_DIR"] = str(tmp / "data")
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(key, None)
    return env


def run_cli(spec: Path, *, n_boot: int | None) -> dict:
    """`abm-ml train SPEC` in a child process: wall time, exit code, peak memory."""
    with tempfile.TemporaryDirectory(prefix="abm-bench-train-") as tmp:
        shown = spec.relative_to(ROOT) if spec.is_relative_to(ROOT) else spec
        cmd = [*_cli(), "train", str(shown)]
        if n_boot is not None:
            cmd += ["--n-boot", str(n_boot)]
        log = Path(tmp) / "train.log"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with log.open("w") as handle, Stopwatch() as sw:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=_private_env(Path(tmp)), stdout=handle, stderr=subprocess.STDOUT
            )
            with PeakRSS(proc.pid, interval=0.05) as sampler:
                returncode = proc.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        output = log.read_text(errors="replace")
        return {
            "command": " ".join(["abm-ml", *cmd[len(_cli()) :]]),
            "returncode": returncode,
            "wall_s": sw.seconds,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            # Only this child has been waited for so far, so the maximum is its own.
            "peak_rss_bytes": peak_rss_children(),
            "peak_rss_tree_sampled_bytes": sampler.peak,
            "output_tail": output[-3000:],
        }


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time, with the medians of wall and CPU time over all runs.

    The exit code is the first failing run's (0 when all succeeded).
    """
    cli = dict(sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2])
    cli.update(
        {
            "wall_s": statistics.median(r["wall_s"] for r in runs),
            "cpu_s": statistics.median(r["cpu_s"] for r in runs),
            "returncode": next((r["returncode"] for r in runs if r["returncode"]), 0),
            "runs": [
                {k: r[k] for k in ("wall_s", "cpu_s", "peak_rss_bytes", "returncode")} for r in runs
            ],
        }
    )
    return cli


def reference_worker(
    spec: Path, seed: int, n_boot: int | None, breakdown: bool, repeats: int = 3
) -> dict:
    """Runs in a fresh child: load, default LightGBM fit on the same rows, then train_models."""
    quiet_warnings()
    with CpuStopwatch() as sw_import:
        import lightgbm as lgb

        from abm_ml.data.leakage import check_leakage, refused
        from abm_ml.data.spec import load_spec
        from abm_ml.data.split import make_split
        from abm_ml.data.validate import load_dataset
        from abm_ml.modeling.scorer import Preprocessor
        from abm_ml.modeling.train import TrainConfig, train_models
        from abm_ml.schema import OUTCOME, WON
    with CpuStopwatch() as sw_load:
        dataset = load_dataset(load_spec(spec))
    # The rows and features abm-ml trains on: the same split and leakage guard (train_models' code path).
    with CpuStopwatch() as sw_prep:
        frame = dataset.frame
        split = make_split(frame, dataset.spec, seed=seed)
        dropped = refused(check_leakage(frame.iloc[split.train], dataset.features, dataset.spec))
        features = [f for f in dataset.features if f.name not in dropped]
        matrix = Preprocessor(features).fit(frame.iloc[split.train]).transform(frame)
        y = (frame[OUTCOME].to_numpy() == WON).astype(int)
        fit_rows = split.fit_rows
        x_fit, y_fit = matrix.iloc[fit_rows], y[fit_rows]
    # The reference is a yardstick: take the fastest of a few fits, as noise only ever adds time.
    # It gets as many LightGBM threads as abm-ml (ABM_ML_NUM_THREADS), its only non-default.
    threads = lightgbm_threads()
    fits = []
    for _ in range(repeats):
        with Stopwatch() as sw_fit:  # the reference: wall time, fastest of a few
            lgb.LGBMClassifier(verbose=-1, n_jobs=threads or None).fit(x_fit, y_fit)
        fits.append(sw_fit.seconds)
    out = {
        "rows_in_dataset": len(frame),
        "fit_rows": len(fit_rows),
        "features": len(features),
        "import_s": sw_import.seconds,
        "import_cpu_s": sw_import.cpu_seconds,
        "load_dataset_s": sw_load.seconds,
        "load_dataset_cpu_s": sw_load.cpu_seconds,
        "prepare_s": sw_prep.seconds,
        "lightgbm_threads": threads,
        "lgbm_default_fit_s": min(fits),
        "lgbm_default_fit_all_s": fits,
        "peak_rss_bytes": peak_rss_self(),
    }
    if breakdown:
        config = TrainConfig(seed=seed) if n_boot is None else TrainConfig(seed=seed, n_boot=n_boot)
        with CpuStopwatch() as sw_train:
            result = train_models(dataset, config)
        out["train_models_s"] = sw_train.seconds
        out["train_models_cpu_s"] = sw_train.cpu_seconds
        out["train_models_timings"] = dict(result.timings)
        out["best_iterations"] = dict(result.best_iterations)
        out["peak_rss_after_train_models_bytes"] = peak_rss_self()
        # MLflow logging and registration, into a private store as in the CLI run.
        with tempfile.TemporaryDirectory(prefix="abm-bench-train-") as tmp:
            os.environ.update(
                {k: v for k, v in _private_env(Path(tmp)).items() if k.startswith("ABM_ML_")}
            )
            for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
                os.environ.pop(key, None)
            with CpuStopwatch() as sw_mlflow_import:
                from abm_ml.registry import tracking
            with CpuStopwatch() as sw_log:
                tracking.configure()
                info = tracking.log_training(result, register=True)
            out["mlflow_import_s"] = sw_mlflow_import.seconds
            out["mlflow_import_cpu_s"] = sw_mlflow_import.cpu_seconds
            out["mlflow_log_and_register_s"] = sw_log.seconds
            out["mlflow_log_and_register_cpu_s"] = sw_log.cpu_seconds
            try:  # the CLI's HTML training report (optional: absent in older versions)
                from abm_ml.reporting.training_report import training_report

                with CpuStopwatch() as sw_report:
                    training_report(
                        result,
                        Path(tmp) / "report.html",
                        run_id=info["run_id"],
                        version=info.get("version"),
                        model_name=info.get("model_name"),
                    )
                out["html_report_s"] = sw_report.seconds
                out["html_report_cpu_s"] = sw_report.cpu_seconds
            except Exception as error:  # noqa: BLE001 - the breakdown is informative only
                out["html_report_error"] = f"{type(error).__name__}: {error}"
    return out


def markdown(report: dict) -> str:
    """The training-speed section of docs/benchmarks.md."""
    if report.get("status") != "ok":
        return f"_Skipped: {report.get('note', report.get('status'))}_"
    cli, ref = report["cli"], report["reference"]
    r = report["ratios"]
    out = [
        (
            f"`{cli['command']}` in a fresh process with a temporary MLflow store "
            f"({ref['rows_in_dataset']:,} rows in the dataset, {ref['fit_rows']:,} rows fitted: train, validation and the rows held out for validation's sake). "
            f"Reference: `LGBMClassifier()` defaults fitted on the same rows, same run, with abm-ml's LightGBM threads "
            f"({threads_label(ref.get('lightgbm_threads', 0))}). "
            f"Goal: under {report['goal_seconds']:.0f} s on a 2-core machine.\n"
        )
    ]
    rows = [
        [
            "`abm-ml train` end to end (CLI)"
            + (f", CPU {fmt_seconds(cli['cpu_s'])}" if "cpu_s" in cli else "")
            + (f", median of {len(cli['runs'])} runs" if len(cli.get("runs", [])) > 1 else ""),
            fmt_seconds(cli["wall_s"]),
            fmt_bytes(cli["peak_rss_bytes"]),
            f"{r['cli_vs_lgbm_default_fit']:.1f}x",
        ],
    ]
    if "train_models_s" in ref:
        rows.append(
            [
                "`train_models()` in process (no I/O, no MLflow)",
                fmt_seconds(ref["train_models_s"]),
                fmt_bytes(ref.get("peak_rss_after_train_models_bytes")),
                f"{r['train_models_vs_lgbm_default_fit']:.1f}x",
            ]
        )
    rows.append(
        [
            f"reference: `LGBMClassifier()` fit (fastest of {len(ref.get('lgbm_default_fit_all_s', [1]))})",
            fmt_seconds(ref["lgbm_default_fit_s"]),
            fmt_bytes(ref["peak_rss_bytes"]),
            "1.0x",
        ]
    )
    out.append(md_table(["what", "wall time", "peak RSS", "vs reference"], rows))

    def span(source: dict, key: str) -> str:
        """``wall`` or ``wall (CPU cpu)`` of a measured step, as the result recorded it."""
        wall, cpu = source.get(f"{key}_s"), source.get(f"{key}_cpu_s")
        return fmt_seconds(wall) + (f" (CPU {fmt_seconds(cpu)})" if cpu is not None else "")

    parts = [f"imports {span(ref, 'import')}", f"load + validate {span(ref, 'load_dataset')}"]
    t = ref.get("train_models_timings", {})
    if t:
        parts += [
            f"propensity candidates {span(t, 'propensity_search')}",
            *(
                [f"propensity refit + calibration {span(t, 'propensity_refit')}"]
                if "propensity_refit_s" in t
                else []
            ),
            f"propensity search + refit {span(t, 'propensity_fit')}",
            f"velocity fit {span(t, 'velocity_fit')}"
            + (
                f" (alongside the propensity fits, waited for {span(t, 'velocity_wait')})"
                if "velocity_wait_s" in t
                else ""
            ),
            # Since the holdout is scored by the packaged scorer, the velocity metrics and the
            # censoring checks are part of the evaluation.
            f"evaluation (packaged scorer, baselines, velocity checks) {span(t, 'evaluate')}",
        ]
        parts.append(
            f"SHAP importance sample {span(t, 'shap_sample')}"
            + (" (alongside the evaluation)" if "shap_sample_cpu_s" not in t else "")
        )
        rest = cli["wall_s"] - ref["import_s"] - ref["load_dataset_s"] - ref["train_models_s"]
        if "mlflow_log_and_register_s" in ref:
            parts += [
                f"importing MLflow {span(ref, 'mlflow_import')}",
                f"MLflow logging (plots, card, holdout) and registration {span(ref, 'mlflow_log_and_register')}",
            ]
            rest -= ref["mlflow_import_s"] + ref["mlflow_log_and_register_s"]
            if "html_report_s" in ref:
                parts.append(f"HTML training report {span(ref, 'html_report')}")
                rest -= ref["html_report_s"]
            parts.append(
                f"not measured apart (CLI start-up, printing, noise) ~{fmt_seconds(max(rest, 0.0))}"
            )
        else:
            parts.append(
                f"everything else (CLI, MLflow logging, plots, registration) ~{fmt_seconds(max(rest, 0.0))}"
            )
    out.append("\nWhere the time goes (from the in-process run): " + ", ".join(parts) + ".")
    met = "met" if cli["wall_s"] < report["goal_seconds"] else "**not met**"
    out.append(
        f"\nGoal (< {report['goal_seconds']:.0f} s): {met} in this run ({fmt_seconds(cli['wall_s'])})."
    )
    if cli["returncode"] != 0:
        out.append(f"\n**The CLI exited with code {cli['returncode']}.**")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SPEC} instead of {FULL_SPEC}")
    parser.add_argument("--spec", help="dataset spec name (training/specs/NAME.yaml) or path")
    parser.add_argument(
        "--n-boot", type=int, help="bootstrap resamples passed to abm-ml train (default: the CLI's)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="CLI runs; the median wall and CPU times are reported (3 on a shared machine)",
    )
    parser.add_argument(
        "--ref-repeats", type=int, default=3, help="reference fits; the fastest counts"
    )
    parser.add_argument(
        "--no-breakdown", action="store_true", help="skip the in-process train_models run"
    )
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/train.json)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    name = args.spec or (QUICK_SPEC if args.quick else FULL_SPEC)
    spec = Path(name) if name.endswith((".yaml", ".yml")) else spec_path(name)

    if args.worker:
        print(
            json.dumps(
                reference_worker(
                    spec, args.seed, args.n_boot, not args.no_breakdown, args.ref_repeats
                )
            )
        )
        return 0

    report = base_report(NAME, quick=args.quick, argv=argv)
    report.update({"spec": spec.stem, "goal_seconds": GOAL_SECONDS})
    missing = shared_dataset_missing(spec.stem) if spec.parent == spec_path("x").parent else None
    if missing:
        report.update({"status": "skipped", "note": missing})
        print(f"skipped: {missing}")
        write_result(NAME, report, args.out)
        return 0

    runs = []
    for run in range(args.repeats):
        print(f"abm-ml train {spec.name} ({run + 1} of {args.repeats}) ...", flush=True)
        runs.append(run_cli(spec, n_boot=args.n_boot))
        print(
            f"  wall {runs[-1]['wall_s']:.1f} s, CPU {runs[-1]['cpu_s']:.1f} s, "
            f"peak RSS {fmt_bytes(runs[-1]['peak_rss_bytes'])} (exit {runs[-1]['returncode']})",
            flush=True,
        )
    cli = median_run(runs)
    if cli["returncode"] != 0:
        print(cli["output_tail"], file=sys.stderr)

    print(
        "reference: LGBMClassifier() on the same rows (+ in-process train_models) ...", flush=True
    )
    worker_cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--spec",
        str(spec),
        "--seed",
        str(args.seed),
        "--ref-repeats",
        str(args.ref_repeats),
    ]
    if args.n_boot is not None:
        worker_cmd += ["--n-boot", str(args.n_boot)]
    if args.no_breakdown:
        worker_cmd.append("--no-breakdown")
    proc = subprocess.run(worker_cmd, check=False, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        report.update({"status": "error", "note": "reference worker failed", "cli": cli})
        write_result(NAME, report, args.out)
        return 1
    ref = json.loads(proc.stdout.strip().splitlines()[-1])

    ratios = {"cli_vs_lgbm_default_fit": cli["wall_s"] / ref["lgbm_default_fit_s"]}
    if "train_models_s" in ref:
        ratios["train_models_vs_lgbm_default_fit"] = (
            ref["train_models_s"] / ref["lgbm_default_fit_s"]
        )
    report.update(
        {
            "status": "ok" if cli["returncode"] == 0 else "error",
            "cli": cli,
            "reference": ref,
            "ratios": ratios,
            "goal_met": cli["wall_s"] < GOAL_SECONDS,
        }
    )
    path = write_result(NAME, report, args.out)
    print(markdown(report))
    print(f"\nwrote {path}")
    return 0 if cli["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
