"""A subprocess whose stderr is a pipe (not a terminal), read line by line in a thread,
so a test can wait for a given line (an event, not a sleep)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time

import pytest


class Watched:
    def __init__(self, *parts: list[str], env: dict | None = None):
        """``parts``: the command line's arguments, in as many lists as is readable."""
        args = [arg for part in parts for arg in part]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "actionhost_backfill", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate, what: str, timeout: float = 120.0) -> str:
        """The first stderr line (from now on) for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                pytest.fail(f"{what}: not within {timeout:.0f} s; stderr so far: {self.lines}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                out = self.process.stdout.read()
                pytest.fail(f"{what}: the process ended first; stderr: {self.lines}; stdout: {out}")
            self.lines.append(line)
            if predicate(line):
                return line

    def finish(self, timeout: float = 120.0) -> tuple[int, str, list[str]]:
        """Exit code, stdout and every stderr line."""
        out = self.process.stdout.read()
        self.process.wait(timeout)
        self._reader.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return self.process.returncode, out, self.lines

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
