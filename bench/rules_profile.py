"""The rules alone: wall time and cProfile of ``inference.infer`` over a real run's chunks.

    python bench/rules_profile.py --events 100000                      # simulate, then time
    python bench/rules_profile.py --events 100000 --first-release icehouse --rolling-days 30
    python bench/rules_profile.py --db sqlite:////tmp/x.sqlite --repeats 5 --top 25
    python bench/rules_profile.py --db sqlite:////tmp/x.sqlite --save /tmp/x.work
    python bench/rules_profile.py --load /tmp/x.work                    # same inputs, other code

The evidence is loaded exactly as a backfill loads it: a dry run
(``run_backfill``, ``--include-shadow``, one planner: ``--workers 1``) on
``--db`` (or on a history ``simulate`` writes into a temporary SQLite file),
whose planner hands each chunk to :func:`~actionhost_backfill.inference.infer`
(``engine.planner``); each call's arguments are pickled on the way, before the
rules see them.
Then only the rules run: every repeat unpickles fresh copies of all the
chunks (untimed: the histories keep per-instance caches, a second pass on the
same objects would be too cheap; one chunk in memory at a time, as in a run)
and times the ``infer`` calls alone; the
best of ``--repeats`` is reported, then one more pass under cProfile
(``--top`` costliest functions by self time).  ``--save``/``--load`` keep the
pickled chunks, so two versions of the rules can be timed on the very same
inputs; ``--decisions FILE`` writes every decision (event id, host, rule),
one per line, to compare them.

Nothing is written to the database (dry run).
"""

from __future__ import annotations

import argparse
import cProfile
import pickle
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actionhost_backfill.db import parse_url  # noqa: E402
from actionhost_backfill.engine import planner  # noqa: E402
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill  # noqa: E402
from actionhost_backfill.inference import infer  # noqa: E402


def capture(db: str) -> list[bytes]:
    """The pickled arguments of every ``infer`` call of a dry run on ``db``."""
    calls: list[bytes] = []
    real = planner.infer

    def recording(events, actions, histories, hosts, excluded=frozenset()):
        calls.append(pickle.dumps((list(events), actions, histories, hosts, excluded), protocol=5))
        return real(events, actions, histories, hosts, excluded)

    planner.infer = recording
    try:
        run_backfill(parse_url(db), BackfillOptions(dry_run=True, include_shadow=True, workers=1))
    finally:
        planner.infer = real
    return calls


def simulate(path: Path, args: argparse.Namespace) -> str:
    db = f"sqlite:///{path}"
    command = [sys.executable, "-m", "actionhost_backfill", "simulate", "--db", db]
    command += ["--events", str(args.events), "--seed", str(args.seed)]
    command += ["--first-release", args.first_release, "--rolling-days", str(args.rolling_days)]
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return db


def one_pass(calls: list[bytes], profile: cProfile.Profile | None = None) -> tuple[float, list]:
    """Seconds spent in ``infer`` over every chunk (fresh copies), and the decisions."""
    decisions = []
    seconds = 0.0
    for pickled in calls:
        arguments = pickle.loads(pickled)  # one chunk's evidence in memory, as in a run
        if profile is not None:
            profile.enable()
        started = time.perf_counter()
        decisions.extend(infer(*arguments))
        seconds += time.perf_counter() - started
        if profile is not None:
            profile.disable()
        del arguments
    return seconds, decisions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--db", help="a cell database holding a history with NULL hosts")
    source.add_argument("--load", type=Path, help="chunks kept by --save")
    parser.add_argument("--events", type=int, default=100_000, help="simulate this many (no --db)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--first-release", default="kilo")
    parser.add_argument("--rolling-days", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (best is reported)")
    parser.add_argument("--top", type=int, default=25, help="functions listed from the profile")
    parser.add_argument("--save", type=Path, help="keep the pickled chunks here")
    parser.add_argument("--decisions", type=Path, help="write every decision here")
    args = parser.parse_args()

    if args.load:
        calls = pickle.loads(args.load.read_bytes())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            db = args.db or simulate(Path(tmp) / "cell.sqlite", args)
            calls = capture(db)
    if args.save:
        args.save.write_bytes(pickle.dumps(calls, protocol=5))
    events = sum(len(pickle.loads(c)[0]) for c in calls)

    times = []
    decisions: list = []
    for _ in range(args.repeats):
        seconds, decisions = one_pass(calls)
        times.append(seconds)
    best = min(times)
    print(
        f"{events:,} events in {len(calls)} chunks: infer best {best:.3f}s of {args.repeats} "
        f"({events / best:,.0f} ev/s; all: {', '.join(f'{t:.3f}' for t in times)})"
    )
    if args.decisions:
        with args.decisions.open("w") as out:
            for d in decisions:
                out.write(f"{d.event_id}\t{d.host}\t{d.rule}\n")
    if args.top:
        profile = cProfile.Profile()
        seconds, _ = one_pass(calls, profile)
        print(f"under cProfile: {seconds:.3f}s")
        stats = pstats.Stats(profile)
        ranked = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[: args.top]
        print(f"{'tottime':>8} {'cumtime':>8} {'calls':>9}  function")
        for (filename, line, function), (_, calls_n, tottime, cumtime, _) in ranked:
            where = f"{Path(filename).name}:{line}" if filename != "~" else "C"
            print(f"{tottime:8.3f} {cumtime:8.3f} {calls_n:9d}  {function} ({where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
