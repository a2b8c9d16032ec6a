"""The slow path: math-verify/sympy in a worker process that a deadline bounds.

``guard`` refuses, before any work, answers that would explode sympy;
``worker`` runs the comparisons of ``symbolic`` in a child process and kills
it when one misses its deadline.
"""
