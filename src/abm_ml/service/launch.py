"""Running the service: ``bentoml serve`` on the installed package, with the right environment.

:func:`serve` (``abm-ml serve``) deploys the version behind an alias when needed and replaces
the current process with ``bentoml serve abm_ml.service.bento:AbmScoringService``. The service
is imported from the installed :mod:`abm_ml` package, so it runs from any working directory.
:func:`serve_command` is that command line and environment, for anyone who starts the server
another way (a process manager, the tests, the benchmark).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from abm_ml.service.settings import ENV_BENTO_MODEL, ENV_WORKERS

logger = logging.getLogger(__name__)

SERVICE_IMPORT = "abm_ml.service.bento:AbmScoringService"
"""What ``bentoml serve`` runs: an import path inside the installed package."""


def serve_command(
    bento_model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    workers: int | None = None,
    env: Mapping[str, str] | None = None,
    graceful_shutdown_s: int = 10,
) -> tuple[list[str], dict[str, str]]:
    """The ``bentoml serve`` command line and environment for a deployed Bento model.

    Args:
        bento_model: the Bento model tag to serve (``ABM_ML_BENTO_MODEL`` in the server).
        workers: worker processes (``ABM_ML_WORKERS``); None leaves the environment's
            setting, else one per core.
        env: extra environment for the server (e.g. ``ABM_ML_API_TOKEN``, ``ABM_ML_MAX_RECORDS``).
        graceful_shutdown_s: seconds in-flight requests get after SIGTERM.

    Returns:
        ``(argv, environment)``; the environment is this process's plus the server's settings.
    """
    from abm_ml.service.deploy import bentoml_home

    child = dict(os.environ)
    child.update(env or {})
    child[ENV_BENTO_MODEL] = str(bento_model)
    if workers is not None:
        child[ENV_WORKERS] = str(workers)
    child["BENTOML_HOME"] = bentoml_home()
    child.setdefault("BENTOML_DO_NOT_TRACK", "True")
    # One OpenMP thread per worker: LightGBM's thread start-up dominates small batches (see README).
    child.setdefault("OMP_NUM_THREADS", "1")
    argv = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE_IMPORT,
        "--host",
        host,
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        str(graceful_shutdown_s),
    ]
    return argv, child


def serve(
    host: str = "127.0.0.1",
    port: int = 3000,
    alias: str = "champion",
    workers: int | None = None,
    *,
    model_name: str | None = None,
    bento_model: str | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Serve the model behind ``alias``: deploy it when needed, then become ``bentoml serve``.

    Deploying reads the MLflow store the entry point configured
    (:func:`abm_ml.registry.tracking.configure`; ``abm-ml serve`` does).

    Args:
        alias: registered alias (or version number) to deploy and serve.
        workers: worker processes; None: ``ABM_ML_WORKERS``, else one per core.
        model_name: registered model (default ``ABM_ML_MODEL_NAME`` or ``abm-account-scorer``).
        bento_model: serve this Bento model tag instead of deploying ``alias``.
        env: extra environment for the server (e.g. ``ABM_ML_API_TOKEN``, ``ABM_ML_MAX_RECORDS``).

    Raises:
        AbmInputError: no such alias or version in the registry, or a model that cannot be
            read (naming the version and the file): checked before the server starts.
    """
    from abm_ml.service.deploy import check_deployed, deploy

    tag = bento_model or str(deploy(alias, model_name=model_name))
    check_deployed(tag)  # fail here, not in a worker that crash-loops behind a live /healthz
    argv, child_env = serve_command(tag, host=host, port=port, workers=workers, env=env)
    logger.info("serving Bento model %s on http://%s:%d", tag, host, port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, child_env)
