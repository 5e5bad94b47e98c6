"""mask_url: the password hidden, everything else printed as the operator gave it."""

from __future__ import annotations

import urllib.parse

import pytest
from sqlalchemy.engine import make_url

from actionhost_backfill.redact import MASK, mask_url


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        # A templated database name, a query in the operator's order, encodings kept.
        (
            "mysql+pymysql://root:pw@127.0.0.1/nova_{cell}",
            "mysql+pymysql://root:***@127.0.0.1/nova_{cell}",
        ),
        (
            "postgresql+psycopg://u:p%40ss@h/db?sslmode=require&application_name=a%20b",
            "postgresql+psycopg://u:***@h/db?sslmode=require&application_name=a%20b",
        ),
        ("postgresql://u:p@h/my%20db", "postgresql://u:***@h/my%20db"),
        ("mysql+pymysql://us%40er:pw@h:3306/nova", "mysql+pymysql://us%40er:***@h:3306/nova"),
        ("postgresql://u:p@[::1]:5432/nova", "postgresql://u:***@[::1]:5432/nova"),
        # Hand-written passwords SQLAlchemy still parses: all of it hidden.
        ("mysql://u:pa ss@h/nova", "mysql://u:***@h/nova"),
        ("mysql://u:p/w:x@h/nova", "mysql://u:***@h/nova"),
        (
            "postgresql://u@h/nova?password=a%20b&sslmode=disable",
            "postgresql://u@h/nova?password=***&sslmode=disable",
        ),
        # Nothing to hide: printed as given.
        ("sqlite:////tmp/a b/cell{1}.sqlite", "sqlite:////tmp/a b/cell{1}.sqlite"),
        ("sqlite://", "sqlite://"),
        (
            "mysql://nova@db.example.org/nova_cell1?charset=utf8",
            "mysql://nova@db.example.org/nova_cell1?charset=utf8",
        ),
    ],
)
def test_a_typed_url_keeps_everything_but_its_password(typed, shown):
    assert mask_url(typed) == shown
    if make_url(typed).password is not None:
        assert make_url(mask_url(typed)).password == MASK


@pytest.mark.parametrize("password", ["1", "cell", "p@ss:w/rd", "with space", "%41{x}"])
def test_a_url_object_prints_its_parts_as_they_are(password):
    url = make_url("mysql+pymysql://nova@db:3306/nova_{cell}?charset=utf8&read_timeout=30")
    url = url.set(password=password)
    shown = mask_url(url)
    assert shown == "mysql+pymysql://nova:***@db:3306/nova_{cell}?charset=utf8&read_timeout=30"
    for form in {
        password,
        urllib.parse.quote(password, safe=""),
        urllib.parse.quote_plus(password),
    }:
        assert f":{form}@" not in shown


def test_a_password_in_the_query_of_a_url_object_is_hidden():
    url = make_url("postgresql://u@h/nova").set(query={"password": "a b&c", "sslmode": "disable"})
    assert mask_url(url) == "postgresql://u@h/nova?password=***&sslmode=disable"
