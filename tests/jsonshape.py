"""docs/json.md as a contract: parse its examples, run every command, compare shapes.

Each ``## `name``` section of docs/json.md holds one ```json example (real
output, lists cut to one element) and may say which objects are *maps* (keys
are data, e.g. rule names): ``Maps: `runs[].filled_by_rule`, `null_hosts```.
A command's real output conforms when every documented key is present with
the documented type, recursively (``null`` on either side matches any type,
as timestamps and counters are nullable; ints and floats are both numbers).
Top-level keys the example lacks are reported separately: they are new fields
to document.

To refresh the examples after adding fields, run
``python -m tests.jsonshape --write`` (a SQLite scenario; keeps the prose).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "json.md"
SECTION = re.compile(r"^## `(?P<name>[^`]+)`\n(?P<body>.*?)(?=^## |\Z)", re.S | re.M)
BLOCK = re.compile(r"^```json\n(?P<json>.*?)^```", re.S | re.M)
MAPS = re.compile(r"^Maps[^:]*:(?P<paths>.*)$", re.M)
FREE = re.compile(r"^Not checked here[^:]*:(?P<paths>.*)$", re.M)
WHOLE = re.compile(r"^Lists shown whole[^:]*:(?P<paths>.*)$", re.M)
#: Where the examples' files live (instead of the scenario's temporary directory).
EXAMPLE_DIR = "/srv/nova"


@dataclass
class Documented:
    name: str
    example: object
    maps: frozenset[str]
    free: frozenset[str] = frozenset()
    """Paths whose value is another section's document (checked there)."""
    whole: frozenset[str] = frozenset()
    """Lists the example shows whole (their elements differ in shape, e.g. a failed cell)."""


def _paths(pattern: re.Pattern, body: str) -> frozenset[str]:
    found = pattern.search(body)
    return frozenset(re.findall(r"`([^`]+)`", found.group("paths"))) if found else frozenset()


def documented(text: str | None = None) -> dict[str, Documented]:
    text = DOC.read_text() if text is None else text
    found = {}
    for section in SECTION.finditer(text):
        body = section.group("body")
        block = BLOCK.search(body)
        if block is None:
            continue
        name = section.group("name")
        found[name] = Documented(
            name,
            json.loads(block.group("json")),
            _paths(MAPS, body),
            _paths(FREE, body),
            _paths(WHOLE, body),
        )
    return found


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def problems(
    doc,
    actual,
    maps: frozenset[str] = frozenset(),
    path: str = "",
    free: frozenset[str] = frozenset(),
) -> list[str]:
    """Where ``actual`` lacks a documented key or has another type (empty: it conforms)."""
    where = path or "(top)"
    if doc is None or actual is None or path in free:
        return []
    if _kind(doc) != _kind(actual):
        return [
            f"{where}: documented {_kind(doc)}, got {_kind(actual)} ({json.dumps(actual)[:80]})"
        ]
    found: list[str] = []
    if isinstance(doc, dict):
        if path in maps:
            if doc:
                template = next(iter(doc.values()))
                for value in actual.values():
                    found += problems(template, value, maps, f"{path}.*", free)
            return found
        for key, value in doc.items():
            child = f"{path}.{key}" if path else key
            if key not in actual:
                found.append(f"{child}: documented, missing")
            else:
                found += problems(value, actual[key], maps, child, free)
    elif isinstance(doc, list) and doc:
        for item in actual:
            found += problems(doc[0], item, maps, f"{path}[]", free)
    return found


def undocumented(doc, actual) -> dict:
    """Top-level keys of ``actual`` that the example lacks, with their values (to paste)."""
    if not isinstance(doc, dict) or not isinstance(actual, dict):
        return {}
    return {key: value for key, value in actual.items() if key not in doc}


def merge(first, second):
    """One example from several documents of a section: union of keys, first non-empty list."""
    if isinstance(first, dict) and isinstance(second, dict):
        merged = dict(first)
        for key, value in second.items():
            merged[key] = merge(first[key], value) if key in first else value
        return merged
    if isinstance(first, list) and isinstance(second, list):
        return first or second
    return second if first is None else first


