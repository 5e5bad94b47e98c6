"""nova.conf and --all-cells: URLs from Nova's own configuration, every cell at once."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from actionhost_backfill.db import parse_url
from actionhost_backfill.errors import BadInput, ExitCode
from actionhost_backfill.nova import cells, novaconf
from actionhost_backfill.sim.simulate import SimulationOptions, simulate
from tests import harness

# --------------------------------------------------------------------------- nova.conf


def _conf(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_later_files_win_key_by_key(tmp_path):
    first = _conf(
        tmp_path,
        "nova.conf",
        "[DEFAULT]\ndebug = true\n[database]\nconnection = mysql+pymysql://nova:a%b@db1/nova\n"
        "[api_database]\nconnection = mysql+pymysql://nova:x@db1/nova_api\n",
    )
    second = _conf(
        tmp_path, "90-db.conf", "[database]\nconnection = mysql+pymysql://nova:s3cret@db2/nova\n"
    )
    conf = novaconf.read([first, second])
    assert conf.database == "mysql+pymysql://nova:s3cret@db2/nova"
    assert conf.api_database == "mysql+pymysql://nova:x@db1/nova_api"  # untouched by file 2
    assert novaconf.read([first]).database.endswith("a%b@db1/nova")  # no % interpolation


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[DEFAULT]\ndebug = true\n", "sets no [database] connection"),
        ("[database]\nconnection =\n", "sets no [database] connection"),
        ("this is not ini\n", "is not a valid INI file"),
    ],
)
def test_bad_nova_conf_is_one_line_bad_input(tmp_path, text, message):
    path = _conf(tmp_path, "nova.conf", text)
    result = harness.cli("schema", "status", "--nova-conf", path)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_missing_and_unreadable_nova_conf(tmp_path):
    result = harness.cli("status", "--nova-conf", str(tmp_path / "nope.conf"))
    assert result.exit_code == ExitCode.BAD_INPUT and "no such file" in result.stderr
    result = harness.cli("status", "--nova-conf", str(tmp_path))
    assert result.exit_code == ExitCode.BAD_INPUT and "is a directory" in result.stderr


def test_nova_conf_points_at_the_cell_and_db_wins(cell, tmp_path):
    path = _conf(tmp_path, "nova.conf", f"[database]\nconnection = {cell.url}\n")
    result = harness.cli("schema", "status", "--nova-conf", path)
    assert result.exit_code == ExitCode.PARTIAL, result.stderr  # upgrade pending
    assert "instance_actions_events" in result.stdout
    wrong = _conf(tmp_path, "wrong.conf", "[database]\nconnection = sqlite:////nonexistent/x.db\n")
    result = harness.cli("schema", "status", "--nova-conf", wrong, "--db", cell.url)
    assert result.exit_code == ExitCode.PARTIAL  # --db wins over nova.conf


# --------------------------------------------------------------------------- templates


def test_template_expansion_follows_database_connection():
    default = "mysql+pymysql://nova:p%40ss@db.example.org:3307/nova?charset=utf8"
    assert (
        cells.expand_template(
            "{scheme}://{username}:{password}@{hostname}:{port}/cell1?{query}", default
        )
        == "mysql+pymysql://nova:p%40ss@db.example.org:3307/cell1?charset=utf8"
    )
    assert cells.expand_template("{scheme}://{username}@{hostname}/{path}_cell2", default) == (
        "mysql+pymysql://nova@db.example.org/nova_cell2"
    )
    assert cells.expand_template("postgresql://plain/cell", None) == "postgresql://plain/cell"
    with pytest.raises(BadInput, match=r"\[database\] connection"):
        cells.expand_template("{scheme}://x/y", None)
    with pytest.raises(BadInput, match="unknown field"):
        cells.expand_template("{nonsense}://x/y", default)


# --------------------------------------------------------------------------- all cells


def _database(backend: str, server_url: str, tmp_path, request, stem: str, *, create=True) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'{stem}.sqlite'}"
    name = f"ahb_{uuid.uuid4().hex[:10]}"
    if create:
        harness.create_database(backend, name)
        request.addfinalizer(lambda: harness.drop_database(backend, name))
    return str(make_url(server_url).set(database=name).render_as_string(hide_password=False))


def _api_database(url: str, mappings: list[tuple[str, str, str, bool]]) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE cell_mappings (id INTEGER PRIMARY KEY, uuid VARCHAR(36) NOT NULL, "
            "name VARCHAR(255), transport_url TEXT, database_connection TEXT, "
            "disabled BOOLEAN DEFAULT FALSE)"
        )
        for n, (cell_uuid, name, connection, disabled) in enumerate(mappings, start=1):
            conn.execute(
                sa.text(
                    "INSERT INTO cell_mappings (id, uuid, name, transport_url, "
                    "database_connection, disabled) VALUES (:i, :u, :n, 'rabbit://', :c, :d)"
                ),
                {"i": n, "u": cell_uuid, "n": name, "c": connection, "d": disabled},
            )
    engine.dispose()


def test_all_cells(blank_db, backend, server_url, tmp_path, request):
    api = blank_db
    good = [_database(backend, server_url, tmp_path, request, f"cell{n}") for n in (1, 2, 3)]
    for n, url in enumerate(good):
        simulate(parse_url(url), SimulationOptions(seed=n, events=1500, hosts=6, days=120))
    broken = _database(backend, server_url, tmp_path, request, "missing", create=False)
    disabled = _database(backend, server_url, tmp_path, request, "disabled", create=False)
    _api_database(
        api,
        [
            (cells.CELL0_UUID, "cell0", good[0], False),
            (str(uuid.uuid4()), "cell1", good[1], False),
            (str(uuid.uuid4()), "broken", broken, False),
            (str(uuid.uuid4()), "cell2", good[2], False),
            (str(uuid.uuid4()), "retired", disabled, True),
        ],
    )
    common = ["--all-cells", "--api-db", api, "--parallel-cells", "2"]

    upgrade = harness.cli("schema", "upgrade", *common, "--json")
    payload = json.loads(upgrade.stdout)
    codes = {c["cell"]: c["exit_code"] for c in payload["cells"]}
    assert set(codes) == {"cell0", "cell1", "broken", "cell2"}  # disabled skipped
    assert codes["cell0"] == codes["cell1"] == codes["cell2"] == 0
    assert codes["broken"] in (ExitCode.INTERVENE, ExitCode.BAD_INPUT)
    assert upgrade.exit_code == codes["broken"] == payload["exit_code"]  # the most urgent cell's

    backfill = harness.cli("backfill", *common, "--no-progress")
    assert backfill.exit_code == codes["broken"]
    lines = {line.split()[0]: line for line in backfill.stdout.splitlines()[1:-1]}
    for name in ("cell0", "cell1", "cell2"):
        assert "complete: filled" in lines[name], backfill.stdout
    assert "error:" in lines["broken"]
    assert "the most urgent cell's (3 of 4 cells exited 0)" in backfill.stdout

    for args in (["status"], ["verify"], ["failures", "--all-time"], ["schema", "status"]):
        result = harness.cli(*args, *common, "--json")
        per_cell = {c["cell"]: c for c in json.loads(result.stdout)["cells"]}
        assert all(per_cell[n]["exit_code"] == 0 for n in ("cell0", "cell1", "cell2")), args
        assert result.exit_code == per_cell["broken"]["exit_code"], args
    verify = json.loads(harness.cli("verify", *common, "--json").stdout)
    assert all(c["result"]["checked"] > 0 for c in verify["cells"] if c["cell"] != "broken")

    with_disabled = harness.cli("status", *common, "--include-disabled", "--json")
    assert "retired" in {c["cell"] for c in json.loads(with_disabled.stdout)["cells"]}


def test_all_cells_needs_an_api_database(tmp_path):
    result = harness.cli("status", "--all-cells")
    assert result.exit_code == ExitCode.BAD_INPUT and "--api-db" in result.stderr
    conf = _conf(tmp_path, "nova.conf", "[database]\nconnection = sqlite:////x/y.db\n")
    result = harness.cli("status", "--all-cells", "--nova-conf", conf)
    assert result.exit_code == ExitCode.BAD_INPUT and "[api_database]" in result.stderr
    unreachable = "postgresql://nova:hunter2@127.0.0.1:1/nova_api"
    result = harness.cli("status", "--all-cells", "--api-db", unreachable)
    assert result.exit_code in (ExitCode.INTERVENE, ExitCode.BAD_INPUT)
    assert "hunter2" not in result.stdout + result.stderr
    result = harness.cli(
        "status", "--all-cells", "--api-db", "sqlite:///x.db", "--db", "sqlite:///y"
    )
    assert result.exit_code == ExitCode.BAD_INPUT and "drop --db" in result.stderr


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([0, 3, 2], 2),  # busy must not hide a cell that needs a person
        ([4, 127, 2], 127),  # bad input above everything
        ([1, 4], 4),  # drift above partial
        ([1, 3], 3),
        ([0, 5, 4], 5),
        ([0, 0], 0),
        ([], 0),
    ],
)
def test_all_cells_exit_code_follows_the_documented_precedence(codes, expected):
    outcomes = [
        cells.CellOutcome(cells.CellMapping(f"u{i}", f"c{i}", "sqlite://", False), code, "")
        for i, code in enumerate(codes)
    ]
    assert cells.worst(outcomes) == expected


def test_a_bad_template_is_that_cells_row(blank_db, backend, server_url, tmp_path, request):
    """A cell whose database_connection is a broken template ({bogus}) fails alone, named."""
    api = blank_db
    good = _database(backend, server_url, tmp_path, request, "good")
    simulate(parse_url(good), SimulationOptions(seed=4, events=800, hosts=5, days=90))
    _api_database(
        api,
        [
            (cells.CELL0_UUID, "cell0", good, False),
            (str(uuid.uuid4()), "typo", "{scheme}://{username}@{bogus}/nova_typo", False),
            (str(uuid.uuid4()), "brace", "{scheme}://{hostname/nova", False),
        ],
    )
    conf = _conf(tmp_path, "nova.conf", f"[database]\nconnection = {good}\n")
    common = ["--all-cells", "--api-db", api, "--nova-conf", conf]

    upgrade = harness.cli("schema", "upgrade", *common)
    backfill = harness.cli("backfill", *common, "--no-progress")
    assert backfill.exit_code == upgrade.exit_code == ExitCode.BAD_INPUT, backfill.stderr
    rows = {line.split()[0]: line for line in backfill.stdout.splitlines()[1:-1]}
    assert set(rows) == {"cell0", "typo", "brace"}
    assert "complete: filled" in rows["cell0"], backfill.stdout  # the good cell ran
    assert "127  error: database_connection template uses an unknown field {bogus}" in rows["typo"]
    assert "127  error: database_connection template is malformed" in rows["brace"]
    assert "(1 of 3 cells exited 0)" in backfill.stdout

    status = harness.cli("status", *common, "--json")
    payload = json.loads(status.stdout)
    by_name = {c["cell"]: c for c in payload["cells"]}
    assert by_name["cell0"]["exit_code"] == 0 and by_name["cell0"]["error"] is None
    assert by_name["typo"]["exit_code"] == ExitCode.BAD_INPUT
    assert by_name["typo"]["result"] is None and "{bogus}" in by_name["typo"]["error"]
    assert payload["exit_code"] == status.exit_code == ExitCode.BAD_INPUT
