"""Helpers shared by the test suite and the benchmarks; not used by the product itself.

* A small CRM opportunity export with planted signal (:func:`make_crm_export`, :data:`CRM_SPEC`):
  winning rises with web visits and an engaged economic buyer, falls with a competitor in
  place; days to close rise with the amount. Made with numpy alone, so the truth is known.
* A private deployment (:func:`bootstrap_deployment`), the service in process
  (:func:`asgi_client`) and a real server in the background (:func:`start_server`,
  :func:`wait_ready`, :func:`stop_server`, :func:`free_port`).
* Request records as a CRM integration sends them (:func:`json_records`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from abm_ml.modeling.feature_info import FeatureInfo
    from abm_ml.modeling.train import TrainConfig

# --------------------------------------------------------------------------------------------
# A small CRM export with planted signal
# --------------------------------------------------------------------------------------------


def make_crm_export(n: int = 2400, seed: int = 3) -> pd.DataFrame:
    """A CRM opportunity export with dates, accounts, open deals and planted drivers."""
    rng = np.random.default_rng(seed)
    accounts = np.array([f"ACC{i:05d}" for i in rng.integers(0, n * 3, n)])
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(
        np.sort(rng.uniform(0, 700, n)), unit="D"
    )
    industry = rng.choice(["software", "fintech", "retail", "manufacturing", "healthcare"], n)
    visits = rng.poisson(4, n)
    buyer = rng.random(n) < 0.45
    competitor = rng.random(n) < 0.3
    employees = np.exp(rng.normal(6, 1.2, n)).round()
    noise = rng.normal(0, 1, n)
    logit = (
        -1.6
        + 0.35 * (visits - 4)
        + 1.3 * buyer
        - 1.0 * competitor
        + 0.5 * np.isin(industry, ["software", "fintech"])
    )
    won = rng.random(n) < 1 / (1 + np.exp(-logit))
    amount = np.exp(rng.normal(10, 0.8, n)).round(2)
    days = np.maximum(3, rng.gamma(4, 8, n) * (amount / 22000) ** 0.5).round()
    closed = created + pd.to_timedelta(days, unit="D")
    is_open = closed > pd.Timestamp("2025-12-31")
    outcome = np.where(is_open, "Open", np.where(won, "Closed Won", "Closed Lost"))
    return pd.DataFrame(
        {
            "Opportunity ID": [f"OPP{i:05d}" for i in range(n)],
            "Account": accounts,
            "Stage": outcome,
            "Created Date": created.strftime("%m/%d/%Y"),
            "Close Date": np.where(is_open, "", closed.strftime("%m/%d/%Y")),
            "Amount": [f"{a:,.2f}" for a in amount],
            "Industry": industry,
            "Employees": employees.astype(int),
            "Web Visits 30d": visits,
            "Economic Buyer Engaged": np.where(buyer, "Yes", "No"),
            "Competitor In Place": np.where(competitor, "yes", "no"),
            "Noise Score": noise.round(3),
        }
    )


CRM_SPEC = {
    "name": "tiny-crm",
    "description": "Test export with planted drivers.",
    "source": {"path": "opportunities.csv"},
    "row_id": "Opportunity ID",
    "account_id": "Account",
    "label": {"column": "Stage", "won": ["Closed Won"], "lost": ["Closed Lost"], "open": ["Open"]},
    "created_at": {"column": "Created Date", "formats": ["%m/%d/%Y"]},
    "closed_at": {"column": "Close Date", "formats": ["%m/%d/%Y"]},
    "amount": "Amount",
    "features": [
        {
            "column": "Industry",
            "name": "industry",
            "type": "categorical",
            "description": "industry",
            "template": "Industry: {value}",
        },
        {
            "column": "Employees",
            "name": "employees",
            "type": "numeric",
            "description": "employees",
            "template": "{value:,.0f} employees",
        },
        {
            "column": "Web Visits 30d",
            "name": "web_visits_30d",
            "type": "numeric",
            "description": "web visits in the last 30 days",
            "template": "{value:.0f} web visits in the last 30 days",
        },
        {
            "column": "Economic Buyer Engaged",
            "name": "has_economic_buyer",
            "type": "boolean",
            "description": "economic buyer engaged",
            "true_text": "Economic buyer engaged",
            "false_text": "No economic buyer in CRM",
        },
        {
            "column": "Competitor In Place",
            "name": "uses_competitor",
            "type": "boolean",
            "description": "competitor in place",
            "true_text": "Competitor's product in use",
            "false_text": "No competitor in place",
        },
        {
            "column": "Amount",
            "name": "deal_amount",
            "type": "numeric",
            "description": "deal amount",
            "template": "Deal size ${value:,.0f}",
        },
        {
            "column": "Noise Score",
            "name": "noise_score",
            "type": "numeric",
            "description": "noise score",
        },
    ],
    "icp": {"industry": ["software", "fintech"], "web_visits_30d": ">= 5"},
}
PLANTED = ("web_visits_30d", "has_economic_buyer", "uses_competitor")


def write_crm_export(folder: str | Path, n: int = 2400, seed: int = 3) -> Path:
    """Write ``opportunities.csv`` and ``spec.yaml`` (:data:`CRM_SPEC`) into ``folder``; the spec's path."""
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    make_crm_export(n, seed).to_csv(folder / "opportunities.csv", index=False)
    (folder / "spec.yaml").write_text(yaml.safe_dump(CRM_SPEC, sort_keys=False))
    return folder / "spec.yaml"


