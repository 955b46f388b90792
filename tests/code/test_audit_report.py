"""``make audit``'s verdict: pip-audit's JSON read for what it really checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "audit_report.py"


def verdict(tmp_path: Path, report: dict | None) -> tuple[int, str]:
    path = tmp_path / "pip-audit.json"
    if report is not None:
        path.write_text(json.dumps(report))
    done = subprocess.run(
        [sys.executable, str(TOOL), str(path)], capture_output=True, text=True, check=False
    )
    return done.returncode, done.stdout


@pytest.mark.parametrize(
    ("report", "code", "says"),
    [
        # what pip-audit writes when it cannot reach PyPI's advisory API: it still prints
        # "No known vulnerabilities found" and exits 0
        (
            {
                "dependencies": [
                    {
                        "name": "idna",
                        "skip_reason": "Dependency not found on PyPI and could not be audited: idna (3.10)",
                    }
                ],
                "fixes": [],
            },
            3,
            "NOT A CLEAN AUDIT",
        ),
        ({"dependencies": [], "fixes": []}, 3, "NOT A CLEAN AUDIT"),
        (None, 3, "did not run to the end"),
        (
            {"dependencies": [{"name": "idna", "version": "3.10", "vulns": []}], "fixes": []},
            0,
            "1 checked",
        ),
        (
            {
                "dependencies": [
                    {
                        "name": "jinja2",
                        "version": "3.1.0",
                        "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["3.1.5"]}],
                    }
                ],
                "fixes": [],
            },
            1,
            "VULNERABLE jinja2 3.1.0: GHSA-xxxx (fixed in 3.1.5)",
        ),
    ],
)
def test_the_audit_is_clean_only_when_everything_was_checked(tmp_path, report, code, says):
    exit_code, out = verdict(tmp_path, report)
    assert exit_code == code and says in out
