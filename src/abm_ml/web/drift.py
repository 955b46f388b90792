"""The model page's drift status: the latest ``abm-ml monitor`` verdict stored for a version.

``abm-ml monitor`` (and ``rank --monitor``) writes each verdict as
``monitor-v<version>-<as_of>.json`` in the monitoring folder
(:func:`abm_ml.cli.monitoring.monitoring_dir`); the page reads the newest one of the version
it shows, at every request (a verdict may arrive while the service runs).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FLAGGED_SHOWN = 8
"""Flagged features listed on the page (the report lists them all)."""


def monitoring_folder() -> Path:
    """Where monitoring verdicts are written (the CLI's one definition of it)."""
    from abm_ml.cli.monitoring import monitoring_dir

    return monitoring_dir()


def latest_verdict(version: str, folder: Path | None = None) -> dict[str, Any] | None:
    """The newest stored monitoring verdict of ``version``, or None when it has none.

    Returns:
        The verdict's JSON (``verdict``, ``as_of``, ``reasons``, ``reference``, ``flagged``,
        ``estimated_roc_auc`` ...) plus ``report`` (the HTML report's file name when present)
        and ``flagged_rows`` (the flagged features' drift rows, at most :data:`FLAGGED_SHOWN`).
        A file that cannot be read is logged and skipped for the next newest.
    """
    folder = folder or monitoring_folder()
    if not folder.is_dir():
        return None
    pattern = re.compile(rf"monitor-v{re.escape(str(version))}-(\d{{4}}-\d{{2}}-\d{{2}})\.json")
    dated = sorted(
        (match.group(1), path)
        for path in folder.glob(f"monitor-v{version}-*.json")
        if (match := pattern.fullmatch(path.name))
    )
    for _, path in reversed(dated):
        try:
            verdict = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            logger.warning("monitoring verdict %s unreadable: %s", path.name, type(error).__name__)
            continue
        if not isinstance(verdict, dict) or "verdict" not in verdict:
            continue
        flagged = set(verdict.get("flagged") or [])
        verdict["flagged_rows"] = [
            row for row in verdict.get("features") or [] if row.get("feature") in flagged
        ][:FLAGGED_SHOWN]
        html = path.with_suffix(".html")
        verdict["report"] = html.name if html.is_file() else None
        return verdict
    return None
