"""docs/json.md is the --json contract: every command's real output matches its example.

The whole scenario (simulate, schema, validate, backfill, status, verify,
explain, events, failures, accuracy, --all-cells with a bad cell, an error,
revert, downgrade) runs with --json on each backend; each document must carry
``format`` and every documented key with its documented type.  A top-level
key the docs lack fails with the keys to add (or run ``python -m
tests.jsonshape --write`` and review the diff).
"""

from __future__ import annotations

import json

import pytest

from tests import jsonshape

COMMANDS_WITH_JSON = {
    "error",
    "--all-cells",
    "schema status",
    "schema upgrade",
    "schema downgrade",
    "validate",
    "backfill",
    "status",
    "verify",
    "revert",
    "explain",
    "events show",
    "events show --provenance",
    "events list",
    "failures",
    "simulate",
    "accuracy",
}


def test_every_json_document_is_documented_once():
    documented = jsonshape.documented()
    assert set(documented) == COMMANDS_WITH_JSON
    for name, doc in documented.items():
        assert doc.example["format"] == 1, name
        for path in doc.maps | doc.free | doc.whole:
            assert path.split(".")[0].split("[")[0] in doc.example, (name, path)


def test_shape_checker_catches_what_it_must():
    example = {"format": 1, "runs": [{"id": 1, "rules": {"a": 1}}], "note": None}
    maps = frozenset({"runs[].rules"})
    good = {"format": 1, "runs": [{"id": 2, "rules": {"x": 3, "y": 4}}], "note": "n"}
    assert jsonshape.problems(example, good, maps) == []
    assert jsonshape.problems(example, {"format": 1, "runs": [{"rules": {}}]}, maps) == [
        "runs[].id: documented, missing",
        "note: documented, missing",
    ]
    wrong = {"format": 1, "runs": [{"id": "2", "rules": {"x": "3"}}], "note": 1}
    assert [p.split(":")[0] for p in jsonshape.problems(example, wrong, maps)] == [
        "runs[].id",
        "runs[].rules.*",
    ]
    assert jsonshape.undocumented(example, {**good, "runner": {"pid": 1}}) == {"runner": {"pid": 1}}


def test_every_command_matches_docs_json(blank_db, tmp_path):
    documented = jsonshape.documented()
    outputs = jsonshape.collect(blank_db, tmp_path)
    assert set(outputs) == COMMANDS_WITH_JSON
    failures, new_keys = [], {}
    for name, documents in outputs.items():
        doc = documented[name]
        for document in documents:
            assert document["format"] == 1, name
            failures += [
                f"{name}: {p}"
                for p in jsonshape.problems(doc.example, document, doc.maps, free=doc.free)
            ]
            extra = jsonshape.undocumented(doc.example, document)
            if extra:
                new_keys.setdefault(name, {}).update(extra)
    assert not failures, "\n".join(failures)
    assert not new_keys, (
        "top-level keys missing from docs/json.md (add them to the examples, or run "
        "`python -m tests.jsonshape --write` and review the diff):\n"
        + "\n".join(f"{name}: {json.dumps(keys)[:400]}" for name, keys in new_keys.items())
    )
    # --all-cells: the bad template is its cell's row, the good cell's result is the
    # command's own document (checked against the command's section).
    cells = {c["cell"]: c for c in outputs["--all-cells"][0]["cells"]}
    assert cells["cell2"]["result"] is None and "{bogus}" in cells["cell2"]["error"]
    status = documented["status"]
    result = {"format": 1, **cells["cell1"]["result"]}
    assert jsonshape.problems(status.example, result, status.maps) == []


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--db", "sqlite:////nonexistent/nova.sqlite"],
        ["status", "--no-such-flag"],
        ["failures", "--since", "last tuesday", "--db", "sqlite:////nonexistent/x.sqlite"],
    ],
)
def test_errors_in_json_mode_print_the_error_object(args):
    from tests import harness

    result = harness.cli(*args, "--json")
    assert result.exit_code == 127
    body = json.loads(result.stdout)
    assert body["format"] == 1 and body["exit_code"] == 127
    assert body["error"] and "\n" not in body["error"]
    assert result.stderr.strip() == f"error: {body['error']}"
    error = jsonshape.documented()["error"]
    assert jsonshape.problems(error.example, body) == []
