"""Knowing the eras (docs/accuracy.md §9): which releases may have written a cell, and what the commands say."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta

import pytest

from actionhost_backfill.db import parse_url
from actionhost_backfill.errors import BadInput, ExitCode
from actionhost_backfill.inference.eras import (
    ASSUMED,
    DECLARED,
    FOUND,
    Proofs,
    declared_eras,
    detect,
    parse_releases,
)
from actionhost_backfill.sim.simulate import EPOCH, SimulationOptions, plan_eras, simulate
from tests import harness

T = datetime(2015, 6, 1)


def test_parse_releases_names_dates_and_order():
    assert parse_releases("Juno=2014-11-03, icehouse=2014-05-01,kilo=2015-06-01") == {
        "icehouse": date(2014, 5, 1),
        "juno": date(2014, 11, 3),
        "kilo": date(2015, 6, 1),
    }
    assert parse_releases(None) is None and parse_releases(" ") is None
    for bad, words in (
        ("havana=2013-10-17", "RELEASE=YYYY-MM-DD"),
        ("kilo", "RELEASE=YYYY-MM-DD"),
        ("kilo=June", "is not a date"),
        ("kilo=2014-01-01,juno=2015-01-01", "kilo (2014-01-01) is dated before juno"),
    ):
        with pytest.raises(BadInput, match=re.escape(words)):
            parse_releases(bad)


def test_nothing_proves_kilo_so_icehouse_juno_is_assumed_throughout():
    eras = detect(Proofs(first_action=T))
    assert eras.untracked == ((None, None),)
    assert eras.eras[0].how == ASSUMED


def test_the_first_proof_of_kilo_ends_the_untracked_era():
    proofs = Proofs(
        first_action=T,
        kilo=(
            ("typed migration row", T + timedelta(days=300)),
            ("x event", T + timedelta(days=90)),
        ),
        old=(("compute_run_instance", T, T + timedelta(days=100)),),
        actions_before=12,
    )
    eras = detect(proofs)
    assert eras.untracked == ((None, T + timedelta(days=90)),)
    pre, post = eras.eras
    assert pre.how == FOUND and "12 actions before it" in pre.why
    assert post.how == FOUND and post.why.startswith("first x event")
    # Old computes after it: a rolling window, noted, still tracked (Kilo's API records moves).
    assert any("rolling window" in note for note in eras.notes)


def test_the_operators_history_replaces_detection():
    proofs = Proofs(kilo=(("x event", T),))
    eras = declared_eras(parse_releases("juno=2014-11-03,kilo=2015-07-01"), proofs)
    assert eras.untracked == ((None, datetime(2015, 7, 1)),)
    assert [e.how for e in eras.eras] == [DECLARED, DECLARED]
    assert any("inside a declared Icehouse/Juno era" in note for note in eras.notes)
    assert declared_eras(parse_releases("kilo=2015-04-30")).untracked == ()


ICEHOUSE = SimulationOptions(seed=3, events=6000, first_release="icehouse")


def _era_start(release: str) -> datetime:
    era = next(e for e in plan_eras(ICEHOUSE) if e.release == release)
    return EPOCH + timedelta(seconds=era.start)


def test_an_icehouse_started_cell_says_its_eras(blank_db):
    """dry-run, validate and explain name the eras found, and why; --releases overrides."""
    simulate(parse_url(blank_db), ICEHOUSE)
    assert harness.cli("schema", "upgrade", "--db", blank_db).exit_code == 0

    done = harness.cli("backfill", "--db", blank_db, "--dry-run", "--no-progress", "--json")
    eras = json.loads(done.stdout)["snapshot"]["eras"]
    assert eras["source"] == "detected"
    pre, post = eras["eras"]
    assert (pre["releases"], pre["how"], pre["untracked"], pre["from"]) == (
        "icehouse/juno",
        FOUND,
        True,
        None,
    )
    assert "compute_run_instance" in pre["why"] and "compute_build_and_run_instance" in pre["why"]
    assert (post["releases"], post["how"], post["untracked"], post["from"], post["to"]) == (
        "kilo or later",
        FOUND,
        False,
        pre["to"],
        None,
    )
    # Neither Icehouse nor Juno writes what proves Kilo: the boundary lies in Kilo's era.
    boundary = datetime.fromisoformat(pre["to"])
    assert _era_start("kilo") <= boundary < _era_start("liberty")

    text = harness.cli("backfill", "--db", blank_db, "--dry-run", "--no-progress").stdout
    assert "Eras (detected):" in text and "[untracked moves]" in text
    assert f"kilo or later  {pre['to']} .. now" in text

    validated = harness.cli("validate", "--db", blank_db, "--sample", "20", "--json")
    assert json.loads(validated.stdout)["eras"] == eras
    assert "Eras (detected):" in harness.cli("validate", "--db", blank_db, "--sample", "20").stdout

    cell = harness.Cell(blank_db)
    try:
        event_id = cell.scalar(
            "SELECT MIN(id) FROM instance_actions_events WHERE event = 'compute_run_instance'"
        )
        explained = harness.cli("explain", str(event_id), "--db", blank_db, "--json")
        assert json.loads(explained.stdout)["eras"] == eras

        declared = harness.cli(
            "backfill",
            "--db",
            blank_db,
            "--dry-run",
            "--no-progress",
            "--releases",
            "icehouse=2015-06-01,kilo=2016-01-01",
        ).stdout
        assert "Eras (declared):" in declared and "--releases kilo=2016-01-01" in declared

        # Bad input: one line naming the flag, exit 127, nothing written.
        before = cell.checksum()
        refused = harness.cli("backfill", "--db", blank_db, "--releases", "kilo=2015-13-01")
        assert refused.exit_code == ExitCode.BAD_INPUT
        assert refused.stderr.startswith("error: --releases:") and refused.stderr.count("\n") == 1
        assert cell.checksum() == before
    finally:
        cell.dispose()
