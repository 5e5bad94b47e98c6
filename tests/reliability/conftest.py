"""Bad-input cases that cannot apply to a backend are not collected for it (never skipped)."""

from __future__ import annotations


def pytest_collection_modifyitems(config, items):
    from tests.reliability.test_bad_input import CASES

    applies = {name: backends for name, backends, *_ in CASES}
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec else {}
        name, backend = params.get("name"), params.get("backend")
        if name in applies and backend not in applies[name]:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
