"""Score history on SQLite and on a real PostgreSQL server started here on loopback.

The PostgreSQL server is Debian's (``/usr/lib/postgresql/*/bin``): started once per session in
a temporary folder on a free port with trust auth on 127.0.0.1, stopped in teardown even when
tests fail. As root it runs as the ``postgres`` user, since PostgreSQL refuses root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abm_ml.errors import AbmInputError
from abm_ml.reporting.history import TABLE_NAME, load_history, record_run

WEEK1, WEEK2 = "2025-01-06", "2025-01-13"


def ranked_frame(rows: list[tuple], *, as_of: str, version: str = "3") -> pd.DataFrame:
    """A ranked list as rank.py makes it, from (account_id, abm_tier, score) in rank order."""
    n = len(rows)
    scores = np.array([r[2] for r in rows])
    return pd.DataFrame(
        {
            "rank": np.arange(1, n + 1),
            "account_id": [r[0] for r in rows],
            "abm_tier": [r[1] for r in rows],
            "tier": np.where(scores >= 70, "A", np.where(scores >= 40, "B", "C")),
            "propensity": scores / 100.0,
            "score": scores.astype(int),
            "priority": scores * 10.0,
            "expected_value": scores * 1000.0,
            "days_to_close_p50": 30.0,
            "model_name": "abm-account-scorer",
            "model_version": version,
            "as_of": as_of,
        }
    )


RUN1 = [
    ("C", "1:1", 90),
    ("A", "1:few", 60),
    ("B", "1:few", 55),
    ("X", "1:many", 40),
    ("D", "nurture", 10),
]
# A: +18 and up into 1:1; C: same score, still 1:1, rank 1 -> 2; B: -5 and down out of 1:few;
# X: same score and tier (1:many) but rank 4 -> 3; D: gone; E and D2: new.
RUN2 = [
    ("A", "1:1", 78),
    ("C", "1:1", 90),
    ("X", "1:many", 40),
    ("B", "1:many", 50),
    ("E", "nurture", 30),
    ("D2", "nurture", 5),
]


# --------------------------------------------------------------------------- PostgreSQL server


def _pg_bin() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a throwaway PostgreSQL server on loopback; skipped when the binaries are absent."""
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin or on PATH"
        )
    as_root = os.geteuid() == 0
    if as_root:
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="abm-pg-"))
    data, sockets, log = folder / "data", folder / "sock", folder / "server.log"
    sockets.mkdir()
    if as_root:
        for path in (folder, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        started = True  # from here on a stop is attempted, whatever happens
        result = subprocess.run(
            [
                *pg_ctl,
                "-w",
                "-t",
                "60",
                "-l",
                str(log),
                "-o",
                f"-p {port} -k {sockets} -h 127.0.0.1",
                "start",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"PostgreSQL did not start: {result.stderr or result.stdout}\n{tail}")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run(
                [*pg_ctl, "-w", "-m", "fast", "stop"], check=False, capture_output=True, timeout=120
            )
        shutil.rmtree(folder, ignore_errors=True)


def _drop_table(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE_NAME}"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def url(request: pytest.FixtureRequest, tmp_path: Path):
    """An empty history database: a fresh SQLite file, or the session's PostgreSQL with no table."""
    if request.param == "sqlite":
        # The folder is the entry point's to create (the CLI does); record_run only writes.
        (tmp_path / "reports").mkdir()
        yield f"sqlite:///{tmp_path / 'reports' / 'score_history.db'}"
        return
    pg = request.getfixturevalue("postgres_url")
    _drop_table(pg)
    yield pg
    _drop_table(pg)


# --------------------------------------------------------------------------- behaviour


def by_account(frame: pd.DataFrame) -> dict[str, dict]:
    return frame.set_index("account_id").to_dict("index")


def test_two_runs_movement(url: str):
    first = record_run(ranked_frame(RUN1, as_of=WEEK1), url, run_at="2025-01-06T08:00:00")
    assert (first["movement"] == "new").all()
    assert first["previous_score"].isna().all()

    second = record_run(ranked_frame(RUN2, as_of=WEEK2), url, run_at="2025-01-13T08:00:00")
    got = by_account(second)
    assert got["A"]["movement"] == "score +18, entered tier 1:1"
    assert (
        got["A"]["previous_score"] == 60
        and got["A"]["previous_abm_tier"] == "1:few"
        and got["A"]["previous_rank"] == 2
    )
    assert got["B"]["movement"] == "score -5, left tier 1:few"
    assert got["C"]["movement"] == "score unchanged, rank 1 → 2"
    assert got["X"]["movement"] == "score unchanged, rank 4 → 3"
    assert got["E"]["movement"] == "new" and pd.isna(got["E"]["previous_score"])
    assert got["D2"]["movement"] == "new"
    # The returned frame is the ranked list, in its order, with the added columns.
    assert second["account_id"].tolist() == [r[0] for r in RUN2]
    assert {"previous_score", "previous_abm_tier", "previous_rank", "movement"} <= set(
        second.columns
    )


def test_rerun_same_key_replaces_rows(url: str):
    record_run(ranked_frame(RUN1, as_of=WEEK1), url, run_at="2025-01-06T08:00:00")
    record_run(ranked_frame(RUN2, as_of=WEEK2), url, run_at="2025-01-13T08:00:00")
    # Same version and as-of, run again later with A changed and D2 gone.
    rerun = [
        ("A", "1:1", 80),
        ("C", "1:1", 90),
        ("X", "1:many", 40),
        ("B", "1:many", 50),
        ("E", "nurture", 30),
    ]
    again = by_account(
        record_run(ranked_frame(rerun, as_of=WEEK2), url, run_at="2025-01-13T09:30:00")
    )
    # Movement is still against week 1, never against the rows this run replaces.
    assert again["A"]["movement"] == "score +20, entered tier 1:1"
    assert again["E"]["movement"] == "new"

    history = load_history(url)
    assert not history.duplicated(["account_id", "model_version", "as_of"]).any()
    assert len(history) == len(RUN1) + len(rerun)
    week2 = history[history["as_of"] == WEEK2].set_index("account_id")
    assert "D2" not in week2.index
    assert week2.loc["A", "score"] == 80
    assert week2["run_at"].unique().tolist() == ["2025-01-13T09:30:00.000000+00:00"]


def test_load_history_in_order(url: str):
    # Written newest first, read back oldest first.
    record_run(ranked_frame(RUN2, as_of=WEEK2), url, run_at="2025-01-13T08:00:00")
    record_run(ranked_frame(RUN1, as_of=WEEK1), url, run_at="2025-01-06T08:00:00")
    a = load_history(url, "A")
    assert a["as_of"].tolist() == [WEEK1, WEEK2]
    assert a["score"].tolist() == [60, 78]
    assert a["abm_tier"].tolist() == ["1:few", "1:1"]
    assert a["rank"].tolist() == [2, 1]
    assert load_history(url, "nobody").empty
    everything = load_history(url)
    assert len(everything) == len(RUN1) + len(RUN2)
    assert everything["account_id"].is_monotonic_increasing


def test_previous_entry_spans_model_versions(url: str):
    record_run(ranked_frame(RUN1, as_of=WEEK1, version="3"), url, run_at="2025-01-06T08:00:00")
    # A new champion the next week: movement is against version 3's week-1 row.
    v4 = by_account(
        record_run(ranked_frame(RUN2, as_of=WEEK2, version="4"), url, run_at="2025-01-13T08:00:00")
    )
    assert v4["A"]["movement"] == "score +18, entered tier 1:1"
    # The challenger re-ranked the same day, later: its previous entry is version 4's same-day run.
    v5 = by_account(
        record_run(
            ranked_frame([("A", "1:few", 70)], as_of=WEEK2, version="5"),
            url,
            run_at="2025-01-13T10:00:00",
        )
    )
    assert v5["A"]["movement"] == "score -8, left tier 1:1"
    assert v5["A"]["previous_score"] == 78


def test_rejects_frames_that_are_not_one_run(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    frame = ranked_frame(RUN1, as_of=WEEK1)
    with pytest.raises(AbmInputError, match="score"):
        record_run(frame.drop(columns="score"), url)
    with pytest.raises(AbmInputError, match="unique"):
        record_run(pd.concat([frame, frame.head(1)]), url)
    mixed = frame.assign(model_version=["3", "3", "4", "4", "4"])
    with pytest.raises(AbmInputError, match="one model version"):
        record_run(mixed, url)


def test_bad_as_of_and_empty_run(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    with pytest.raises(AbmInputError, match="as_of"):
        record_run(ranked_frame(RUN1, as_of="next tuesday"), url)
    empty = record_run(ranked_frame(RUN1, as_of=WEEK1).iloc[0:0], url)
    assert empty.empty and "movement" in empty.columns


@pytest.mark.slow
def test_driver_error_is_input_error(postgres_url: str):
    """A row PostgreSQL refuses (an id over 255 characters, refused by COPY) is the user's input error."""
    _drop_table(postgres_url)
    try:
        with pytest.raises(AbmInputError, match="cannot write the score history"):
            record_run(ranked_frame([("X" * 300, "1:1", 50)], as_of=WEEK1), postgres_url)
    finally:
        _drop_table(postgres_url)


# --------------------------------------------------------------------------- bad URLs


def test_bad_postgres_url_hides_password():
    url = f"postgresql+psycopg://sales:Sup3rS3cret@127.0.0.1:{_free_port()}/abm"
    for call in (
        lambda: record_run(ranked_frame(RUN1, as_of=WEEK1), url),
        lambda: load_history(url),
    ):
        with pytest.raises(AbmInputError) as caught:
            call()
        message = str(caught.value)
        assert "Sup3rS3cret" not in message
        assert "postgresql+psycopg://sales:***@127.0.0.1" in message


def test_sqlite_folder_is_created_only_when_asked(tmp_path: Path):
    folder = tmp_path / "not" / "yet"
    url = f"sqlite:///{folder / 'score_history.db'}"
    with pytest.raises(AbmInputError, match="folder of the SQLite file does not exist"):
        record_run(ranked_frame(RUN1, as_of=WEEK1), url)
    assert not (tmp_path / "not").exists(), "a library call must not create folders"
    out = record_run(ranked_frame(RUN1, as_of=WEEK1), url, create_sqlite_folder=True)
    assert (folder / "score_history.db").is_file() and len(out) == len(RUN1)


def test_bad_urls_are_input_errors(tmp_path: Path):
    with pytest.raises(AbmInputError, match="not a valid database URL"):
        record_run(ranked_frame(RUN1, as_of=WEEK1), "this is not a url")
    with pytest.raises(AbmInputError, match="nosuchdb://u:\\*\\*\\*@h/d"):
        load_history("nosuchdb://u:pw@h/d")
    missing = tmp_path / "nowhere.db"
    with pytest.raises(AbmInputError, match="no such SQLite file"):
        load_history(f"sqlite:///{missing}")
    assert not missing.exists(), "reading must not create the database file"


def test_load_history_without_table(tmp_path: Path):
    import sqlite3

    path = tmp_path / "other.db"
    sqlite3.connect(path).close()
    with pytest.raises(AbmInputError, match=TABLE_NAME):
        load_history(f"sqlite:///{path}")


# --------------------------------------------------------------------------- speed


def test_100k_accounts_speed(url: str, capsys: pytest.CaptureFixture):
    """Two 100k-account runs; prints the write times (not asserted: machines differ)."""
    n = 100_000
    rng = np.random.default_rng(1)
    ids = np.array([f"ACC{i:06d}" for i in range(n)])

    def run(as_of: str) -> pd.DataFrame:
        scores = rng.integers(1, 100, n)
        order = np.argsort(-scores, kind="stable")
        tiers = np.array(["1:1"] * 10 + ["1:few"] * 50 + ["1:many"] * 500 + ["nurture"] * (n - 560))
        return ranked_frame(list(zip(ids[order], tiers, scores[order])), as_of=as_of)

    first, second = run(WEEK1), run(WEEK2)
    t0 = time.perf_counter()
    record_run(first, url, run_at="2025-01-06T08:00:00")
    t1 = time.perf_counter()
    out = record_run(second, url, run_at="2025-01-13T08:00:00")
    t2 = time.perf_counter()
    with capsys.disabled():
        print(
            f"\n[history speed] {url.split(':')[0]}: first 100k run {t1 - t0:.2f}s, second (with movement) {t2 - t1:.2f}s"
        )
    assert len(out) == n and (out["movement"] != "new").all()
    expected = out["score"] - out["previous_score"]
    sample = out[expected > 0].iloc[0]
    assert sample["movement"].startswith(
        f"score +{int(sample['score'] - sample['previous_score'])}"
    )


# --------------------------------------------------------------------------- first writers racing


def test_losing_the_create_table_race_is_not_an_error(url: str, monkeypatch: pytest.MonkeyPatch):
    """Deterministic race: the check says 'no table', another writer has just created it.

    SQLAlchemy's CREATE check (``SchemaGenerator._can_create_table``) is made to answer as it
    would have a moment before the winner's CREATE TABLE committed.
    """
    from sqlalchemy.sql.ddl import SchemaGenerator

    record_run(ranked_frame(RUN1, as_of=WEEK1, version="1"), url)  # the winner
    calls = {"n": 0}

    def stale_check(self, table):
        calls["n"] += 1
        return True

    monkeypatch.setattr(SchemaGenerator, "_can_create_table", stale_check)
    out = record_run(ranked_frame(RUN1, as_of=WEEK1, version="2"), url)
    monkeypatch.undo()
    assert calls["n"] >= 1 and len(out) == len(RUN1)
    assert set(load_history(url)["model_version"]) == {"1", "2"}


def test_first_writers_at_once_both_store_their_run(url: str):
    """Four threads record their first run into an empty database at the same moment."""
    import threading

    n = 4
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def first_run(version: str) -> None:
        barrier.wait()
        try:
            record_run(ranked_frame(RUN1, as_of=WEEK1, version=version), url)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=first_run, args=(str(v),)) for v in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sorted(set(load_history(url)["model_version"])) == [str(v) for v in range(n)]


def test_a_new_sqlite_history_packs_its_rows_in_large_pages(tmp_path: Path):
    import sqlite3

    from abm_ml.reporting.history import SQLITE_PAGE_SIZE

    new = tmp_path / "new.db"
    record_run(ranked_frame(RUN1, as_of=WEEK1), f"sqlite:///{new}")
    with sqlite3.connect(new) as connection:
        assert connection.execute("PRAGMA page_size").fetchone()[0] == SQLITE_PAGE_SIZE
    # A history made before keeps its own page size, and its runs.
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as connection:
        connection.execute("CREATE TABLE other (x)")
    record_run(ranked_frame(RUN1, as_of=WEEK1), f"sqlite:///{old}")
    with sqlite3.connect(old) as connection:
        assert connection.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert len(load_history(f"sqlite:///{old}")) == len(RUN1)
