"""Over PyMySQL the toolkit's connections decode DATETIME and TIMESTAMP values at C
speed (``dialects/mysql.py``): what a cell's rows hold reads back exactly as
PyMySQL's own decoding reads it."""

from __future__ import annotations

from datetime import datetime

import pymysql
import pytest
import sqlalchemy as sa
from pymysql.constants import FIELD_TYPE

from actionhost_backfill import db
from actionhost_backfill.db import parse_url

pytestmark = pytest.mark.backends("mysql")

VALUES = [
    ("2014-05-01 12:00:01", "2014-05-01 12:00:01.123456", "2014-05-01 12:00:01"),
    ("2019-12-31 23:59:59", "2019-12-31 23:59:59.000001", "2038-01-19 03:14:07"),
    ("0000-00-00 00:00:00", "0000-00-00 00:00:00.000000", "0000-00-00 00:00:00"),
    (None, None, None),
]


def test_the_toolkits_connections_read_datetimes_as_pymysql_does(blank_db):
    url = parse_url(blank_db).set(drivername="mysql+pymysql")  # whatever the suite runs over
    engine = db.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET SESSION sql_mode = ''")  # zero dates, as old cells hold
            conn.exec_driver_sql(
                "CREATE TABLE stamps (id INT PRIMARY KEY, at DATETIME, "
                "fine DATETIME(6), stamp TIMESTAMP NULL)"
            )
            for n, row in enumerate(VALUES):
                conn.execute(
                    sa.text("INSERT INTO stamps VALUES (:n, :a, :f, :s)"),
                    {"n": n, "a": row[0], "f": row[1], "s": row[2]},
                )
            conn.commit()
            decoders = conn.connection.driver_connection.decoders
            assert decoders[FIELD_TYPE.DATETIME] is not pymysql.converters.convert_datetime
            mine = conn.exec_driver_sql("SELECT at, fine, stamp FROM stamps ORDER BY id").all()
        plain = pymysql.connect(
            host=url.host,
            port=url.port or 3306,
            user=url.username,
            password=url.password or "",
            database=url.database,
        )
        try:
            with plain.cursor() as cursor:
                cursor.execute("SELECT at, fine, stamp FROM stamps ORDER BY id")
                theirs = cursor.fetchall()
        finally:
            plain.close()
        assert [tuple(r) for r in mine] == [tuple(r) for r in theirs]
        assert [tuple(map(type, r)) for r in mine] == [tuple(map(type, r)) for r in theirs]
        assert isinstance(mine[0][1], datetime)
        assert mine[2][0] == "0000-00-00 00:00:00"
    finally:
        engine.dispose()
