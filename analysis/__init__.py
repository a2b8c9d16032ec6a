"""Scripts that turn rollout JSONL into the paper's tables, figures and report.

Each module has ``main(argv=None)``; ``python -m analysis.report --rollouts DIR --out DIR``
regenerates everything.
"""