def trim(value, rules: Documented, path: str = ""):
    """An example from real output: lists cut to their first element, maps to two entries."""
    if path in rules.free and isinstance(value, dict):
        return {"...": "the command's own document, without format (see its section)"}
    if isinstance(value, list):
        kept = value if path in rules.whole else value[:1]
        return [trim(item, rules, f"{path}[]") for item in kept]
    if isinstance(value, dict):
        if path in rules.maps:
            items = list(value.items())[:2]
            return {k: trim(v, rules, f"{path}.*") for k, v in items}
        return {k: trim(v, rules, f"{path}.{k}" if path else k) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- the scenario


def collect(url: str, workdir: Path) -> dict[str, list[dict]]:
    """Run every command with --json on a fresh database ``url``; documents by section name.

    Several documents may share a section (``backfill`` and ``backfill --dry-run``).
    """
    from tests import harness

    out: dict[str, list[dict]] = {}
    codes: dict[str, int] = {}

    def run(name: str, *args: str, exit_codes: tuple[int, ...] = (0,)) -> dict:
        result = harness.cli(*args, "--json")
        assert result.exit_code in exit_codes, (args, result.exit_code, result.stderr)
        document = json.loads(result.stdout)
        out.setdefault(name, []).append(document)
        codes[" ".join(args)] = result.exit_code
        return document

    db = ["--db", url]
    run("simulate", "simulate", *db, "--events", "600", "--seed", "3")
    run("schema status", "schema", "status", *db, exit_codes=(1,))  # upgrade pending
    run("schema upgrade", "schema", "upgrade", *db)
    run("schema status", "schema", "status", *db)
    run("validate", "validate", *db, "--sample", "20", "--examples", "1")
    dry = run("backfill", "backfill", *db, "--dry-run", "--no-progress")
    run("backfill", "backfill", *db, "--no-progress")
    run("status", "status", *db)
    run("verify", "verify", *db)
    sample = next(s for s in dry["samples"] if s["host"])
    run("explain", "explain", str(sample["event_id"]), *db)
    run("events show", "events", "show", sample["instance_uuid"], sample["request_id"], *db)
    run(
        "events show --provenance",
        "events",
        "show",
        sample["instance_uuid"],
        sample["request_id"],
        *db,
        "--provenance",
    )
    run("events list", "events", "list", sample["instance_uuid"], *db)
    run("failures", "failures", "--all-time", *db)
    run("accuracy", "accuracy", *db, "--examples", "1")
    api = f"sqlite:///{workdir / 'api.sqlite'}"
    engine = sa.create_engine(api)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE cell_mappings (id INTEGER PRIMARY KEY, uuid VARCHAR(36), "
            "name VARCHAR(255), database_connection TEXT, disabled BOOLEAN)"
        )
        conn.execute(
            sa.text("INSERT INTO cell_mappings VALUES (1, :u, 'cell1', :c, 0)"),
            {"u": "8f5c3a5e-0d3a-4c5e-9a59-1c1c2b3d4e5f", "c": url},
        )
        conn.execute(
            sa.text("INSERT INTO cell_mappings VALUES (2, :u, 'cell2', :c, 0)"),
            {"u": "0b1d7f44-52a7-4a43-a0f5-36a1e9f0d1aa", "c": "{scheme}://{bogus}/nova_cell2"},
        )
    engine.dispose()
    conf = workdir / "nova.conf"
    conf.write_text(f"[database]\nconnection = {url}\n[api_database]\nconnection = {api}\n")
    run("--all-cells", "status", "--all-cells", "--nova-conf", str(conf), exit_codes=(127,))
    run("error", "status", "--db", f"sqlite:///{workdir / 'missing.sqlite'}", exit_codes=(127,))
    run("revert", "revert", "--run", "1", *db, "--dry-run", "--no-progress")
    run("revert", "revert", "--run", "1", *db, "--no-progress")
    run("schema downgrade", "schema", "downgrade", "base", *db)
    return out


def write_examples() -> None:
    """Refresh every example of docs/json.md from a SQLite run (prose and Maps lines kept)."""
    text = DOC.read_text()
    docs = documented(text)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nova.sqlite"
        sa.create_engine(f"sqlite:///{path}").connect().close()
        outputs = collect(f"sqlite:///{path}", Path(tmp))
        scratch = tmp

    def replace(section: re.Match) -> str:
        name, body = section.group("name"), section.group("body")
        if name not in outputs:
            return section.group(0)
        rules = docs.get(name) or Documented(name, {}, frozenset())
        example = outputs[name][0]
        for other in outputs[name][1:]:
            example = merge(example, other)
        fresh = json.dumps(trim(example, rules), indent=2, sort_keys=True, ensure_ascii=False)
        fresh = fresh.replace(scratch, EXAMPLE_DIR)
        body = BLOCK.sub(lambda _m: f"```json\n{fresh}\n```", body, count=1)
        return f"## `{name}`\n{body}"

    DOC.write_text(SECTION.sub(replace, text))


if __name__ == "__main__":  # python -m tests.jsonshape --write
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.jsonshape --write")
    write_examples()
