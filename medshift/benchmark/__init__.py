"""`medshift benchmark`: a downstream benchmark of translation (landmark detection on the phantom).

Modules: `detector` (the small heatmap network and its one training recipe), `protocol` (ISBI 2015 figures and
the statistics over seeds), `conditions` (the labelled data and the cached translations), `table` (the results
table and report) and `run` (`BenchmarkConfig`, `run_benchmark` and the command).
"""

from medshift.benchmark.run import BenchmarkConfig, run_benchmark

__all__ = ["BenchmarkConfig", "run_benchmark"]
