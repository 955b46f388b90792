"""A Spark session with the settings that matter for scoring, and the model shipped to workers.

The settings (see ``docs/spark.md``):

* ``PYSPARK_PYTHON`` / ``PYSPARK_DRIVER_PYTHON``: the Python workers must run the project's
  interpreter, or they cannot import ``abm_ml`` and LightGBM.
* Threads per task: each task runs LightGBM with :data:`THREADS_PER_TASK` thread(s)
  (``ABM_ML_NUM_THREADS`` in the executors' environment, read by
  :func:`abm_ml.config.num_threads`), so ``executor cores x threads`` never exceeds the cores.
* Arrow batch size: rows handed to pandas at a time (:data:`ARROW_BATCH_ROWS`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark import SparkConf
from pyspark.sql import SparkSession

from abm_ml.errors import AbmInputError
from abm_ml.modeling.scorer import AccountScorer

THREADS_PER_TASK = 1
"""LightGBM threads in one Spark task: Spark already runs one task per executor core."""
ARROW_BATCH_ROWS = 10_000
"""``spark.sql.execution.arrow.maxRecordsPerBatch``: rows per pandas batch (Spark's default)."""
LOCAL_MASTER = "local[2]"


def scoring_conf(conf: SparkConf | None = None) -> SparkConf:
    """Spark settings for scoring: the project's Python, one LightGBM thread per task, Arrow.

    Settings already present in ``conf`` (from ``spark-submit --conf`` or a cluster's
    defaults) are kept; only missing ones are filled in.
    """
    conf = conf or SparkConf()
    defaults = {
        "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable),
        "spark.pyspark.driver.python": os.environ.get("PYSPARK_DRIVER_PYTHON", sys.executable),
        "spark.executorEnv.ABM_ML_NUM_THREADS": str(THREADS_PER_TASK),
        "spark.executorEnv.OMP_NUM_THREADS": str(THREADS_PER_TASK),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH_ROWS),
        # A rerun of one day replaces that day's output partition, not the earlier days.
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
    }
    for key, value in defaults.items():
        if not conf.contains(key):
            conf.set(key, value)
    return conf


def get_session(master: str | None = None, app_name: str = "abm-ml") -> SparkSession:
    """The active Spark session, or a new one with :func:`scoring_conf`.

    Under ``spark-submit`` or on Databricks the cluster's master is used; run as a plain
    Python program, ``master`` (default ``ABM_ML_SPARK_MASTER`` or ``local[2]``) with the UI
    off. The Python workers run this interpreter (``PYSPARK_PYTHON``), set before the JVM starts.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    conf = scoring_conf()
    if master or not conf.contains("spark.master"):
        conf.setMaster(master or os.environ.get("ABM_ML_SPARK_MASTER", LOCAL_MASTER))
    if conf.get("spark.master", "").startswith("local"):
        conf.setIfMissing("spark.ui.enabled", "false")
        conf.setIfMissing("spark.sql.shuffle.partitions", "8")
    return SparkSession.builder.appName(app_name).config(conf=conf).getOrCreate()


def load_scorer(model: str | Path | AccountScorer) -> AccountScorer:
    """The scorer of an MLflow model URI (``models:/name@champion``, ``runs:/...``), a folder or file.

    Raises:
        AbmInputError: nothing at that URI, or no scorer in it.
    """
    if isinstance(model, AccountScorer):
        return model
    import tempfile

    import mlflow

    from abm_ml.registry.pyfunc import read_scorer

    text = str(model)
    if "://" not in text and ":/" not in text:
        if not Path(text).exists():
            raise AbmInputError("model not found", source=text, field="model")
        return read_scorer(text)
    with tempfile.TemporaryDirectory(prefix="abm-spark-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=tmp)
        except Exception as error:  # noqa: BLE001 - MLflow raises many kinds for a bad URI
            raise AbmInputError(
                f"cannot download the model ({type(error).__name__})", source=text, field="model"
            ) from None
        return read_scorer(local, what=text)
