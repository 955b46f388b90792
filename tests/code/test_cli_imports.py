"""`abm-ml --help` answers at once: the heavy libraries load only when a command needs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("mlflow", "shap", "bentoml", "matplotlib", "lightgbm", "catboost", "sklearn", "pyspark")
"""Libraries that take 0.5-2 s each to import; none is needed to print help."""


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["rank", "--help"]])
def test_help_imports_no_heavy_library(argv: list[str]):
    code = (
        "import json, sys\n"
        "from abm_ml.cli import app\n"
        "try:\n"
        f"    app({argv!r})\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
