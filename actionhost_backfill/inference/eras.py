"""Which Nova releases may have written a cell's history, and when (pure: proofs in, eras out).

What matters to inference is one thing: the periods in which the cell may
have run **Icehouse or Juno**, whose live migrations left no trace at all
(2014.1/2014.2 ``compute/instance_actions.py`` has no ``LIVE_MIGRATION``,
``API.live_migrate`` records no action, no compute method of the migration is
event-wrapped and the conductor's ``_live_migrate`` writes no migration row).
In those periods an instance's host may change between any two of its
actions (``steps.untracked_gap``).

Conservative by default: a period counts as *untracked* unless the rows prove
that Kilo or later was running.  The proofs, each only written from the
release named (``evidence`` reads their earliest time, live and archived):

``compute__do_build_and_run_instance``
    2015.1.0 wraps the inner ``_do_build_and_run_instance`` (CM ~2180);
    2014.1 records ``compute_run_instance``, 2014.2 ``compute_build_and_run_instance``.
``live-migration`` actions
    ``instance_actions.LIVE_MIGRATION`` arrives in 2015.1.0.
live-migration compute events, ``conductor_*`` events
    event-wrapped from 12.0.0 and 14.0.0.
a typed migration row
    ``migration_type`` is written from 12.0.0.

A compute event proves the compute's release; the control plane (the API,
which records live migrations) is upgraded before the computes, so it proves
the API's too.  ``compute_run_instance`` / ``compute_build_and_run_instance``
events prove Icehouse/Juno computes (found, not only assumed); after the
first Kilo+ proof they are old computes in a rolling window, whose live
migrations the Kilo API records.  ``services.version`` (12.0.0+) says what
runs now, not since when: it is reported, never used.

The operator's upgrade history (``--releases icehouse=2014-05-01,kilo=...``)
replaces the detection: the first release named ran from the beginning.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime

from actionhost_backfill.errors import BadInput
from actionhost_backfill.nova.releases import NAMES, UNTRACKED
from actionhost_backfill.nova.releases import index as release_index

#: Event names only Kilo+ records (see the module docstring).
KILO_EVENTS = (
    "compute__do_build_and_run_instance",
    "compute_check_can_live_migrate_destination",
    "compute_check_can_live_migrate_source",
    "compute_live_migration",
    "compute_pre_live_migration",
    "compute_post_live_migration_at_destination",
    "compute_rollback_live_migration_at_destination",
    "conductor_migrate_server",
    "conductor_live_migrate_instance",
)
#: Action names only Kilo+ records.
KILO_ACTIONS = ("live-migration", "live_migration_cancel", "live_migration_force_complete")
#: Build event names of Icehouse (legacy run_instance) and Juno computes.
OLD_EVENTS = ("compute_run_instance", "compute_build_and_run_instance")

FOUND = "found"
ASSUMED = "assumed"
DECLARED = "declared"
PRE_KILO = "icehouse/juno"
KILO_OR_LATER = "kilo or later"


@dataclass(frozen=True)
class Proofs:
    """What the cell's rows prove about the releases that wrote them."""

    first_action: datetime | None = None
    kilo: tuple[tuple[str, datetime], ...] = ()
    """(what, earliest time) of each proof of Kilo or later found."""
    old: tuple[tuple[str, datetime, datetime], ...] = ()
    """(event name, first, last) of Icehouse/Juno build events."""
    actions_before: int | None = None
    """Actions requested before the first Kilo proof (None: not counted)."""
    services_version: int | None = None


@dataclass(frozen=True)
class Era:
    releases: str
    start: datetime | None
    end: datetime | None
    how: str
    """found, assumed or declared."""
    why: str
    untracked: bool

    def to_dict(self) -> dict:
        return {
            "releases": self.releases,
            "from": _iso(self.start),
            "to": _iso(self.end),
            "how": self.how,
            "why": self.why,
            "untracked": self.untracked,
        }


