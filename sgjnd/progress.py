"""A dependency-free progress line on stderr for long runs (a bar on a terminal, one line per step otherwise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts steps of known total and reports them on ``stream``.

    Args:
        total: number of steps.
        label: what is being counted.
        stream: where to write; stderr by default so stdout stays machine-readable.
        enabled: False silences it (e.g. for a single item or ``--quiet``).
    """

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled and total > 0
        self.done = 0
        self.start = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, detail: str = "") -> None:
        """Record one finished step, with an optional short detail (a file name, a figure)."""
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        width = 24
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "." * (width - filled)
        text = f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:.1f}s eta {eta:.1f}s {detail}"
        if self._tty:
            self.stream.write("\r" + text[:160].ljust(160))
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
