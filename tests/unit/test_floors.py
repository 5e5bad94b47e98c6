"""No module imports from a floor above its own (docs/architecture.md, Floors).

The floors, lowest first, by module path inside ``actionhost_backfill``; the
first prefix that matches decides.  Imports under ``if TYPE_CHECKING:`` are
held to the same rule, except the ones listed in ``ANNOTATION_ONLY``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "actionhost_backfill"

FLOORS: list[tuple[str, ...]] = [
    ("__init__", "errors", "clock", "redact"),
    ("dialects",),
    ("db",),
    ("nova",),
    ("state",),
    ("schema", "preflight"),
    ("inference",),
    ("engine",),
    ("reports",),
    ("sim",),
    ("cli", "__main__"),
]

#: (importer, imported) pairs allowed to point up because only annotations use them.
ANNOTATION_ONLY = {
    # preflight asks for the privileges the throttle's reads need; it names the
    # options' type, the engine passes them in.
    ("preflight", "engine.throttling"),
}


def floor_of(module: str) -> int:
    for floor, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                return floor
    raise AssertionError(f"{module} is on no floor: add it to FLOORS and docs/architecture.md")


def module_of(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, package: Path = PACKAGE) -> list[str]:
    """The package modules ``path`` imports: ``from actionhost_backfill.state import runs``
    counts as ``state.runs`` (a module), ``from ...state.tables import state`` as
    ``state.tables``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module != "actionhost_backfill" and not node.module.startswith(
                "actionhost_backfill."
            ):
                continue
            base = node.module.removeprefix("actionhost_backfill").removeprefix(".")
            for alias in node.names:
                name = f"{base}.{alias.name}" if base else alias.name
                as_path = package.joinpath(*name.split("."))
                if as_path.is_dir() or as_path.with_suffix(".py").is_file():
                    found.append(name)
                elif base:
                    found.append(base)
                else:
                    found.append("__init__")  # __version__
        elif isinstance(node, ast.Import):
            found += [
                alias.name.removeprefix("actionhost_backfill.")
                for alias in node.names
                if alias.name.startswith("actionhost_backfill.")
            ]
    return found


def upward_imports(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        importer = module_of(path, package)
        for imported in imports_of(path, package):
            if floor_of(imported) > floor_of(importer) and (
                (importer, imported) not in ANNOTATION_ONLY
            ):
                found.append(f"{importer} (floor {floor_of(importer)}) imports {imported}")
    return found


def test_every_module_is_on_a_floor():
    for path in PACKAGE.rglob("*.py"):
        floor_of(module_of(path))


def test_no_module_imports_from_a_higher_floor():
    assert upward_imports() == []


def test_a_module_importing_upward_is_caught(tmp_path):
    package = tmp_path / "actionhost_backfill"
    for folder in ("state", "schema", "inference", "engine"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "schema" / "revisions.py").write_text("")
    (package / "engine" / "evidence.py").write_text("")
    (package / "state" / "audit.py").write_text(
        "from actionhost_backfill.schema import revisions\n"
    )
    (package / "inference" / "rules.py").write_text(
        "from actionhost_backfill.engine.evidence import EvidenceSnapshot\n"
        "from actionhost_backfill.state import audit\n"
    )
    assert upward_imports(package) == [
        "inference.rules (floor 6) imports engine.evidence",
        "state.audit (floor 4) imports schema.revisions",
    ]


def test_inference_is_pure():
    """inference/ opens no engine and reads no table: it imports neither SQLAlchemy
    nor anything of the toolkit but itself, the errors and Nova's release facts."""
    allowed = ("inference", "errors", "nova.releases")
    for path in sorted((PACKAGE / "inference").rglob("*.py")):
        tree = ast.parse(path.read_text())
        third_party = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "sqlalchemy" not in third_party, path.name
        for imported in imports_of(path):
            assert floor_of(imported) <= floor_of("inference"), (path.name, imported)
            assert imported.startswith(allowed), (path.name, imported)