@dataclass(frozen=True)
class Eras:
    eras: tuple[Era, ...]
    source: str
    """detected or declared (--releases)."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def untracked(self) -> tuple[tuple[datetime | None, datetime | None], ...]:
        return tuple((e.start, e.end) for e in self.eras if e.untracked)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "eras": [e.to_dict() for e in self.eras],
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        out = [f"Eras ({self.source}):"]
        for e in self.eras:
            span = f"{_iso(e.start) or 'beginning'} .. {_iso(e.end) or 'now'}"
            mark = " [untracked moves]" if e.untracked else ""
            out.append(f"  {e.releases:<14} {span:<43} {e.how}{mark}: {e.why}")
        out += [f"  note: {n}" for n in self.notes]
        return out


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(sep=" ") if moment is not None else None


def parse_releases(text: str | None) -> dict[str, date] | None:
    """``icehouse=2014-05-01,juno=2014-11-03,kilo=2015-06-01`` -> {name: date}, checked."""
    if text is None or not text.strip():
        return None
    declared: dict[str, date] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        name = name.strip().lower()
        if not sep or name not in NAMES:
            raise BadInput(
                f"--releases: {part.strip()!r} is not RELEASE=YYYY-MM-DD with RELEASE one of "
                f"{', '.join(NAMES)} (e.g. --releases juno=2014-11-03,kilo=2015-06-01)"
            )
        try:
            declared[name] = date.fromisoformat(value.strip())
        except ValueError:
            raise BadInput(
                f"--releases: {value.strip()!r} for {name} is not a date YYYY-MM-DD"
            ) from None
    order = sorted(declared, key=release_index)
    for earlier, later in itertools.pairwise(order):
        if declared[later] < declared[earlier]:
            raise BadInput(
                f"--releases: {later} ({declared[later]}) is dated before {earlier} "
                f"({declared[earlier]}): give each release the date it went into service"
            )
    return {name: declared[name] for name in order}


def declared_eras(declared: dict[str, date], proofs: Proofs | None = None) -> Eras:
    """The operator's upgrade history; the first release named ran from the beginning."""
    names = list(declared)
    eras = []
    for k, name in enumerate(names):
        start = None if k == 0 else datetime.combine(declared[name], datetime.min.time())
        end = (
            datetime.combine(declared[names[k + 1]], datetime.min.time())
            if k + 1 < len(names)
            else None
        )
        why = f"--releases {name}={declared[name]}" + (" (and everything before)" if k == 0 else "")
        eras.append(Era(name, start, end, DECLARED, why, name in UNTRACKED))
    untracked_end: datetime | None = None
    if eras[0].untracked:
        untracked_end = next((e.start for e in eras if not e.untracked), None)
    notes = []
    if proofs is not None:
        earliest = min((when for _, when in proofs.kilo), default=None)
        if (
            eras[0].untracked
            and earliest is not None
            and (untracked_end is None or earliest < untracked_end)
        ):
            notes.append(
                f"the rows prove Kilo or later from {_iso(earliest)}, inside a declared "
                "Icehouse/Juno era (kept: it only costs coverage)"
            )
        for name, first, _last in proofs.old:
            if not eras[0].untracked or (untracked_end is not None and first >= untracked_end):
                notes.append(
                    f"{name} events from {_iso(first)}: Icehouse/Juno computes in an era "
                    "declared Kilo or later (a rolling window, or check --releases)"
                )
    return Eras(tuple(eras), "declared", tuple(notes))


def detect(proofs: Proofs) -> Eras:
    """Eras from the rows alone, assuming Icehouse/Juno wherever nothing excludes them."""
    kilo_at = min((when for _, when in proofs.kilo), default=None)
    proof = min(proofs.kilo, key=lambda p: p[1], default=None)
    old = sorted(proofs.old, key=lambda o: o[1])
    old_text = "; ".join(f"{n} {_iso(a)} .. {_iso(b)}" for n, a, b in old)
    notes = []
    if proofs.services_version:
        notes.append(
            f"services.version up to {proofs.services_version}: Liberty or later runs now "
            "(says nothing about the past)"
        )
    if kilo_at is None:
        if old:
            why = f"Icehouse/Juno build events ({old_text}) and no proof of Kilo or later"
            how = FOUND
        else:
            why = (
                "no proof of Kilo or later anywhere (no compute__do_build_and_run_instance "
                "event, live-migration action or typed migration row): cannot exclude them"
            )
            how = ASSUMED
        return Eras((Era(PRE_KILO, None, None, how, why, True),), "detected", tuple(notes))
    assert proof is not None
    before = ""
    if proofs.actions_before is not None:
        plural = "" if proofs.actions_before == 1 else "s"
        before = f" ({proofs.actions_before:,} action{plural} before it)"
    if any(first < kilo_at for _, first, _ in old):
        pre = Era(
            PRE_KILO,
            None,
            kilo_at,
            FOUND,
            f"Icehouse/Juno build events ({old_text}) before the first proof of Kilo{before}",
            True,
        )
    else:
        pre = Era(
            PRE_KILO,
            None,
            kilo_at,
            ASSUMED,
            f"nothing before the first proof of Kilo or later excludes them{before}",
            True,
        )
    post = Era(KILO_OR_LATER, kilo_at, None, FOUND, f"first {proof[0]} at {_iso(kilo_at)}", False)
    for name, _first, last in old:
        if last > kilo_at:
            notes.append(
                f"{name} events until {_iso(last)}: Icehouse/Juno computes after the control "
                "plane's upgrade (a rolling window; Kilo's API records live migrations)"
            )
    return Eras((pre, post), "detected", tuple(notes))


def eras_for(proofs: Proofs, declared: dict[str, date] | None) -> Eras:
    return declared_eras(declared, proofs) if declared else detect(proofs)