def small_train_config() -> TrainConfig:
    """The training settings of the small test model: quick, and still a real model."""
    from abm_ml.modeling.train import TrainConfig

    # One LightGBM candidate: the suite's many trainings stay as quick as one fit, and the
    # tests that compare with TreeSHAP get a booster; the portfolio has its own tests.
    return TrainConfig(
        n_boot=50,
        learning_rate=0.08,
        max_rounds=400,
        early_stopping_rounds=40,
        candidates=("lightgbm",),
        velocity_candidates=("lightgbm_quantile",),
    )


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def json_records(
    frame: pd.DataFrame, features: Sequence[FeatureInfo], n: int | None = None, *, start: int = 0
) -> list[dict[str, Any]]:
    """Rows as a CRM integration sends them: text categories, numbers, booleans, nulls.

    Rows are cycled when ``n`` exceeds what ``frame`` holds after ``start`` (benchmarks ask for more).
    """
    rows = frame.reset_index(drop=True)
    count = len(rows) - start if n is None else n
    out: list[dict[str, Any]] = []
    for i in range(count):
        r = rows.iloc[(start + i) % len(rows)]
        amount = r.get("amount")
        rec: dict[str, Any] = {
            "account_id": str(r.get("account_id", f"acct-{start + i}")),
            "amount": None if amount is None or pd.isna(amount) else float(amount),
        }
        for f in features:
            v = r.get(f.name)
            if v is None or pd.isna(v):
                rec[f.name] = None
            elif f.type == "categorical":
                rec[f.name] = str(v)
            elif f.type == "boolean":
                rec[f.name] = bool(float(v))
            else:
                rec[f.name] = float(v)
        out.append(rec)
    return out


# --------------------------------------------------------------------------------------------
# A private deployment and a real server
# --------------------------------------------------------------------------------------------


def bootstrap_deployment(
    result: Any, root: str | Path, *, alias: str = "champion"
) -> dict[str, str]:
    """Log a training result to a private MLflow store under ``root``, make it champion, deploy it.

    Sets ``ABM_ML_MODELS_DIR`` (and clears ``MLFLOW_TRACKING_URI``) for this process and points
    MLflow at that store (an entry point's job: tests and benchmarks are entry points); call it
    inside :func:`abm_ml.service.deploy.use_bentoml_home`. A second call with the same ``root``
    reuses the first's work.

    Returns:
        ``{"tag", "models_dir", "version"}``.
    """
    from abm_ml.registry.tracking import configure
    from abm_ml.service.deploy import deploy

    root = Path(root)
    marker = root / "deployment.json"
    models_dir = root / "models"
    os.environ["ABM_ML_MODELS_DIR"] = str(models_dir)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    configure()
    if marker.is_file():
        info = json.loads(marker.read_text())
        import bentoml

        with contextlib.suppress(Exception):
            bentoml.models.get(info["tag"])
            return info
    from abm_ml.registry.promotion import promote
    from abm_ml.registry.tracking import log_training

    logged = log_training(result)
    promote(version=logged["version"])
    tag = deploy(alias)
    info = {"tag": str(tag), "models_dir": str(models_dir), "version": str(logged["version"])}
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(info))
    return info


def asgi_app(service: Any, *, metrics: bool = False) -> Any:
    """``service.to_asgi()``; or, without ``metrics``, the same app without Prometheus metrics,
    whose process-wide collectors can be registered only once (a second app would collide)."""
    if metrics:
        return service.to_asgi()
    from _bentoml_impl.server.app import ServiceAppFactory

    service.inject_config()
    return ServiceAppFactory(service, is_main=True, enable_metrics=False)()


@contextlib.contextmanager
def asgi_client(service: Any, *, metrics: bool = False, **env: str | None) -> Iterator[Any]:
    """A Starlette ``TestClient`` on a fresh :func:`asgi_app`, with ``env`` set meanwhile.

    The lifespan runs inside the block, so the service instance (and an in-process runner)
    reads its settings from ``env``; ``None`` unsets a variable. The environment is restored.
    """
    from starlette.testclient import TestClient

    saved = {name: os.environ.get(name) for name in env}
    try:
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        with TestClient(asgi_app(service, metrics=metrics)) as client:
            yield client
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_server(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: str | Path | None = None,
    log_path: str | Path | None = None,
) -> subprocess.Popen:
    """Start a server command (``abm-ml serve`` or :func:`~abm_ml.service.launch.serve_command`)
    as a child in its own process group, so :func:`stop_server` can stop all it spawns."""
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - the child holds it
    try:
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
    finally:
        if out:
            out.close()


def stop_server(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """Stop a server started by :func:`start_server` and every worker it spawned.

    SIGTERM to the server's process group (graceful: in-flight requests get
    ``--timeout-graceful-shutdown`` seconds), SIGKILL after ``timeout``; then any descendant
    still alive (BentoML's workers) is killed by its pid.
    """
    import psutil

    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if child.is_running():
                child.kill()
    psutil.wait_procs(descendants, timeout=5)
    return proc.returncode


def wait_ready(
    base_url: str,
    *,
    token: str | None = None,
    timeout: float = 180.0,
    proc: subprocess.Popen | None = None,
) -> float:
    """Poll ``/readyz`` until it answers 200; the seconds it took.

    Raises:
        RuntimeError: the server process exited, or it was not ready within ``timeout``.
    """
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    last = "no answer"
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() - started < timeout:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with code {proc.returncode} before it was ready"
                )
            try:
                resp = client.get(f"{base_url}/readyz", headers=headers)
                if resp.status_code == 200:
                    return time.monotonic() - started
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.5)
    raise RuntimeError(f"the server at {base_url} was not ready after {timeout:.0f} s ({last})")
