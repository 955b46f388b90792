"""What a pip-audit run checked, read from its JSON report: the verdict of ``make audit``.

pip-audit prints "No known vulnerabilities found" and exits 0 even when it could not reach its
advisory database (PyPI's JSON API or OSV) and so checked nothing: every dependency then carries
a ``skip_reason`` such as "Dependency not found on PyPI and could not be audited". This script
counts what was really checked and exits non-zero unless every dependency was.

Usage: ``python tools/audit_report.py reports/audit/pip-audit.json``

Exit codes: 0 every dependency checked, none with a known vulnerability; 1 known
vulnerabilities; 3 some or all dependencies not checked (or no report at all).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXIT_VULNERABLE = 1
EXIT_UNCHECKED = 3


def summarize(report: dict) -> tuple[int, list[str]]:
    """The exit code and the lines to print for one pip-audit JSON report."""
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if d.get("skip_reason")]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    checked = len(dependencies) - len(skipped)
    lines = [
        (
            f"pip-audit: {len(dependencies)} dependencies; {checked} checked against the advisory "
            f"database, {len(skipped)} not checked; {len(vulnerable)} with known vulnerabilities"
        )
    ]
    for dep in vulnerable:
        ids = ", ".join(
            f"{v['id']} (fixed in {', '.join(v.get('fix_versions') or ['-'])})"
            for v in dep["vulns"]
        )
        lines.append(f"  VULNERABLE {dep['name']} {dep.get('version', '?')}: {ids}")
    for dep in skipped[:5]:
        lines.append(f"  not checked: {dep['skip_reason']}")
    if len(skipped) > 5:
        lines.append(f"  ... and {len(skipped) - 5} more not checked")
    if vulnerable:
        return EXIT_VULNERABLE, lines
    if not dependencies or skipped:
        lines.append(
            "NOT A CLEAN AUDIT: the dependencies above were not checked (no advisory database "
            "reachable?); 'No known vulnerabilities found' means nothing for them."
        )
        return EXIT_UNCHECKED, lines
    return 0, lines


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "reports/audit/pip-audit.json")
    if not path.is_file():
        print(f"no pip-audit report at {path}: the audit did not run to the end (network?)")
        return EXIT_UNCHECKED
    code, lines = summarize(json.loads(path.read_text()))
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
