"""The engine benchmark script runs end to end (tiny sizes) and writes the figures the README quotes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HEADLINE_KEYS = ("generate_tokens_per_s", "eglr_l0_tokens_per_s", "l0_time_ratio_vs_generate", "gated_fraction",
                 "overhead_measured", "overhead_flops", "measured_over_flops")


def test_bench_engine_smoke(tmp_path):
    out = tmp_path / "engine.json"
    subprocess.run(
        [sys.executable, "scripts/bench_engine.py", "--batch-sizes", "2", "--new-tokens", "6", "--prompt-length", "8",
         "--repeats", "1", "--long-prompt-length", "12", "--long-batch-size", "2", "--out", str(out)],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=300,
    )
    result = json.loads(out.read_text())
    assert all(result[key] > 0 for key in HEADLINE_KEYS)
    run, long_context = result["runs"][0], result["long_context"]
    assert run["batch_size"] == 2 and run["new_tokens"] == 6 and run["tokens_equal_hf"]
    assert long_context["prompt_length"] == 12 and long_context["tokens_equal_hf"]
    assert 0 < run["gated_fraction"] <= 1 and run["reapplication_passes"] >= 1
    assert result["environment"]["device"] == "cpu" and result["environment"]["dtype"] == "float32"
