"""The service's settings, read from the environment when a service process starts.

:class:`Settings` holds what each request is checked against (record and body limits, unknown
fields, the access token); :class:`ServiceConfig` the process layout that BentoML needs when it
imports the service module. Reading them creates nothing and configures
nothing; a bad value is an :class:`~abm_ml.errors.AbmInputError` naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from abm_ml import config as cfg
from abm_ml.errors import AbmInputError

ENV_BENTO_MODEL = "ABM_ML_BENTO_MODEL"
"""Bento model tag the service loads (default ``abm-account-scorer:latest``)."""
ENV_MAX_RECORDS = "ABM_ML_MAX_RECORDS"
ENV_MAX_BODY_BYTES = "ABM_ML_MAX_BODY_BYTES"
ENV_IGNORE_UNKNOWN = "ABM_ML_IGNORE_UNKNOWN_FIELDS"
ENV_API_TOKEN = "ABM_ML_API_TOKEN"
ENV_WORKERS = "ABM_ML_WORKERS"
"""Worker processes of the service (default: one per core available to the process)."""
ENV_TIMEOUT_S = "ABM_ML_TIMEOUT_S"
ENV_METRICS = "ABM_ML_METRICS"
"""``0``: no Prometheus request metrics and no ``/metrics`` (on by default: see :class:`ServiceConfig`)."""
ENV_ACCESS_LOG = "ABM_ML_ACCESS_LOG"
"""``1``: BentoML's access log, one line per request (off by default: see :class:`ServiceConfig`)."""
ENV_TRACING = "ABM_ML_TRACING"
"""``1``: OpenTelemetry spans for requests (off by default: see :class:`ServiceConfig`)."""

DEFAULT_MAX_RECORDS = 1000
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_TIMEOUT_S = 60

_TRUE = {"1", "true", "yes", "on"}


def _env_int(name: str, default: int, env: Mapping[str, str], *, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AbmInputError(f"must be an integer, got {raw!r}", field=name) from None
    if value < minimum:
        raise AbmInputError(f"must be at least {minimum}, got {value}", field=name)
    return value


def _env_flag(name: str, env: Mapping[str, str], *, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in _TRUE


def bento_model_name(registered_name: str) -> str:
    """A valid Bento model name for a registered MLflow model name."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", registered_name.lower()).strip("-._")
    return (slug or "abm-account-scorer")[:63]


def bento_model_tag(env: Mapping[str, str] | None = None) -> str:
    """The Bento model the service loads: ``ABM_ML_BENTO_MODEL`` or ``<registered name>:latest``."""
    env = os.environ if env is None else env
    return env.get(ENV_BENTO_MODEL) or f"{bento_model_name(cfg.registered_model_name())}:latest"


@dataclass(frozen=True)
class Settings:
    """Request limits and access, read from the environment when a service instance starts."""

    max_records: int = DEFAULT_MAX_RECORDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ignore_unknown_fields: bool = False
    api_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``ABM_ML_MAX_RECORDS``, ``ABM_ML_MAX_BODY_BYTES``, ``ABM_ML_IGNORE_UNKNOWN_FIELDS``
        and ``ABM_ML_API_TOKEN``.

        Raises:
            AbmInputError: a limit that is not a positive integer, naming the variable.
        """
        env = os.environ if env is None else env
        return cls(
            max_records=_env_int(ENV_MAX_RECORDS, DEFAULT_MAX_RECORDS, env),
            max_body_bytes=_env_int(ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES, env),
            ignore_unknown_fields=_env_flag(ENV_IGNORE_UNKNOWN, env),
            api_token=env.get(ENV_API_TOKEN) or None,
        )


def available_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells, else the count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ServiceConfig:
    """Process layout and BentoML's per-request extras, read when :mod:`abm_ml.service.bento`
    is imported.

    Each worker scores in process with one LightGBM thread, so one worker per core uses the
    machine without threads fighting over it.

    What BentoML does around every request is priced against a one-record request that scores
    in well under a millisecond (bench/bench_service.py, py-spy on a worker): the access log
    writes a line per request through the serve process's pipes, and OpenTelemetry starts a
    span per request even at BentoML's default sample rate of 0, where nothing is ever
    exported; both are off unless ``ABM_ML_ACCESS_LOG=1`` / ``ABM_ML_TRACING=1`` (then
    BentoML's own ``tracing`` settings, e.g. from ``BENTOML_CONFIG``, choose the exporter and
    rate). Prometheus request metrics cost about a tenth of a request and are what operators
    watch, so they stay on; ``ABM_ML_METRICS=0`` turns them off (``/metrics`` then answers 404).
    """

    workers: int = 1
    timeout_s: int = DEFAULT_TIMEOUT_S
    metrics: bool = True
    access_log: bool = False
    tracing: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceConfig:
        """Read ``ABM_ML_WORKERS`` (default: :func:`available_cores`) and ``ABM_ML_TIMEOUT_S``.

        Raises:
            AbmInputError: a value that is not a positive integer, naming the variable.
        """
        env = os.environ if env is None else env
        return cls(
            workers=_env_int(ENV_WORKERS, available_cores(), env),
            timeout_s=_env_int(ENV_TIMEOUT_S, DEFAULT_TIMEOUT_S, env),
            metrics=_env_flag(ENV_METRICS, env, default=True),
            access_log=_env_flag(ENV_ACCESS_LOG, env),
            tracing=_env_flag(ENV_TRACING, env),
        )

    def tracing_config(self) -> dict[str, Any]:
        """BentoML's ``tracing`` settings: every URL excluded unless :attr:`tracing` is on."""
        return {} if self.tracing else {"excluded_urls": [".*"]}
