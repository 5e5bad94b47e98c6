"""Galera write-set limits cap the batch size (a server's wsrep variables, as SHOW VARIABLES gives them)."""

from __future__ import annotations

from actionhost_backfill.batching import BatchSizer, galera_cap


def test_not_galera_means_no_cap():
    assert galera_cap({}) is None
    assert galera_cap({"wsrep_on": "OFF", "wsrep_max_ws_rows": "10"}) is None


def test_write_set_limits_cap_the_batch():
    # MariaDB defaults: no row limit, 2 GiB write sets.
    assert galera_cap(
        {"wsrep_on": "ON", "wsrep_max_ws_rows": "0", "wsrep_max_ws_size": "2147483647"}
    ) == 2147483647 // (4 * 66_000)
    # A strict row limit wins: a quarter of it, two rows per event.
    assert (
        galera_cap(
            {"wsrep_on": "ON", "wsrep_max_ws_rows": "4000", "wsrep_max_ws_size": "2147483647"}
        )
        == 500
    )
    assert galera_cap({"wsrep_on": "ON", "wsrep_max_ws_rows": "3"}) == 1


def test_the_sizer_never_exceeds_the_cap():
    sizer = BatchSizer(1000, target_seconds=0.5)
    sizer.cap(300)
    assert sizer.size == 300
    for _ in range(10):
        sizer.observe(300, 0.01)  # fast batches would grow it
    assert sizer.size == 300
