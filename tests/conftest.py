"""Fixtures: every store-touching test runs on a real DuckDB file and on a real PostgreSQL database.

PostgreSQL comes from SHIPSCOPE_TEST_PG_URL (``make test`` starts the server and creates the database). When it
cannot be reached the run stops with a message saying how to start it: those tests are never skipped.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipscope.store import Store, schema
from shipscope.store.migrate import head_revision

PG_URL_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/shipscope_test"
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
BACKENDS = ("duckdb", "postgresql")


pytest_plugins = ["tests.vendors"]
"""The vendor stand-in fixture, ``vendors``, for every test module."""


def _pg_url(config: pytest.Config) -> str:
    import os

    return os.environ.get("SHIPSCOPE_TEST_PG_URL", PG_URL_DEFAULT)


def pytest_sessionstart(session: pytest.Session) -> None:
    url = _pg_url(session.config)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise pytest.UsageError(
            f"PostgreSQL is needed by the tests and cannot be reached at {url}: {reason}\n"
            "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"
            "then create the database: psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE shipscope_test'\n"
            "(`make test` does both.)"
        ) from None
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url(pytestconfig: pytest.Config) -> str:
    return _pg_url(pytestconfig)


def rebuild_pg(store: Store) -> None:
    """A fresh schema at the head revision."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    store.upgrade()


@pytest.fixture(scope="session")
def _pg_migrated(pg_url: str) -> str:
    store = Store(pg_url)
    try:
        rebuild_pg(store)
    finally:
        store.close()
    return pg_url


@pytest.fixture(scope="session")
def _duckdb_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.duckdb"
    store = Store(f"duckdb:///{path}")
    try:
        store.upgrade()
    finally:
        store.close()
    return path


def empty_pg(store: Store) -> None:
    """Empties every table and restarts the sequences, so each test starts from a fresh database."""
    tables = ", ".join(table.name for table in schema.metadata.sorted_tables)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY")
        for sequence in (schema.raw_events_seq, schema.rejections_seq):
            conn.exec_driver_sql(f"ALTER SEQUENCE {sequence.name} RESTART WITH 1")


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on the backend the test is parametrized with."""
    backend = request.param if hasattr(request, "param") else "duckdb"
    if backend == "duckdb":
        template: Path = request.getfixturevalue("_duckdb_template")
        path = tmp_path / "shipscope.duckdb"
        shutil.copyfile(template, path)
        return f"duckdb:///{path}"
    url: str = request.getfixturevalue("_pg_migrated")
    store = Store(url)
    try:
        if store.revision() != head_revision():  # an earlier test moved the schema on purpose
            rebuild_pg(store)
        empty_pg(store)
    finally:
        store.close()
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store(db_url)
    try:
        yield opened
    finally:
        opened.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that use the database run once per backend (or per backend of their ``backends`` mark: two server
    processes on one database need PostgreSQL)."""
    if "db_url" in metafunc.fixturenames:
        chosen = metafunc.definition.get_closest_marker("backends")
        names = [name for name in BACKENDS if chosen is None or name in chosen.args]
        metafunc.parametrize("db_url", names, indirect=True)
