"""Galera write-set limits cap the batch size (a server's wsrep variables, as SHOW VARIABLES gives them)."""

from __future__ import annotations

from actionhost_backfill.dialects.mysql import galera_cap
from actionhost_backfill.engine.sizing import BatchSizer


def test_not_galera_means_no_cap():
    assert galera_cap({}) is None
    assert galera_cap({"wsrep_on": "OFF", "wsrep_max_ws_rows": "10"}) is None


def test_write_set_limits_cap_the_batch():
    # MariaDB defaults: no row limit, 2 GiB write sets.
    assert galera_cap(
        {"wsrep_on": "ON", "wsrep_max_ws_rows": "0", "wsrep_max_ws_size": "2147483647"}
    ) == 2147483647 // (4 * 132_000)
    # A strict row limit wins: a quarter of it, two rows per event.
    assert (
        galera_cap(
            {"wsrep_on": "ON", "wsrep_max_ws_rows": "4000", "wsrep_max_ws_size": "2147483647"}
        )
        == 500
    )
    assert galera_cap({"wsrep_on": "ON", "wsrep_max_ws_rows": "3"}) == 1


def test_the_sizer_never_exceeds_the_cap():
    sizer = BatchSizer(target_seconds=0.5)
    sizer.cap(300)
    assert sizer.size == 300
    for _ in range(10):
        sizer.observe(300, 0.01)  # fast batches would grow it
    assert sizer.size == 300


def test_without_batch_size_the_size_follows_the_target_duration():
    sizer = BatchSizer(target_seconds=0.1)
    first = sizer.size
    for _ in range(20):
        sizer.observe(sizer.size, sizer.size / 50_000)  # 50k rows/s
    assert sizer.size == 5000 != first
    for _ in range(20):
        sizer.observe(sizer.size, sizer.size / 2_000)  # the server slows down
    assert sizer.size == 200


def test_batch_size_fixes_the_size():
    sizer = BatchSizer(250)
    for _ in range(5):
        sizer.observe(250, 0.001)
    assert sizer.size == 250
