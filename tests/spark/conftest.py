"""One local Spark session for every Spark test: ``local[2]``, UI off, this interpreter's workers.

Starting the JVM takes seconds, so the session is shared and stopped at the end. Without
pyspark or Java the Spark tests skip with the reason, except in CI (``CI`` set), where
``make test`` and ``.ci/run`` install both and a missing one is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    pytest.importorskip("pyspark", reason="the 'spark' dependency group is not installed")
    if shutil.which("java") is None:
        message = "no Java runtime (apt-get install openjdk-17-jdk-headless)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: .ci/run installs it, so CI must not skip the Spark tests")
        pytest.skip(message)
    from abm_ml.spark import get_session

    session = get_session(master="local[2]", app_name="abm-ml-tests")
    session.conf.set("spark.sql.shuffle.partitions", "4")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
