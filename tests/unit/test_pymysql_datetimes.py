"""PyMySQL's DATETIME and TIMESTAMP values decoded at C speed (``dialects/mysql.py``):
every value decodes to exactly what PyMySQL's own converter returns."""

from __future__ import annotations

import random
from datetime import datetime

import pytest
from pymysql import converters
from pymysql.constants import FIELD_TYPE

from actionhost_backfill.dialects.mysql import pymysql_converters

FAST = pymysql_converters()[FIELD_TYPE.DATETIME]

ODD = [
    "2014-05-01 12:00:01",
    "2014-05-01 12:00:01.123456",
    "2014-05-01 12:00:01.000000",
    "2014-05-01 12:00:01.5",  # fewer fraction digits: PyMySQL pads them
    "2014-05-01 12:00:01.123",
    "2014-05-01T12:00:01",  # the ISO separator
    "2014-05-01 12:00:01+00:00",  # an offset: not a server's DATETIME, PyMySQL's answer
    "2014-05-01",
    "0000-00-00 00:00:00",  # zero dates come back as text
    "2014-02-31 12:00:00",  # out of range
    "2014-13-01 12:00:00",
    "2014-05-01 24:00:00",
    "2014-05-01 23:59:60",
    "0001-01-01 00:00:00",
    "9999-12-31 23:59:59.999999",
    "",
    "not a date",
]


def _same(value: str) -> None:
    mine, theirs = FAST(value), converters.convert_datetime(value)
    assert (type(mine), mine) == (type(theirs), theirs), value


@pytest.mark.parametrize("value", ODD)
def test_every_form_decodes_as_pymysql_decodes_it(value):
    _same(value)


def test_random_canonical_values_decode_as_pymysql_decodes_them():
    rng = random.Random(22)
    for _ in range(20_000):
        fields = [rng.randint(0, 9999), rng.randint(0, 13), rng.randint(0, 32)]
        fields += [rng.randint(0, 25), rng.randint(0, 61), rng.randint(0, 61)]
        value = "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}".format(*fields)
        if rng.random() < 0.5:
            value += f".{rng.randint(0, 999_999):06d}"
        _same(value)


def test_the_fast_path_is_taken_for_the_servers_form(monkeypatch):
    # A canonical value is not handed to PyMySQL's converter at all.
    calls: list[str] = []
    original = converters.convert_datetime
    monkeypatch.setattr(converters, "convert_datetime", lambda v: calls.append(v) or original(v))
    fast = pymysql_converters()[FIELD_TYPE.TIMESTAMP]
    assert fast("2014-05-01 12:00:01.000001") == datetime(2014, 5, 1, 12, 0, 1, 1)
    assert calls == []
    assert fast("0000-00-00 00:00:00") == "0000-00-00 00:00:00"
    assert calls == ["0000-00-00 00:00:00"]


def test_everything_else_is_pymysqls():
    mine = pymysql_converters()
    theirs = converters.conversions
    assert mine.keys() == theirs.keys()
    assert {k for k in theirs if mine[k] is not theirs[k]} == {
        FIELD_TYPE.DATETIME,
        FIELD_TYPE.TIMESTAMP,
    }
