"""The benchmark runs end to end at a tiny size (a smoke test: no timings are asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_smoke(backend, server_url, tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            *("--backend", backend, "--events", "1500", "--naive-sample", "20"),
            *("--workdir", str(tmp_path), "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| backend | events |" in done.stdout
    (result,) = json.loads(out.read_text())["results"]
    assert result["backend"] == backend
    assert 0 < result["limit_rows"] <= result["filled"]
    assert result["naive_rows"] == 20 and result["peak_rss_mb"] > 0
    assert result["ratio_toolkit_to_limit"] > 0 and result["batch_p99_ms"] > 0
    assert not list(tmp_path.glob("bench-*.sqlite"))  # databases are dropped afterwards
