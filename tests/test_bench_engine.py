"""The engine benchmark script runs end to end (tiny sizes) and writes the figures the README quotes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_bench_engine_smoke(tmp_path):
    out = tmp_path / "engine.json"
    subprocess.run(
        [sys.executable, "scripts/bench_engine.py", "--models", "random-67m", "--batch-sizes", "1", "2",
         "--eglr-batch-sizes", "4", "--layer-spans", "2", "--new-tokens", "6", "--repeats", "1",
         "--long-prompt-length", "12", "--long-batch-size", "2", "--out", str(out)],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=600,
    )
    result = json.loads(out.read_text())
    model = result["models"]["random-67m"]
    assert result["tokens_equal_hf"] and all(run["tokens_equal_hf"] for run in model["l0_vs_generate"])
    assert [run["batch_size"] for run in model["l0_vs_generate"]] == [1, 2]
    assert model["long_context"]["prompt_length"] == 12 and model["long_context"]["tokens_equal_hf"]
    assert 0 < result["l0_roofline_fraction"] == model["l0_roofline_fraction"]
    assert model["bandwidth"]["copy_bytes_per_s"] > 1e8 and model["weight_bytes_per_token"] > 1e8
    (run,) = model["eglr"]
    assert run["batch_size"] == 4 and run["layer_span"] == 2 and 0 < run["gated_fraction"] <= 1
    assert run["reapplication_passes"] == sum(run["pass_rows_histogram"].values()) >= 1
    assert run["predicted_per_row"] > 1 and run["predicted_from_passes"] >= run["predicted_per_row"]
    assert result["measured_over_per_row_prediction"] == run["measured_over_per_row_prediction"] > 0
    breakdown = model["iteration"][0]["one_row"]
    assert breakdown["layers_s"] > 0 and breakdown["head_s"] > 0 and 0 <= breakdown["head_share"] < 1
    assert set(model["gemm_seconds_by_rows"]) == {"head", "mlp_up"}
    assert result["environment"]["device"] == "cpu" and result["environment"]["dtype"] == "float32"
