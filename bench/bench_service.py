"""Benchmark the BentoML scoring service against in-process scoring and a bare ASGI endpoint.

Measured in one run, on the same records:

* **in process**: the steps of a one-record ``POST /score`` without the web server (parse and
  validate the body, :func:`abm_ml.service.handlers.score_rows` = ``score_record``, build and
  encode the answer), ``AccountScorer.score`` on a one-row DataFrame (the frame path) and on
  100 records;
* **served**: a real ``bentoml serve`` on loopback (started here, always stopped here):
  latency p50/p95/p99 of a 1-record and a 100-record ``POST /score``, and throughput of
  1-record requests at 1, 8 and 32 concurrent clients (bounded by a request count and a
  duration per level);
* **reference**: a bare Starlette endpoint under uvicorn (``bench/bare_server.py``) with the
  same number of worker processes, which parses the same JSON bodies and answers a constant, measured
  with the same client and loads: the framework cost any Python service pays here.

The load generator runs on the same machine as the servers and takes CPU from them. It is
``wrk`` (C, one thread; ``bench/wrk_post.lua`` sends the bodies) when it is installed: it costs a
few percent of a core where the Python client took most of one and capped both servers. Without
``wrk`` the httpx client is used, with a printed note; the report names the generator and its
CPU share, and each server's CPU time per request (robust when other jobs share the machine).
Both servers run at once and each throughput level is measured on the service, then on the
reference, so a machine shared with other jobs loads both alike. Ratios (served / reference,
served / in process) come from the same run, so they travel across machines; figures are for
loopback.

Self-contained by default: it trains a small model on the planted CRM export of abm_ml.testing,
logs it to a temporary MLflow store, makes it champion and deploys it into a temporary
``BENTOML_HOME``, all removed at the end. ``--alias champion`` serves the existing registered
model instead (the configured MLflow store and BentoML home), with its holdout rows as records.

Usage::

    python bench/bench_service.py --quick       # fewer requests, 4 s per level
    python bench/bench_service.py               # 300 latency samples, 15 s per level
    python bench/bench_service.py --alias champion
    python bench/bench_service.py --workers 1   # one worker (default: one per core)
    python bench/bench_service.py --generator httpx  # the Python client instead of wrk

Writes ``bench/results/service.json``.
"""

from __future__ import annotations

import argparse
import os
import sys

# Same OpenMP setting as the server (serve() defaults it to 1), set before numpy/lightgbm load;
# override with the environment: OMP_NUM_THREADS=2 python bench/bench_service.py
os.environ.setdefault("OMP_NUM_THREADS", "1")

import asyncio
import contextlib
import json
import re
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_report, quiet_warnings, write_result

CONCURRENCY = (1, 8, 32)
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="fewer requests and shorter throughput runs"
    )
    p.add_argument(
        "--alias",
        default=None,
        help="serve this registered alias/version instead of a self-trained model",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes of both servers (default: one per core, the service's default)",
    )
    p.add_argument(
        "--no-reference", action="store_true", help="skip the bare Starlette reference server"
    )
    p.add_argument(
        "--generator",
        choices=("auto", "wrk", "httpx"),
        default="auto",
        help="load generator for the throughput runs (auto: wrk when installed, else httpx)",
    )
    p.add_argument("--out", default=None, help="result file (default bench/results/service.json)")
    return p.parse_args(argv)


def pct(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None, "n": 0}
    a = np.asarray(values) * 1000
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "n": len(values),
    }


# --------------------------------------------------------------------------------------------
# Model and records
# --------------------------------------------------------------------------------------------


def train_small(folder: Path):
    """The test suite's CRM export with planted drivers, trained as the ``trained`` fixture is."""
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset
    from abm_ml.modeling.train import train_models
    from abm_ml.testing import small_train_config, write_crm_export

    dataset = load_dataset(load_spec(write_crm_export(folder)))
    return train_models(dataset, small_train_config())


