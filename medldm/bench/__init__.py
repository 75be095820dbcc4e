"""The benchmark harness: dataset x operator x solver x seed -> results.csv and a report.

Python API::

    from medldm.bench import CaseSource, run_benchmark, write_report

    cases = CaseSource(root="/my/cohort", slices=4, size=128)
    run_benchmark(cases, ["mri_4x", "mri_8x"], ["zero_filled", "tv"], [0, 1, 2], "out/")
    write_report("out/")

Command line: ``medldm-bench`` (:mod:`medldm.bench.cli`).
"""

from medldm.bench.cases import CaseSource
from medldm.bench.cases.case import Case, CaseFailure
from medldm.bench.compatibility import is_applicable
from medldm.bench.report import write_report
from medldm.bench.results import COLUMNS, ResultsTable, SliceTable
from medldm.bench.runner import RunSummary, run_benchmark
from medldm.problems.configs import load_physics, load_solver

__all__ = [
    "COLUMNS",
    "Case",
    "CaseFailure",
    "CaseSource",
    "ResultsTable",
    "RunSummary",
    "SliceTable",
    "is_applicable",
    "load_physics",
    "load_solver",
    "run_benchmark",
    "write_report",
]
