"""The service's metrics in the Prometheus text exposition format (version 0.0.4), without a client library.

Counters and histograms are thread-safe: request threads, the batcher's worker and the event loop all record.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of :meth:`Metrics.render`."""

LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Request latency histogram bounds, in seconds."""

BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Batch-size histogram bounds (rows per backend run; calls merged per run)."""

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str]) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to the count of ``labels``."""
        key = tuple((k, str(labels[k])) for k in self.label_names)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        """The current count of ``labels`` (0 if never counted)."""
        key = tuple((k, str(labels[k])) for k in self.label_names)
        with self._lock:
            return self._values.get(key, 0.0)

    def render(self) -> Iterable[str]:
        """Exposition lines."""
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            yield f"{self.name}{_labels(key)} {_number(value)}"


class Gauge:
    """A value that goes up and down (no labels)."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._value = 0.0
        self._lock = threading.Lock()

    def add(self, amount: float) -> None:
        """Add ``amount`` (negative to subtract)."""
        with self._lock:
            self._value += amount

    def set(self, value: float) -> None:
        """Set the value."""
        with self._lock:
            self._value = value

    @property
    def value(self) -> float:
        """The current value."""
        with self._lock:
            return self._value

    def render(self) -> Iterable[str]:
        """Exposition lines."""
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        yield f"{self.name} {_number(self.value)}"


class Histogram:
    """Observations counted into cumulative buckets per label set, with their sum and count."""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self.bounds = (*sorted(buckets), math.inf)
        self._data: dict[Labels, tuple[list[int], list[float]]] = {}  # counts per bucket, [sum]
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        """Count one observation of ``value``."""
        key = tuple((k, str(labels[k])) for k in self.label_names)
        with self._lock:
            counts, total = self._data.setdefault(key, ([0] * len(self.bounds), [0.0]))
            for i, bound in enumerate(self.bounds):
                if value <= bound:
                    counts[i] += 1
                    break
            total[0] += value

    def summary(self, **labels: str) -> tuple[int, float]:
        """(count, sum) of ``labels``."""
        key = tuple((k, str(labels[k])) for k in self.label_names)
        with self._lock:
            counts, total = self._data.get(key, ([0] * len(self.bounds), [0.0]))
            return sum(counts), total[0]

    def render(self) -> Iterable[str]:
        """Exposition lines (cumulative ``_bucket`` lines, ``_sum``, ``_count``)."""
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            items = sorted((k, (list(c), t[0])) for k, (c, t) in self._data.items())
        for key, (counts, total) in items:
            running = 0
            for bound, count in zip(self.bounds, counts, strict=True):
                running += count
                yield f"{self.name}_bucket{_labels(key, (('le', _number(bound)),))} {running}"
            yield f"{self.name}_sum{_labels(key)} {_number(total)}"
            yield f"{self.name}_count{_labels(key)} {running}"


class Metrics:
    """Everything the service counts; :meth:`render` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.requests = Counter("sgjnd_requests_total", "HTTP requests by route and status.", ("route", "status"))
        self.errors = Counter("sgjnd_errors_total", "Error responses by stable error code.", ("code",))
        self.latency = Histogram(
            "sgjnd_request_duration_seconds", "Request latency by route.", ("route",), LATENCY_BUCKETS
        )
        self.batch_rows = Histogram("sgjnd_batch_size", "Rows per backend run, by graph.", ("graph",), BATCH_BUCKETS)
        self.batch_calls = Histogram(
            "sgjnd_batch_requests", "Calls merged into one backend run, by graph.", ("graph",), BATCH_BUCKETS
        )
        self.inference = Histogram(
            "sgjnd_inference_seconds", "Backend run time, by graph.", ("graph",), LATENCY_BUCKETS
        )
        self.in_flight = Gauge("sgjnd_requests_in_flight", "Requests admitted and not yet finished.")
        self.ready = Gauge("sgjnd_model_ready", "1 when the model is loaded and the service takes requests.")
        self.bodies_waiting = Gauge(
            "sgjnd_bodies_waiting", "Admitted requests waiting for the body budget before reading their body."
        )
        self.body_bytes_held = Gauge(
            "sgjnd_body_bytes_reserved", "Bytes of request bodies reserved in memory now (--max-body-memory)."
        )
        self.connections_opened = Counter("sgjnd_connections_opened_total", "TCP connections accepted.", ())
        self.connections_open = Gauge("sgjnd_connections_open", "TCP connections open now.")
        self.connections_closed = Counter(
            "sgjnd_connections_closed_total",
            "Connections closed by the service, by reason: idle_timeout (no request came), header_timeout (a slow "
            "request head), keep_alive_timeout, evicted (idle, closed for a new connection at --max-connections), "
            "refused (at the limit, none idle), bad_http (malformed request head).",
            ("reason",),
        )
        self.connections_probe_only = Counter(
            "sgjnd_connections_probe_only_total",
            "Connections taken beyond --max-connections for /healthz and /readyz only (every connection was busy).",
            (),
        )

    def observe_batch(self, graph: str, rows: int, calls: int, seconds: float) -> None:
        """Record one backend run (the batcher's observer)."""
        self.batch_rows.observe(rows, graph=graph)
        self.batch_calls.observe(calls, graph=graph)
        self.inference.observe(seconds, graph=graph)

    def observe_request(self, route: str, status: int, seconds: float, code: str | None = None) -> None:
        """Record one finished request (and its error code, if it failed)."""
        self.requests.inc(route=route, status=str(status))
        self.latency.observe(seconds, route=route)
        if code is not None:
            self.errors.inc(code=code)

    def render(self) -> str:
        """The exposition text."""
        families = (
            self.requests, self.errors, self.latency, self.batch_rows, self.batch_calls, self.inference,
            self.in_flight, self.ready, self.bodies_waiting, self.body_bytes_held, self.connections_opened,
            self.connections_open, self.connections_closed,
            self.connections_probe_only,
        )  # fmt: skip
        return "\n".join(line for family in families for line in family.render()) + "\n"


def parse_histogram(text: str, name: str, labels: dict[str, str]) -> dict[float, int]:
    """Non-cumulative bucket counts of one histogram in exposition ``text`` (for load tests and checks).

    Args:
        text: a ``/metrics`` body.
        name: the histogram's name (without ``_bucket``).
        labels: the label set to pick (besides ``le``).

    Returns:
        Upper bound -> observations in that bucket (``inf`` for the last).
    """
    cumulative: list[tuple[float, int]] = []
    prefix = f"{name}_bucket{{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        head, _, value = line.rpartition(" ")
        pairs = dict(p.split("=", 1) for p in head[len(prefix) : -1].split(","))
        found = {k: v.strip('"') for k, v in pairs.items()}
        le = found.pop("le")
        if found == labels:
            cumulative.append((math.inf if le == "+Inf" else float(le), int(float(value))))
    cumulative.sort()
    out: dict[float, int] = {}
    previous = 0
    for bound, count in cumulative:
        out[bound] = count - previous
        previous = count
    return out