def prepare_model(alias: str | None, tmp: Path | None):
    """``(scorer, holdout, bento tag, source)``: a self-trained model deployed under ``tmp``, or
    the registered ``alias`` deployed into the configured BentoML store."""
    from abm_ml.service.deploy import deploy, load_scorer
    from abm_ml.testing import bootstrap_deployment

    if alias is None:
        print("training a small model on the test suite's CRM export ...", flush=True)
        result = train_small(tmp / "crm")
        info = bootstrap_deployment(result, tmp)
        source = "self-trained (abm_ml.testing CRM export), temporary MLflow store and BENTOML_HOME"
        return result.scorer, result.holdout, info["tag"], source
    import bentoml

    from abm_ml.registry.store import download_run_table, resolve_version
    from abm_ml.registry.tracking import configure

    configure()
    tag = str(deploy(alias))
    model = bentoml.models.get(tag)
    mv = resolve_version(model.info.labels["mlflow_model"], model.info.labels["mlflow_version"])
    return load_scorer(model), download_run_table(mv.run_id), tag, f"registered alias {alias!r}"


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def in_process(scorer, pool: list[dict], records_100: list[dict], n: int) -> dict:
    """Where a one-record request's time goes without the server, and the frame path."""
    import orjson

    from abm_ml.service import handlers, responses
    from abm_ml.service.contract import RecordSchema, records_frame
    from abm_ml.service.deploy import DeployedModel
    from abm_ml.service.settings import Settings

    schema = RecordSchema(scorer.features)
    model = DeployedModel(
        tag="bench:1",
        name="bench",
        version="1",
        alias=None,
        run_id=None,
        trained_at=None,
        dataset=None,
        calibration=None,
        deployed_at=None,
        metrics={},
        features=[f.to_dict() for f in scorer.features],
    )
    frontend = handlers.Frontend(model, Settings(), schema)
    bodies = [orjson.dumps({"records": [r]}) for r in pool]
    frames_1 = [records_frame(schema.validate_batch([r]), scorer.features) for r in pool]
    frame_100 = records_frame(schema.validate_batch(records_100), scorer.features)
    steps: dict[str, list[float]] = {
        k: [] for k in ("parse_validate", "score_rows", "answer_json", "request", "frame_1")
    }
    for i in range(n + 3):
        t0 = time.perf_counter()
        parsed = frontend.parse(bodies[i % len(bodies)], "score")
        t1 = time.perf_counter()
        rows = handlers.score_rows(scorer, parsed.records)
        t2 = time.perf_counter()
        responses.dump(frontend.score_body(parsed, rows))
        t3 = time.perf_counter()
        scorer.score(frames_1[i % len(frames_1)])
        t4 = time.perf_counter()
        if i < 3:  # warm-up
            continue
        steps["parse_validate"].append(t1 - t0)
        steps["score_rows"].append(t2 - t1)
        steps["answer_json"].append(t3 - t2)
        steps["request"].append(t3 - t0)
        steps["frame_1"].append(t4 - t3)
    hundred = []
    for _ in range(max(10, n // 3)):
        t = time.perf_counter()
        scorer.score(frame_100)
        hundred.append(time.perf_counter() - t)
    out = {name: pct(values) for name, values in steps.items()}
    s100 = pct(hundred)
    return {
        **out,
        "score_1": out["request"],
        "score_100": s100,
        "records_per_s_1": 1000.0 / out["request"]["mean_ms"],
        "records_per_s_100": 100 * 1000.0 / s100["mean_ms"],
    }


def sequential(client, path: str, payloads: list[dict], n: int) -> tuple[dict, int]:
    latencies, errors = [], 0
    for i in range(n):
        t = time.perf_counter()
        resp = client.post(path, json=payloads[i % len(payloads)])
        dt = time.perf_counter() - t
        if resp.status_code == 200:
            latencies.append(dt)
        else:
            errors += 1
    return pct(latencies), errors


async def _load(
    url: str,
    payloads: list[dict],
    concurrency: int,
    max_requests: int,
    duration: float,
    headers: dict,
) -> dict:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    issued = 0
    deadline = time.perf_counter() + duration

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < max_requests and time.perf_counter() < deadline:
            i = issued
            issued += 1
            t = time.perf_counter()
            try:
                resp = await client.post(
                    "/score", json=payloads[i % len(payloads)], headers=headers
                )
                code = resp.status_code
            except httpx.HTTPError:
                code = -1
            if code == 200:
                latencies.append(time.perf_counter() - t)
            statuses[code] = statuses.get(code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        cpu_started = time.process_time()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        generator_cpu = time.process_time() - cpu_started
    ok = statuses.get(200, 0)
    return {
        "concurrency": concurrency,
        "requests": sum(statuses.values()),
        "ok": ok,
        "errors": sum(statuses.values()) - ok,
        "statuses": {str(k): v for k, v in statuses.items()},
        "seconds": elapsed,
        "requests_per_s": ok / elapsed if elapsed else None,
        "latency": pct(latencies),
        "generator_cpu_seconds": generator_cpu,
    }


def load_wrk(url: str, bodies: Path, concurrency: int, duration: float, headers: dict) -> dict:
    """One ``wrk`` run of 1-record ``POST /score`` at ``concurrency`` connections, one thread."""
    argv = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "60s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        str(bodies),
        "/score",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=duration + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = re.search(r"^WRK_JSON (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        raise RuntimeError(
            f"wrk failed ({done.returncode}): {done.stdout[-800:]}{done.stderr[-800:]}"
        )
    w = json.loads(found.group(1))
    errors = sum(w[k] for k in w if k.startswith("errors_"))
    elapsed = w["duration_us"] / 1e6
    ok = w["requests"] - w["errors_status"]
    return {
        "concurrency": concurrency,
        "requests": w["requests"],
        "ok": ok,
        "errors": errors,
        "errors_by_kind": {k[len("errors_") :]: w[k] for k in w if k.startswith("errors_")},
        "seconds": elapsed,
        "requests_per_s": ok / elapsed if elapsed else None,
        # wrk's histogram covers every answered request (non-2xx included: errors shows those)
        "latency": {
            "p50_ms": w["latency_p50_us"] / 1000,
            "p95_ms": w["latency_p95_us"] / 1000,
            "p99_ms": w["latency_p99_us"] / 1000,
            "mean_ms": w["latency_mean_us"] / 1000,
            "n": w["requests"],
        },
        "generator_cpu_seconds": (after.ru_utime + after.ru_stime)
        - (before.ru_utime + before.ru_stime),
    }


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds used so far by a server process and each of its children (workers), by pid."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    used: dict[int, float] = {}
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            used[proc.pid] = times.user + times.system
    return used


def start(argv: list[str], env: dict, run_dir: Path, port: int, name: str):
    """Start a server, wait until ``/readyz`` answers 200; the process (stopped by the caller)."""
    from abm_ml.testing import start_server, stop_server, wait_ready

    log = run_dir / f"abm-bench-{name}-{port}.log"
    t0 = time.perf_counter()
    proc = start_server(argv, env, log_path=log)
    proc.bench_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        wait_ready(proc.bench_url, timeout=300, proc=proc)  # type: ignore[attr-defined]
    except BaseException:
        stop_server(proc)
        raise
    proc.bench_startup = time.perf_counter() - t0  # type: ignore[attr-defined]
    proc.bench_name = name  # type: ignore[attr-defined]
    print(f"  {name} ready in {proc.bench_startup:.1f} s", flush=True)  # type: ignore[attr-defined]
    return proc


def start_service(tag: str, workers: int, env: dict, run_dir: Path):
    from abm_ml.service.launch import serve_command
    from abm_ml.testing import free_port

    port = free_port()
    argv, server_env = serve_command(tag, port=port, workers=workers, env=env)
    return start(argv, server_env, run_dir, port, "abm-ml service")


def start_reference(workers: int, env: dict, run_dir: Path):
    """``bench/bare_server.py`` under uvicorn with ``workers`` processes."""
    from abm_ml.testing import free_port

    port = free_port()
    argv = [
        sys.executable,
        str(Path(__file__).resolve().parent / "bare_server.py"),
        str(port),
        str(workers),
    ]
    return start(argv, {**os.environ, **env}, run_dir, port, "bare Starlette reference")


def measure_latency(proc, payload_1: list[dict], payload_100: list[dict], n_latency: int) -> dict:
    """Warm-up, then sequential latency of 1- and 100-record ``POST /score`` (httpx, one client)."""
    import httpx

    served: dict = {"startup_seconds": proc.bench_startup, "throughput": []}
    with httpx.Client(base_url=proc.bench_url, timeout=60) as client:
        for i in range(30):
            client.post("/score", json=payload_1[i % len(payload_1)])
        client.post("/score", json=payload_100[0])
        served["score_1"], e1 = sequential(client, "/score", payload_1, n_latency)
        served["score_100"], e100 = sequential(
            client, "/score", payload_100, max(10, n_latency // 3)
        )
    served["latency_errors"] = e1 + e100
    return served


def measure_throughput(
    proc,
    concurrency: int,
    payload_1: list[dict],
    max_requests: int,
    duration: float,
    generator: str,
    bodies: Path,
) -> dict:
    """One throughput level of 1-record requests, with the server's CPU time per request."""
    from abm_ml.service.settings import available_cores

    url = proc.bench_url
    cpu_before = tree_cpu_seconds(proc.pid)
    if generator == "wrk":
        run = load_wrk(url, bodies, concurrency, duration, {})
    else:
        run = asyncio.run(_load(url, payload_1, concurrency, max_requests, duration, {}))
    cpu_after = tree_cpu_seconds(proc.pid)
    by_process = [cpu_after[p] - cpu_before.get(p, 0.0) for p in cpu_after]
    server_cpu = sum(by_process)
    run["server_cpu_ms_per_request"] = (
        1000 * server_cpu / run["requests"] if run["requests"] else None
    )
    # The workers share one listening socket: a pool of connections opened at once can land on
    # one worker. The busiest process's share shows it (1/workers = even).
    run["server_cpu_share_busiest_process"] = (
        max(by_process) / server_cpu if server_cpu > 0 else None
    )
    # share of the machine's cores the load generator used while it ran
    run["generator_cpu_share"] = run["generator_cpu_seconds"] / (run["seconds"] * available_cores())
    run["load_average_1m"] = os.getloadavg()[0]
    print(
        f"  {proc.bench_name}, {concurrency:>2} clients: {run['requests_per_s']:.1f} req/s, "
        f"p50 {run['latency']['p50_ms'] or float('nan'):.1f} ms, errors {run['errors']}, "
        f"server CPU {run['server_cpu_ms_per_request'] or float('nan'):.3f} ms/request "
        f"({100 * (run['server_cpu_share_busiest_process'] or 0):.0f}% in the busiest "
        f"process), {generator} {100 * run['generator_cpu_share']:.0f}% of the cores",
        flush=True,
    )
    return run


def ratios(ip: dict, served: dict, reference: dict | None) -> dict[str, float | None]:
    """Flat ``name -> ratio``: served over in process, and served over the bare reference."""
    by_c = {run["concurrency"]: run["requests_per_s"] or 0.0 for run in served["throughput"]}
    out: dict[str, float | None] = {
        "latency_p50_1_record_served_over_in_process": served["score_1"]["p50_ms"]
        / ip["score_1"]["p50_ms"],
        "latency_p50_100_records_served_over_in_process": served["score_100"]["p50_ms"]
        / ip["score_100"]["p50_ms"],
        "in_process_frame_path_over_request_steps_p50": ip["frame_1"]["p50_ms"]
        / ip["request"]["p50_ms"],
    }
    for c, v in by_c.items():
        out[f"throughput_c{c}_over_in_process_1_record_calls"] = v / ip["records_per_s_1"]
    out["throughput_c32_over_c1"] = by_c[32] / by_c[1] if by_c.get(1) else None
    if reference is not None:
        ref_c = {
            run["concurrency"]: run["requests_per_s"] or 0.0 for run in reference["throughput"]
        }
        for c, v in by_c.items():
            out[f"throughput_c{c}_over_reference"] = v / ref_c[c] if ref_c.get(c) else None
        out["latency_p50_1_record_over_reference"] = (
            served["score_1"]["p50_ms"] / reference["score_1"]["p50_ms"]
        )
    return out


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    quiet_warnings()
    import logging

    logging.getLogger("abm_ml").setLevel(logging.WARNING)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    from abm_ml.service.deploy import use_bentoml_home
    from abm_ml.service.settings import available_cores
    from abm_ml.testing import json_records, stop_server

    n_latency = 40 if args.quick else 300
    duration = 4.0 if args.quick else 15.0
    max_requests = 400 if args.quick else 5000
    workers = args.workers or available_cores()
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "httpx"
        if generator == "httpx":
            print(
                "note: wrk is not installed (Debian: apt-get install wrk); the throughput runs "
                "use the httpx client, which shares the cores with the servers and caps both",
                flush=True,
            )
    elif generator == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--generator wrk: wrk is not installed (Debian: apt-get install wrk)")
    report = base_report("service", quick=args.quick, argv=argv)
    report["settings"] = {
        "workers": workers,
        "omp_num_threads": os.environ["OMP_NUM_THREADS"],
        "latency_requests": n_latency,
        "throughput_seconds_per_level": duration,
        "throughput_max_requests_per_level": max_requests,
        "concurrency": list(CONCURRENCY),
        "load_generator": generator,
        "load_generator_detail": (
            "wrk -t1 (C, one thread), bench/wrk_post.lua"
            if generator == "wrk"
            else "httpx.AsyncClient, one asyncio task per client"
        ),
    }

    tmp = None if args.alias else Path(tempfile.mkdtemp(prefix="abm-bench-service-"))
    home = use_bentoml_home(tmp / "bentoml") if tmp else contextlib.nullcontext()
    saved_env = {
        k: os.environ.get(k)
        for k in ("ABM_ML_MODELS_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    }
    servers: dict = {}
    run_dir = tmp or Path(tempfile.gettempdir())
    env = {"OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]}
    try:
        with home:
            t0 = time.perf_counter()
            scorer, holdout, tag, source = prepare_model(args.alias, tmp)
            report["model"] = {
                "source": source,
                "bento_model": tag,
                "features": len(scorer.features),
                "prepare_seconds": time.perf_counter() - t0,
            }
            features = scorer.features
            pool = json_records(holdout, features, 200)
            payload_1 = [{"records": [r]} for r in pool]
            records_100 = pool[:100]
            payload_100 = [{"records": records_100}]
            bodies = run_dir / "bench-service-bodies.jsonl"
            bodies.write_text("".join(json.dumps(p) + "\n" for p in payload_1))

            print("in process: the steps of a request, and AccountScorer.score ...", flush=True)
            report["in_process"] = in_process(scorer, pool, records_100, n_latency)

            # Both servers are up at once and each throughput level runs on one, then the other:
            # when other jobs share the machine, the two see the same load and the ratio holds.
            print(f"served ({workers} workers) ...", flush=True)
            servers["served"] = start_service(tag, workers, env, run_dir)
            if not args.no_reference:
                print(f"reference: bare Starlette + uvicorn ({workers} workers) ...", flush=True)
                servers["reference"] = start_reference(workers, env, run_dir)
            for key, server in servers.items():
                report[key] = measure_latency(server, payload_1, payload_100, n_latency)
            for c in CONCURRENCY:
                for key, server in servers.items():
                    report[key]["throughput"].append(
                        measure_throughput(
                            server, c, payload_1, max_requests, duration, generator, bodies
                        )
                    )
            for server in servers.values():
                stop_server(server)
            servers.clear()
            report["server"] = {"startup_seconds": report["served"]["startup_seconds"]}
            report["ratios"] = ratios(
                report["in_process"], report["served"], report.get("reference")
            )
    finally:
        for server in servers.values():
            stop_server(server)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    path = write_result("service", report, args.out)
    print_report(report)
    print(f"wrote {path}")
    return report


def print_report(r: dict) -> None:
    ip = r["in_process"]
    modes = {"served": r["served"]}
    if "reference" in r:
        modes["bare Starlette reference"] = r["reference"]

    def row(name: str, a: dict) -> str:
        return (
            f"  {name:<48} p50 {a['p50_ms']:8.3f}  p95 {a['p95_ms']:8.3f}  "
            f"p99 {a['p99_ms']:8.3f} ms  (n={a['n']})"
        )

    m = r["machine"]
    print(f"\nmodel: {r['model']['source']} ({r['model']['bento_model']})")
    print(
        f"workers={r['settings']['workers']}, OMP_NUM_THREADS={r['settings']['omp_num_threads']}, "
        f"{m.get('logical_cores')} cores, load {m.get('load_average_1_5_15')}"
    )
    print("in process, a one-record request step by step")
    for name, label in (
        ("parse_validate", "parse JSON + validate"),
        ("score_rows", "score (score_record + reasons)"),
        ("answer_json", "answer body + orjson"),
        ("request", "all three"),
        ("frame_1", "AccountScorer.score on a 1-row DataFrame"),
    ):
        print(row(label, ip[name]))
    print(row("AccountScorer.score on 100 records", ip["score_100"]))
    print("latency over HTTP")
    for name, sv in modes.items():
        print(row(f"{name}: POST /score 1 record", sv["score_1"]))
        print(row(f"{name}: POST /score 100 records", sv["score_100"]))
    print(
        f"throughput, 1-record requests (load generator: {r['settings']['load_generator_detail']})"
    )
    print(f"  {'in process, sequential requests':<48} {ip['records_per_s_1']:8.1f} records/s")
    for name, sv in modes.items():
        for run in sv["throughput"]:
            lat = run["latency"]
            label = f"{name}, {run['concurrency']} clients"
            print(
                f"  {label:<48} {run['requests_per_s'] or 0:8.1f} req/s"
                f"   p50 {lat['p50_ms'] or float('nan'):.1f}  p99 {lat['p99_ms'] or float('nan'):.1f} ms"
                f"  errors {run['errors']}  server CPU {run.get('server_cpu_ms_per_request') or 0:.3f}"
                f" ms/req  generator {100 * run.get('generator_cpu_share', 0):.0f}% of cores"
            )
    print("ratios (same run)")
    for k, v in r["ratios"].items():
        print(f"  {k:<62} {v:7.2f}" if v is not None else f"  {k:<62}     n/a")


if __name__ == "__main__":
    main()
