"""The fast path: rules, structures and float probes that decide most comparisons in microseconds."""
from eglr.grading.fast.rules import fast_verdict

__all__ = ["fast_verdict"]
