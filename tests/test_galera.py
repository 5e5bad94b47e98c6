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


def test_node_addresses_from_incoming_or_cluster_address():
    from actionhost_backfill.dialects.galera import addresses

    assert addresses("10.0.0.1:3306,10.0.0.2:3307,AUTO") == [
        ("10.0.0.1", 3306),
        ("10.0.0.2", 3307),
    ]
    assert addresses("gcomm://db1:4567,db2,[fd00::3]:4567?pc.wait_prim=no") == [
        ("db1", 4567),
        ("db2", None),
        ("fd00::3", 4567),
    ]
    assert addresses("AUTO,AUTO") == [] == addresses("gcomm://")


def test_gcache_size_as_galera_writes_it():
    from actionhost_backfill.dialects.galera import parse_size

    assert parse_size("128M") == 128 << 20
    assert parse_size("1G") == 1 << 30
    assert parse_size("134217728") == 134217728
    assert parse_size("") is None


def test_schema_sql_prints_the_per_node_procedure():
    from tests.harness import cli

    done = cli("schema", "sql", "--galera-rolling", "--dialect", "mariadb")
    assert done.exit_code == 0, done.output
    assert "SET SESSION wsrep_OSU_method = 'RSU';" in done.stdout
    assert done.stdout.index("'RSU'") < done.stdout.index("EXECUTE ahb_stmt")
    assert done.stdout.index("EXECUTE ahb_stmt") < done.stdout.index("'TOI'")
    refused = cli("schema", "sql", "--galera-rolling", "--dialect", "postgresql")
    assert refused.exit_code == 127
