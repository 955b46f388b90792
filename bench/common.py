"""Helpers shared by the benchmarks: timing, peak memory, machine info, result files.

Benchmarks compare abm-ml with a reference measured in the same run, so figures travel across
machines as ratios. Peak memory is measured per process: a benchmark that needs a clean figure
runs the measured work in a child process and reads that child's ``ru_maxrss`` (which only ever
grows within a process), or samples a child's resident memory with :class:`PeakRSS`.

Nothing here asserts a wall-clock time: a shared CI runner makes absolute times noisy.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import psutil

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SPECS_DIR = ROOT / "training" / "specs"
GIB = 1024**3
MIB = 1024**2

SHARED_SPECS = (
    "ibm-sales-win-loss",
    "maven-crm-sales-opportunities",
    "olist-marketing-funnel",
    "uci-bank-marketing",
)
SYNTH_SPEC = "synthetic-abm"


# --------------------------------------------------------------------------------------------
# Timing and memory
# --------------------------------------------------------------------------------------------


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (wall time, perf_counter)."""

    def __enter__(self) -> Self:
        self.seconds = 0.0
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def peak_rss_self() -> int:
    """This process's peak resident memory so far, in bytes (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_rss_children() -> int:
    """Peak resident memory of the largest waited-for child process, in bytes.

    Linux reports the maximum over all terminated children (and their waited-for
    descendants), not a sum, so call it right after waiting for the one child of interest.
    """
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def rss_self() -> int:
    return psutil.Process().memory_info().rss


class PeakRSS:
    """Samples the resident memory of a process tree in a background thread.

    ``peak`` is the largest *sum* of RSS over the process and its descendants seen at one
    sample (shared pages are counted once per process, so this can overstate a little).
    Short spikes between samples can be missed; pair it with ``ru_maxrss`` when exactness
    matters.
    """

    def __init__(self, pid: int | None = None, *, interval: float = 0.05, children: bool = True):
        self.pid = pid or os.getpid()
        self.interval = interval
        self.children = children
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        try:
            proc = psutil.Process(self.pid)
            procs = [proc, *proc.children(recursive=True)] if self.children else [proc]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a missing package is simply not reported
        return None


def machine_info() -> dict:
    """Cores, memory, CPU model, OS, Python and library versions, and the current load."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_1_5_15": load,
        "versions": {
            name: _version(name)
            for name in ("abm-ml", "lightgbm", "numpy", "pandas", "scikit-learn", "flaml", "mlflow")
        },
    }


def now_utc() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# Result files
# --------------------------------------------------------------------------------------------


def result_path(name: str, out: str | Path | None = None) -> Path:
    return Path(out) if out else RESULTS_DIR / f"{name}.json"


def _json_default(value: object) -> object:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _finite(value: object) -> object:
    """NaN and infinity are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_result(name: str, report: dict, out: str | Path | None = None) -> Path:
    """Write ``report`` as JSON to ``out`` (default ``bench/results/NAME.json``), atomically."""
    path = result_path(name, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(report), indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def _shown_args(argv: list[str]) -> list[str]:
    """Command-line arguments worth showing: without ``--out PATH`` (a detail of who ran it)."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            shown.append(arg)
    return shown


def base_report(name: str, *, quick: bool, argv: list[str] | None = None) -> dict:
    args = _shown_args(list(argv if argv is not None else sys.argv[1:]))
    return {
        "benchmark": name,
        "created": now_utc(),
        "quick": quick,
        "command": " ".join(["python", f"bench/bench_{name}.py", *args]),
        "machine": machine_info(),
    }


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def spec_path(name: str) -> Path:
    return SPECS_DIR / f"{name}.yaml"


def shared_dataset_missing(name: str) -> str | None:
    """Why a shared dataset spec cannot be loaded here (missing files), or None when it can."""
    from abm_ml.data.spec import load_spec

    spec = load_spec(spec_path(name))
    paths = [spec.source.path] + [j.path for j in spec.source.join]
    missing = [p for p in paths if p and not Path(p).is_file()]
    if missing:
        return f"dataset file not found: {missing[0]} (set ABM_ML_SHARED_DATASETS)"
    return None


def load_shared_dataset(name: str):
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset

    return load_dataset(load_spec(spec_path(name)))


@contextmanager
def synthetic_dataset(n_accounts: int = 5000, seed: int = 7) -> Iterator[object]:
    """A synthetic world's training rows loaded through ``training/specs/synthetic-abm.yaml``.

    The world is written to a temporary folder (``ABM_ML_SYNTH_DIR`` points there while
    loading), which is removed on exit.
    """
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset
    from abm_ml.features.point_in_time import build_training_rows
    from abm_ml.synthetic.generate import generate_world

    with tempfile.TemporaryDirectory(prefix="abm-bench-synth-") as tmp:
        world = generate_world(n_accounts, seed=seed)
        build_training_rows(world).to_parquet(Path(tmp) / "training_rows.parquet", index=False)
        del world
        previous = os.environ.get("ABM_ML_SYNTH_DIR")
        os.environ["ABM_ML_SYNTH_DIR"] = tmp
        try:
            dataset = load_dataset(load_spec(spec_path(SYNTH_SPEC)))
        finally:
            if previous is None:
                os.environ.pop("ABM_ML_SYNTH_DIR", None)
            else:
                os.environ["ABM_ML_SYNTH_DIR"] = previous
        yield dataset


def lightgbm_threads() -> int:
    """LightGBM threads abm-ml uses for training and scoring (``ABM_ML_NUM_THREADS``).

    References get the same number, so a ratio compares the code, not the thread count.
    0 means OpenMP's default (all cores). Older abm-ml versions without the setting used 0.
    """
    try:
        from abm_ml.config import num_threads
    except ImportError:
        return 0
    return int(num_threads())


def threads_label(n: int) -> str:
    return "all cores (OpenMP default)" if n == 0 else f"{n} thread{'s' if n > 1 else ''}"


def quiet_warnings() -> None:
    """Silence library chatter (FLAML, LightGBM, sklearn) so benchmark output stays readable."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("flaml", "flaml.automl", "flaml.tune", "mlflow", "lightgbm"):
        logging.getLogger(name).setLevel(logging.ERROR)


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def md_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_metric(m: dict | None, digits: int = 3) -> str:
    """``{"value", "low", "high"}`` as ``0.853 [0.841, 0.866]``."""
    if not m or m.get("value") is None:
        return "n/a"
    value, low, high = m["value"], m.get("low"), m.get("high")
    if low is None or high is None or (low == value == high):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s:.1f} s" if s >= 1 else f"{s * 1000:.0f} ms"
