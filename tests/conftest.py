"""Real databases, one fixture, three backends.

Every database-touching test takes the ``cell`` (or ``blank_db``) fixture and
runs once per backend: SQLite (a file in a temp dir), PostgreSQL and
MySQL/MariaDB (a fresh database on the running server, dropped afterwards).
Servers: ``ACTIONHOST_TEST_PG_URL`` (default postgres on 127.0.0.1:5432) and
``ACTIONHOST_TEST_MYSQL_URL`` (default root on 127.0.0.1:3306).  With
``CI=true`` an unreachable server fails the run; elsewhere its tests skip.

Lanes: every collected test is marked ``unit`` or ``db`` (never both), and
``cluster`` / ``realnova`` on top of ``db``; see :func:`pytest_collection_modifyitems`
and the README's "Tests" section for the commands.
"""

from __future__ import annotations

import os
import uuid
from pathlib import PurePosixPath

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests import harness

BACKENDS = ("sqlite", "postgresql", "mysql")


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="Run database tests on these backends only (repeatable). CI runs all three.",
    )
    parser.addoption(
        "--long",
        action="store_true",
        help="Run the long versions of the reliability suite (200 kills per backend).",
    )


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--backend") or BACKENDS
        only = getattr(metafunc.function, "backends", None)
        marker = metafunc.definition.get_closest_marker("backends")
        if marker is not None:
            only = marker.args
        names = [b for b in BACKENDS if b in chosen and (only is None or b in only)]
        metafunc.parametrize("backend", names, scope="function")


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run only on these backends")


#: Fixtures that start throwaway servers or topologies of their own (tests/topology).
CLUSTER_FIXTURES = frozenset({"cluster", "topology_dir"})
#: Test files that start their own servers (Galera nodes, replicas, restartable servers).
CLUSTER_FILES = frozenset(
    {
        "tests/test_galera_cluster.py",
        "tests/test_galera_rolling.py",
        "tests/test_topology.py",
        "tests/reliability/test_restart.py",
    }
)
#: Tests that take no ``backend`` fixture yet build and backfill a database of their
#: own (a scratch SQLite file, a wheel installed in a fresh virtualenv): minutes, not
#: milliseconds, so they belong to the database lane.
DB_WITHOUT_FIXTURE = frozenset(
    {
        "tests/test_accuracy.py::test_demo",
        "tests/test_packaging.py::test_wheel_install_runs_schema_commands",
    }
)


def lanes_of(path: str, name: str, fixturenames) -> set[str]:
    """The lane markers of one test: ``unit`` or ``db``, plus ``cluster``/``realnova``.

    ``db``: every test that takes the ``backend`` fixture (``cell``, ``bare_cell``,
    ``blank_db`` and ``server_url`` all depend on it), so it runs once per backend
    against a real database.  ``cluster``: tests that start servers of their own.
    ``realnova``: tests that run Nova's own code (tests/realnova).  ``unit``: the
    rest, which open no database server (``pytest -m unit`` with the server URLs
    pointed at a closed port passes).
    """
    fixtures = set(fixturenames)
    lanes = set()
    if path in CLUSTER_FILES or fixtures & CLUSTER_FIXTURES:
        lanes.add("cluster")
    if path.startswith("tests/realnova/"):
        lanes.add("realnova")
    if lanes or "backend" in fixtures or f"{path}::{name}" in DB_WITHOUT_FIXTURE:
        lanes.add("db")
    else:
        lanes.add("unit")
    return lanes


def pytest_collection_modifyitems(config, items):
    root = PurePosixPath(config.rootpath.as_posix())
    for item in items:
        path = PurePosixPath(item.path.as_posix()).relative_to(root).as_posix()
        name = item.originalname if hasattr(item, "originalname") else item.name
        lanes = lanes_of(path, name, getattr(item, "fixturenames", ()))
        if path.startswith("tests/unit/") and "unit" not in lanes:
            raise pytest.UsageError(
                f"{item.nodeid} needs a database: it belongs outside tests/unit"
            )
        for lane in sorted(lanes):
            item.add_marker(lane)


@pytest.fixture(scope="session")
def servers() -> dict[str, str | None]:
    """Admin URLs of the reachable servers (None when unreachable)."""
    found: dict[str, str | None] = {"sqlite": "sqlite://"}
    for name, url in (("postgresql", harness.PG_ADMIN_URL), ("mysql", harness.MYSQL_ADMIN_URL)):
        found[name] = url if harness.reachable(url) else None
    return found


@pytest.fixture
def server_url(backend, servers) -> str:
    url = servers[backend]
    if url is None:
        message = f"{backend} server not reachable ({harness.admin_url_for(backend)})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}: CI requires every backend")
        pytest.skip(message)
    return url


@pytest.fixture
def blank_db(backend, server_url, tmp_path):
    """A fresh, empty database on ``backend``; returns its URL string."""
    if backend == "sqlite":
        path = tmp_path / "nova.sqlite"
        sa.create_engine(f"sqlite:///{path}").connect().close()
        yield f"sqlite:///{path}"
        return
    name = f"ahb_{uuid.uuid4().hex[:10]}"
    harness.create_database(backend, name)
    try:
        yield str(make_url(server_url).set(database=name).render_as_string(hide_password=False))
    finally:
        harness.drop_database(backend, name)


@pytest.fixture
def cell(blank_db) -> harness.Cell:
    """A Nova-shaped cell database with the host column (Nova since Icehouse)."""
    cell = harness.Cell(blank_db)
    cell.build()
    yield cell
    cell.dispose()


@pytest.fixture
def bare_cell(blank_db) -> harness.Cell:
    """A cell database whose schema the test builds itself (``cell.build(...)``)."""
    cell = harness.Cell(blank_db)
    yield cell
    cell.dispose()
