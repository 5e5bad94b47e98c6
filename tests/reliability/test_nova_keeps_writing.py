"""While the backfill runs, Nova keeps writing: new events, recorded hosts, deletions, archiving."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime

import sqlalchemy as sa

from actionhost_backfill.db import create_engine, parse_url
from actionhost_backfill.state.location import resolve_state_location

from .common import backfill_process, simulated


def _nova(
    url: str, stop: threading.Event, wrote: dict, errors: list, schema: str, batches: list
) -> None:
    """A stand-in for Nova's services: small transactions, as the real ones make.

    After each write it notes how many batches the backfill had committed, so
    the test can tell that the writes overlapped the run's batches."""
    rng = random.Random(99)
    engine = create_engine(parse_url(url), resolve_state_location(parse_url(url)))
    try:
        with engine.connect() as conn:
            null_ids = [
                r[0]
                for r in conn.execute(
                    sa.text("SELECT id FROM instance_actions_events WHERE host IS NULL ORDER BY id")
                )
            ]
            conn.rollback()
            rng.shuffle(null_ids)
            top = conn.execute(sa.text("SELECT MAX(id) FROM instance_actions_events")).scalar()
            action = conn.execute(sa.text("SELECT MAX(id) FROM instance_actions")).scalar()
            conn.rollback()
            step = 0
            while not stop.is_set() and step < 400:
                step += 1
                try:
                    kind = step % 3
                    if kind == 0 and null_ids:  # Nova records the host of an old event
                        event_id = null_ids.pop()
                        changed = conn.execute(
                            sa.text(
                                "UPDATE instance_actions_events SET host = :h "
                                "WHERE id = :i AND host IS NULL"
                            ),
                            {"h": f"nova-{event_id}", "i": event_id},
                        ).rowcount
                        if changed:
                            wrote[event_id] = f"nova-{event_id}"
                    elif kind == 1:  # a new event, with its host (Nova since Rocky)
                        top += 1
                        conn.execute(
                            sa.text(
                                "INSERT INTO instance_actions_events (id, event, action_id, "
                                "start_time, finish_time, result, host, deleted) VALUES "
                                "(:i, 'compute_reboot_instance', :a, :t, :t, 'Success', :h, 0)"
                            ),
                            {"i": top, "a": action, "t": datetime(2030, 1, 1), "h": "cmp-new"},
                        )
                        wrote[top] = "cmp-new"
                    else:  # an instance is deleted: it and its migrations soft-deleted
                        uuid = conn.execute(
                            sa.text(
                                "SELECT uuid FROM instances WHERE deleted = 0 ORDER BY id LIMIT 1"
                            )
                        ).scalar()
                        if uuid:
                            conn.execute(
                                sa.text("UPDATE instances SET deleted = id WHERE uuid = :u"),
                                {"u": uuid},
                            )
                            conn.execute(
                                sa.text(
                                    "UPDATE migrations SET deleted = id WHERE instance_uuid = :u"
                                ),
                                {"u": uuid},
                            )
                    conn.commit()
                    batches.append(
                        conn.execute(
                            sa.text(f"SELECT COALESCE(SUM(batches), 0) FROM {schema}.checkpoints")
                        ).scalar()
                    )
                    conn.rollback()
                except sa.exc.OperationalError as exc:  # lock waits are normal: try again
                    conn.rollback()
                    if "locked" not in str(exc).lower() and "lock wait" not in str(exc).lower():
                        errors.append(exc)
                time.sleep(0.005)
    except Exception as exc:
        errors.append(exc)
    finally:
        engine.dispose()


def test_nothing_nova_writes_is_overwritten(blank_db):
    cell = simulated(blank_db)
    try:
        wrote: dict[int, str] = {}
        errors: list = []
        stop = threading.Event()
        batches: list[int] = []
        writer = threading.Thread(
            target=_nova, args=(cell.url, stop, wrote, errors, cell.location.schema, batches)
        )
        child = backfill_process(
            cell.url, "--batch-size", "20", "--sleep", "0.02", "--until-complete"
        )
        writer.start()
        _out, err = child.communicate(timeout=600)
        stop.set()
        writer.join()
        assert not errors, errors
        assert child.returncode == 0, err
        assert len(wrote) > 50
        total = cell.scalar(f"SELECT SUM(batches) FROM {cell.location.schema}.checkpoints")
        assert any(0 < seen < total for seen in batches), (
            "Nova's writes overlapped the run's batches"
        )
        now = dict(
            cell.rows(
                "SELECT id, host FROM instance_actions_events WHERE id IN ("
                + ",".join(str(i) for i in wrote)
                + ")"
            )
        )
        assert now == wrote  # every value Nova wrote is still there
        written_by_us = {
            r[0]
            for r in cell.rows(
                f"SELECT event_id FROM {cell.location.schema}.audit WHERE outcome = 'filled' "
                "AND event_table = 'instance_actions_events'"
            )
        }
        assert not written_by_us & set(wrote)
        verify = backfill_process(cell.url)  # a second pass finds nothing more to do
        _out, err = verify.communicate(timeout=300)
        assert verify.returncode == 0, err
    finally:
        cell.dispose()
