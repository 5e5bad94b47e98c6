"""The index build is online: ordinary inserts go through while it runs.

PostgreSQL: an open REPEATABLE READ transaction taken before the build holds
``CREATE INDEX CONCURRENTLY`` in its last phase ("waiting for old snapshots")
for as long as the test wants, whatever the table's size or the machine's
speed; a locking ``CREATE INDEX`` would not wait for it (and would block the
inserts).  MariaDB has no such hold point that leaves inserts free (a pending
exclusive metadata lock queues them), so there the table is made big enough
for the build to last (1.5 M rows: 1-2 s here) and the test fails, saying so,
if the build ends before three inserts.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.nova.catalog import HOST_INDEX
from actionhost_backfill.schema import revisions
from tests.harness import wait_until

ROWS = {"postgresql": 20_000, "mysql": 1_500_000}


def _fill(cell) -> None:
    rows = ROWS[cell.backend]
    engine = sa.create_engine(cell.url)
    with engine.begin() as conn:
        if cell.backend == "postgresql":
            conn.exec_driver_sql(
                "INSERT INTO instance_actions_events (id, event, start_time, host, deleted) "
                f"SELECT g, 'compute_stop_instance', now(), 'cmp' || (g %% 997), 0 FROM generate_series(1, {rows}) g"
            )
            conn.exec_driver_sql("ANALYZE instance_actions_events")
        else:
            conn.exec_driver_sql(
                "INSERT INTO instance_actions_events (id, event, start_time, host, deleted) "
                "VALUES (1, 'compute_stop_instance', NOW(), 'cmp1', 0)"
            )
            total = 1
            while total < rows:
                conn.exec_driver_sql(
                    "INSERT INTO instance_actions_events (id, event, start_time, host, deleted) "
                    f"SELECT id + {total}, event, start_time, CONCAT('cmp', (id + {total}) %% 997), 0 "
                    f"FROM instance_actions_events WHERE id <= {min(total, rows - total)}"
                )
                total += min(total, rows - total)
    engine.dispose()


def _build_running(conn, backend: str) -> bool:
    if backend == "postgresql":
        return bool(
            conn.exec_driver_sql(
                "SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid "
                "WHERE c.relname = 'instance_actions_events' AND p.phase = 'waiting for old snapshots'"
            ).first()
        )
    return bool(
        conn.exec_driver_sql(
            "SELECT 1 FROM information_schema.processlist "
            f"WHERE info LIKE 'ALTER TABLE%%ADD INDEX%%{HOST_INDEX}%%'"
        ).first()
    )


@pytest.mark.slow
@pytest.mark.backends("postgresql", "mysql")
def test_inserts_are_not_blocked_while_the_index_builds(cell, backend):
    _fill(cell)
    revisions.upgrade(parse_url(cell.url), target="0001_host_column")

    failure: list[BaseException] = []

    def build():
        try:
            revisions.upgrade(parse_url(cell.url), lock_timeout=30)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    thread = threading.Thread(target=build)
    observer = sa.create_engine(cell.url, isolation_level="AUTOCOMMIT")
    writer = sa.create_engine(cell.url, isolation_level="AUTOCOMMIT")
    holder = sa.create_engine(cell.url, isolation_level="REPEATABLE READ")
    inserted_during_build = []
    with observer.connect() as watch, writer.connect() as write, holder.connect() as hold:
        if backend == "postgresql":
            hold.exec_driver_sql("SELECT count(*) FROM instances").scalar()  # takes the snapshot
            write.exec_driver_sql("SET lock_timeout = '1s'")
        else:
            write.exec_driver_sql("SET SESSION lock_wait_timeout = 1")
            write.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
        thread.start()

        def seen() -> bool:
            if _build_running(watch, backend):
                return True
            assert not failure, failure
            if not thread.is_alive():
                pytest.fail(
                    f"the index build ended before it was seen running ({ROWS[backend]:,} rows)"
                )
            return False

        wait_until(seen, "the index build showing up")
        next_id = ROWS[backend] + 1
        while _build_running(watch, backend) and len(inserted_during_build) < 20:
            started = time.monotonic()
            write.exec_driver_sql(
                "INSERT INTO instance_actions_events (id, event, start_time, host, deleted) "
                f"VALUES ({next_id}, 'compute_reboot_instance', CURRENT_TIMESTAMP, 'cmp-new', 0)"
            )
            elapsed = time.monotonic() - started
            if _build_running(watch, backend):
                inserted_during_build.append(elapsed)
            next_id += 1
        hold.rollback()  # PostgreSQL: lets the build finish
        thread.join(120)
    observer.dispose()
    writer.dispose()
    holder.dispose()
    assert not failure, failure
    assert len(inserted_during_build) >= 3, "the build finished before inserts could be tried"
    assert max(inserted_during_build) < 1.0
    assert HOST_INDEX in cell.index_names()
    assert cell.scalar("SELECT COUNT(*) FROM instance_actions_events WHERE host = 'cmp-new'") >= 3
