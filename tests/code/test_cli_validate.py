"""`abm-ml validate SPEC`: the summary on a good spec, one line and exit code 2 on a bad one.

The real console script runs in subprocesses (started together: each pays the import time);
the --json output is checked in-process through the same entry point.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from abm_ml import cli
from abm_ml.errors import EXIT_BAD_INPUT

BAD_SPEC = """\
name: bad
source: {path: DATA}
row_id: Opportunity ID
label: {column: Stage, won: Closed Won, lost: Closed Lost}
features: [Industri]
"""


def _console_script() -> str:
    script = Path(sys.executable).with_name("abm-ml")
    return (
        str(script)
        if script.is_file()
        else (shutil.which("abm-ml") or pytest.skip("abm-ml console script not installed"))
    )


@pytest.fixture(scope="module")
def runs(crm_dir, tmp_path_factory):
    """Run `abm-ml validate` on the good and the bad spec at the same time."""
    folder = tmp_path_factory.mktemp("cli")
    bad = folder / "bad.yaml"
    bad.write_text(BAD_SPEC.replace("DATA", str(crm_dir / "opportunities.csv")))
    env = os.environ | {
        "ABM_ML_REPORTS_DIR": str(folder / "reports"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    env.pop("ABM_ML_DEBUG", None)
    commands = {
        "good": [
            _console_script(),
            "validate",
            str(crm_dir / "spec.yaml"),
            "--rejects",
            str(folder / "rejects.csv"),
        ],
        "bad": [_console_script(), "validate", str(bad)],
    }
    processes = {
        name: subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=folder
        )
        for name, command in commands.items()
    }
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=120)
        results[name] = subprocess.CompletedProcess(
            commands[name], process.returncode, stdout, stderr
        )
    return results, folder, bad


def test_good_spec_exits_0_and_prints_the_summary(runs):
    results, folder, _ = runs
    good = results["good"]
    assert good.returncode == 0, good.stderr
    out = good.stdout
    assert "Validation of tiny-crm" in out
    assert "rows read" in out and "2,400" in out
    assert "accepted" in out and "won" in out and "lost" in out and "open" in out
    assert "web_visits_30d (numeric)" in out
    assert "Traceback" not in good.stderr
    assert (folder / "rejects.csv").is_file()
    assert (folder / "rejects.csv").read_text().startswith("file,line,reason")


def test_bad_spec_exits_2_with_one_line(runs):
    results, _, _ = runs
    result = results["bad"]
    assert result.returncode == EXIT_BAD_INPUT
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert (
        "opportunities.csv" in lines[0]
        and "'Industri'" in lines[0]
        and "did you mean 'Industry'?" in lines[0]
    )
    assert "Traceback" not in result.stderr + result.stdout


def _main(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["abm-ml", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return exited.value.code or 0


def test_json_output_parses(crm_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ABM_ML_REPORTS_DIR", str(tmp_path / "reports"))
    assert _main(monkeypatch, "validate", str(crm_dir / "spec.yaml"), "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "tiny-crm"
    assert summary["rows_read"] == 2400 == summary["accepted"] + summary["rejected"]
    assert set(summary["outcomes"]) == {"won", "lost", "open"}
    assert summary["features"]["has_economic_buyer"] == "boolean"
    assert summary["leakage"] == []
    assert Path(summary["rejects_file"]) == tmp_path / "reports" / "tiny-crm" / "rejects.csv"
    assert Path(summary["rejects_file"]).is_file()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("missing.yaml", "spec file not found"),
        ("broken.yaml", "not valid YAML"),
        ("unknown.yaml", "field `colour`: unknown key"),
    ],
)
def test_bad_input_exits_2_in_process(tmp_path, monkeypatch, capsys, spec, expected):
    (tmp_path / "broken.yaml").write_text("name: [x\n")
    (tmp_path / "unknown.yaml").write_text(
        "name: x\nsource: {path: a.csv}\nlabel: {column: s, won: W, lost: L}\ncolour: red\n"
    )
    monkeypatch.setenv("ABM_ML_REPORTS_DIR", str(tmp_path / "reports"))
    assert _main(monkeypatch, "validate", str(tmp_path / spec)) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and spec in lines[0]
