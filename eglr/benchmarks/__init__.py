"""The study's math benchmarks as lists of ``Problem`` (id, problem, gold answer).

``load_benchmark(name)`` reads the local copy when present and the Hugging Face
hub otherwise (see ``eglr.benchmarks.loading``); ``get_benchmark(name)`` gives
the registry entry (hub id, split) and ``list_benchmarks()`` the known names.
"""
from eglr.benchmarks.loading import data_dir, load_benchmark, local_path
from eglr.benchmarks.records import Problem
from eglr.benchmarks.registry import BenchmarkSpec, get_benchmark, list_benchmarks

__all__ = [
    "BenchmarkSpec",
    "Problem",
    "data_dir",
    "get_benchmark",
    "list_benchmarks",
    "load_benchmark",
    "local_path",
]
