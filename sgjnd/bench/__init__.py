"""Benchmark suites: latency, end-to-end time, accuracy drift and the physical frame of every backend and precision.

Example:
    >>> from sgjnd.bench import PROFILES, benchmark
    >>> outcome = benchmark(PROFILES["quick"], Path("bench-output"))
    >>> outcome.files["markdown"]        # bench-output/bench.md

Modules: :mod:`~sgjnd.bench.config` (profiles and targets), :mod:`~sgjnd.bench.timing` (statistics and the timed
loop), :mod:`~sgjnd.bench.frame` (sgemm peak, MAC counts), :mod:`~sgjnd.bench.prepare` (checkpoint, graphs),
:mod:`~sgjnd.bench.suite` (the measurement grid), :mod:`~sgjnd.bench.results` (rows),
:mod:`~sgjnd.bench.report` (JSON/CSV/Markdown, compare), :mod:`~sgjnd.bench.plots` (PNG, matplotlib imported
lazily), :mod:`~sgjnd.bench.api` (one call per CLI mode). Importing this package loads no heavy library.
"""

from sgjnd.bench.api import BenchOutcome as BenchOutcome
from sgjnd.bench.api import benchmark as benchmark
from sgjnd.bench.api import compare_files as compare_files
from sgjnd.bench.api import write_outputs as write_outputs
from sgjnd.bench.config import PROFILES as PROFILES
from sgjnd.bench.config import REFERENCE as REFERENCE
from sgjnd.bench.config import BenchConfig as BenchConfig
from sgjnd.bench.config import Target as Target
from sgjnd.bench.config import load_config as load_config
from sgjnd.bench.config import profile_config as profile_config
from sgjnd.bench.frame import MacCount as MacCount
from sgjnd.bench.frame import PeakResult as PeakResult
from sgjnd.bench.frame import count_macs_onnx as count_macs_onnx
from sgjnd.bench.frame import count_macs_torch as count_macs_torch
from sgjnd.bench.frame import matmul_peak as matmul_peak
from sgjnd.bench.report import Change as Change
from sgjnd.bench.report import compare_runs as compare_runs
from sgjnd.bench.report import markdown_report as markdown_report
from sgjnd.bench.results import BenchRun as BenchRun
from sgjnd.bench.results import Measurement as Measurement
from sgjnd.bench.results import read_run as read_run
from sgjnd.bench.suite import run_suite as run_suite
from sgjnd.bench.timing import LatencyStats as LatencyStats
from sgjnd.bench.timing import LoopConfig as LoopConfig
from sgjnd.bench.timing import summarize as summarize
from sgjnd.bench.timing import throughput as throughput
from sgjnd.bench.timing import time_calls as time_calls
