"""The version string recorded in every rollout: package version plus the git commit of the code."""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from eglr import __version__


@functools.lru_cache(maxsize=1)
def eglr_version() -> str:
    """``<version>+g<commit>`` (``.dirty`` when the work tree has uncommitted changes), or the bare version."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"
