"""Precision and coverage of the backfill on release-faithful simulated histories, many seeds.

For each seed (and backend): ``simulate`` a history of ``--events`` events
(``--first-release`` Icehouse, Juno or Kilo ... Queens, then Rocky), ``schema upgrade``, ``backfill --include-shadow``,
``accuracy``; then one table per era over all seeds (NULL compute events,
filled, wrong, coverage, the rules that filled them) and the wrong values, if
any, with the command that explains each.  Prints Markdown (and ``--json``)
for docs/accuracy.md.  The CLI is called as a user would, in child processes.

    python bench/accuracy.py --events 100000 --seeds 1-20 --backend sqlite
    python bench/accuracy.py --events 1000000 --seeds 42 --backend postgresql --backend mysql
    python bench/accuracy.py --events 30000 --seeds 1-5 --rolling-days 30
    python bench/accuracy.py --events 30000 --seeds 1-5 --simulate=--api-clock-skew=3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import fresh_database  # noqa: E402

ERAS = ("icehouse", "juno", "kilo", "liberty", "mitaka", "newton", "ocata", "pike", "queens")
CLI = [sys.executable, "-m", "actionhost_backfill"]


def seeds(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            low, high = part.split("-")
            out.extend(range(int(low), int(high) + 1))
        else:
            out.append(int(part))
    return out


def run(*args: str, db: str) -> dict:
    done = subprocess.run(
        [*CLI, *args, "--db", db, "--json"], capture_output=True, text=True, cwd=ROOT
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


def one(
    backend: str,
    seed: int,
    events: int,
    workdir: Path,
    sim_args: tuple[str, ...] = (),
    fill_extra: tuple[str, ...] = (),
) -> dict:
    """Simulate with ``sim_args`` (e.g. --first-release juno), backfill, report accuracy."""
    url, drop = fresh_database(backend, workdir)
    try:
        started = time.monotonic()
        sim = run("simulate", "--events", str(events), "--seed", str(seed), *sim_args, db=url)
        subprocess.run(
            [*CLI, "schema", "upgrade", "--db", url], check=True, capture_output=True, cwd=ROOT
        )
        fill = run("backfill", "--include-shadow", "--no-progress", *fill_extra, db=url)
        report = run("accuracy", "--examples", "50", db=url)
        report["events"] = sim["events"]
        report["seconds"] = round(time.monotonic() - started, 1)
        report["backfill_rows_per_second"] = fill["rows_per_second"]
        return report
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seeds", default="1-20", help="e.g. 1-20 or 7,42")
    parser.add_argument("--backend", action="append", choices=("sqlite", "postgresql", "mysql"))
    parser.add_argument(
        "--first-release",
        default="kilo",
        help="release the simulated cell started on (icehouse, juno, kilo, ...)",
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / ".cache" / "accuracy")
    parser.add_argument(
        "--rolling-days", type=int, default=0, help="simulate --rolling-days (0: no windows)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--simulate",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra simulate option, e.g. --simulate=--api-clock-skew=3 (repeatable)",
    )
    parser.add_argument(
        "--backfill",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra backfill option, e.g. --backfill=--exclude-rule=current-host (repeatable)",
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    backends = args.backend or ["sqlite"]
    sim_args = ["--first-release", args.first_release]
    if args.rolling_days:
        sim_args += ["--rolling-days", str(args.rolling_days)]
    results = []
    for backend in backends:
        for seed in seeds(args.seeds):
            report = one(
                backend,
                seed,
                args.events,
                args.workdir,
                (*sim_args, *args.simulate),
                tuple(args.backfill),
            )
            report.update(backend=backend, seed=seed)
            results.append(report)
            print(
                f"{backend} seed {seed}: {report['events']:,} events, filled {report['filled']:,}, "
                f"wrong {report['wrong']}, compute coverage {report['compute_coverage_pct']}% "
                f"({report['seconds']}s)",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return
    print_tables(results, args.events, args.rolling_days)


def print_tables(results: list[dict], events: int, rolling_days: int = 0) -> None:
    rolling = f" --rolling-days {rolling_days}" if rolling_days else ""
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"`python bench/accuracy.py --events {events}{rolling} --seeds ...`\n"
    )
    print("| backend | seed | events | filled | wrong | precision | compute coverage |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['backend']} | {r['seed']} | {r['events']:,} | {r['filled']:,} | {r['wrong']} | "
            f"{r['precision_pct']}% | {r['compute_coverage_pct']}% |"
        )
    totals: dict[str, Counter] = defaultdict(Counter)
    rules: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        for era, figures in r.get("by_era", {}).items():
            for key in ("null_events", "compute_null_events", "filled", "wrong"):
                totals[era][key] += figures[key]
            totals[era]["compute_filled"] += round(
                (figures["compute_coverage_pct"] or 0) * figures["compute_null_events"] / 100
            )
            rules[era].update(figures["filled_by_rule"])
    names = sorted({rule for counter in rules.values() for rule in counter})
    print("\nAll runs together, per era (the release that recorded the events):\n")
    print(
        "| era | NULL events | NULL compute_* | filled | wrong | compute coverage | "
        + " | ".join(names)
        + " |"
    )
    print("|---" * (6 + len(names)) + "|")
    for era in [*ERAS, *(e for e in totals if e not in ERAS)]:
        if era not in totals:
            continue
        t = totals[era]
        coverage = (
            100.0 * t["compute_filled"] / t["compute_null_events"]
            if t["compute_null_events"]
            else 0
        )
        print(
            f"| {era} | {t['null_events']:,} | {t['compute_null_events']:,} | {t['filled']:,} | "
            f"{t['wrong']} | {coverage:.2f}% | "
            + " | ".join(f"{rules[era][n]:,}" for n in names)
            + " |"
        )
    wrong = [(r, w) for r in results for w in r.get("wrong_examples", [])]
    if wrong:
        print("\nWrong values:\n")
        for r, w in wrong:
            print(
                f"- {r['backend']} seed {r['seed']}: {w['event_table']} {w['event_id']} {w['event']} "
                f"wrote {w['host']}, truth {w['truth']} [{w['rule']}]"
            )


if __name__ == "__main__":
    main()
