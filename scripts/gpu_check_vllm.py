"""The vLLM + EGLR check for a GPU machine: fp32 parity, bf16 throughput -> results/bench/vllm_cuda.json.

Run it (``make gpu-check-vllm``) in an environment with vLLM for GPUs, eglr and eglr_vllm installed
(``pip install vllm==0.33.* && pip install -e . -e eglr_vllm``; vLLM pins its own torch and
transformers). It was written on a CPU-only machine and has never been run; read its first report
critically.

Models: the real Qwen2.5-Coder-0.5B-Instruct (the converted checkpoint in ``$EGLR_CACHE`` when
present, else ``Qwen/Qwen2.5-Coder-0.5B-Instruct`` from the hub) and one study model
(``--study-model``, default ``Qwen/Qwen2.5-1.5B-Instruct``). Prompts: the first GSM8K problems as
the runner renders them.

1. Parity, fp32, an fp32-capable attention backend (``--attention-backend``, default TRITON_ATTN)
   and ``VLLM_BATCH_INVARIANT=1``: plain vLLM against vLLM + EGLR with tau = +inf (the EGLR forward
   path, never gating: must give plain vLLM's tokens), and vLLM + EGLR (L = 4, a gating tau)
   against our engine (eglr.engine.generate on CUDA, fp32): tokens and per-row gated /
   re-application counts.
2. Throughput, bf16: plain vLLM, vLLM + EGLR and our engine at batch 16 and 64, wall time (every
   engine synchronises before returning), tau at the ``--gate-quantile`` quantile of our engine's
   L = 0 entropies (the gate fires on ~15% of steps).

Every engine runs in its own subprocess (GPU memory is not reliably freed in-process). Known GPU
risks this checks for (see eglr_vllm): the V1 model runner is forced (V2 pads requests and does not
expose the row -> request map), eager only (CUDA graphs cannot capture the early exit), a
preempted request raises (size max_num_seqs so it does not happen).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_MODEL = "qwen2.5-coder-0.5b-instruct"
REAL_HUB_ID = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
EGLR = {"layer_span": 4, "k_max": 4, "eps": 1e-3, "criterion": "kl", "kv_policy": "overwrite", "reinject": "raw"}


def real_model_location() -> str:
    from omegaconf import OmegaConf

    from eglr.weights import WeightsMissing, checkpoint_dir

    try:
        return str(checkpoint_dir(OmegaConf.load(REPO_ROOT / "configs" / "model" / f"{REAL_MODEL}.yaml")))
    except WeightsMissing:
        return REAL_HUB_ID


def prompts_for(location: str, count: int) -> tuple[list[list[int]], list[int]]:
    """GSM8K chat prompts as token ids, and the model's resolved stop tokens."""
    from types import SimpleNamespace

    from transformers import GenerationConfig

    from eglr.benchmarks import load_benchmark
    from eglr.benchmarks.prompts import PromptConfig, render_prompt
    from eglr.models import load_tokenizer, resolve_special_tokens

    tokenizer = load_tokenizer(location)
    holder = SimpleNamespace(generation_config=GenerationConfig.from_pretrained(location))
    resolve_special_tokens(holder, tokenizer)
    prompt = PromptConfig()
    ids = [tokenizer(render_prompt(tokenizer, p.problem, prompt), add_special_tokens=False)["input_ids"]
           for p in load_benchmark("gsm8k")[:count]]
    return ids, list(holder.generation_config.eos_token_id)


def worker(job: dict) -> dict:
    import torch

    from eglr.step import EGLRConfig

    eglr = EGLRConfig(**{**job["eglr"], "tau": float(job["eglr"]["tau"])}) if job["eglr"] else None
    prompts, new_tokens = job["prompts"], job["new_tokens"]
    if job["engine"] == "hf":
        from transformers import AutoModelForCausalLM

        from eglr.engine import generate
        from eglr.models import DTYPES
        from eglr.text import left_padded

        model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=DTYPES[job["dtype"]],
                                                     attn_implementation="sdpa").to("cuda").eval()
        model.generation_config.pad_token_id = job["pad_token_id"]
        input_ids, mask = left_padded(prompts, job["pad_token_id"])
        torch.cuda.synchronize()
        started = time.perf_counter()
        output = generate(model, input_ids.cuda(), mask.cuda(), eglr=eglr or EGLRConfig(), max_new_tokens=new_tokens,
                          eos_token_id=job["stop_token_ids"], pad_token_id=job["pad_token_id"],
                          return_entropies=job["entropies"])
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        tokens = [output.sequences[row, :n].tolist() for row, n in enumerate(output.num_tokens)]
        gated, reapplications = output.num_gated, output.num_reapplications
        entropies = [v for row in output.step_entropies for v in row] if output.step_entropies else None
        counts = None
    else:
        from eglr_vllm.engine import EGLREngine, Request

        os.environ["VLLM_BATCH_INVARIANT"] = "1" if job["dtype"] == "float32" else os.environ.get(
            "VLLM_BATCH_INVARIANT", "0")
        engine = EGLREngine(job["model"], eglr=eglr, stop_token_ids=job["stop_token_ids"], max_model_len=2048,
                            max_num_seqs=max(len(prompts), 2), dtype=job["dtype"], skip_tokenizer_init=True,
                            attention_backend=job["attention_backend"], gpu_memory_utilization=0.85)
        engine.generate([Request(prompts[0], 4), Request(prompts[1], 4)])
        started = time.perf_counter()
        completions = engine.generate([Request(ids, new_tokens) for ids in prompts])
        seconds = time.perf_counter() - started
        tokens = [c.token_ids for c in completions]
        gated = [c.statistics.gated for c in completions]
        reapplications = [c.statistics.reapplications for c in completions]
        entropies = None
        counts = engine.step_counts() if eglr is not None else None
    generated = sum(map(len, tokens))
    return {"tokens": tokens, "gated": gated, "reapplications": reapplications, "seconds": round(seconds, 3),
            "tokens_per_s": round(generated / seconds, 2), "entropies": entropies, "step_counts": counts}


def run_job(**job) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        job_path, result_path = Path(directory) / "job.json", Path(directory) / "result.json"
        job_path.write_text(json.dumps(job))
        subprocess.run([sys.executable, __file__, "--worker", str(job_path), str(result_path)], check=True)
        return json.loads(result_path.read_text())


def check_model(location: str, args: argparse.Namespace) -> dict:
    import torch

    prompts, stop_token_ids = prompts_for(location, max(args.batches))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    common = dict(model=location, new_tokens=args.new_tokens, attention_backend=args.attention_backend,
                  pad_token_id=pad, stop_token_ids=[])
    parity_prompts = prompts[:args.parity_batch]
    plain_hf = run_job(engine="hf", prompts=parity_prompts, eglr=None, dtype="float32", entropies=True, **common)
    tau = float(torch.tensor(plain_hf["entropies"]).quantile(args.gate_quantile))
    eglr = {**EGLR, "tau": tau}
    never = {**EGLR, "tau": "inf"}
    plain = run_job(engine="vllm", prompts=parity_prompts, eglr=None, dtype="float32", entropies=False, **common)
    inert = run_job(engine="vllm", prompts=parity_prompts, eglr=never, dtype="float32", entropies=False, **common)
    gated_vllm = run_job(engine="vllm", prompts=parity_prompts, eglr=eglr, dtype="float32", entropies=False, **common)
    gated_hf = run_job(engine="hf", prompts=parity_prompts, eglr=eglr, dtype="float32", entropies=False, **common)
    # with the model's stop tokens, as the study runs: requests end at different steps
    stopping = {**common, "stop_token_ids": stop_token_ids}
    stopped_vllm = run_job(engine="vllm", prompts=parity_prompts, eglr=eglr, dtype="float32", entropies=False,
                           **stopping)
    stopped_hf = run_job(engine="hf", prompts=parity_prompts, eglr=eglr, dtype="float32", entropies=False, **stopping)
    parity = {
        "rows": len(parity_prompts),
        "plain_vllm_vs_eglr_never_gating": sum(a == b for a, b in zip(plain["tokens"], inert["tokens"])),
        "plain_vllm_vs_our_l0": sum(a == b for a, b in zip(plain["tokens"], plain_hf["tokens"])),
        "eglr_vllm_vs_ours_tokens": sum(a == b for a, b in zip(gated_vllm["tokens"], gated_hf["tokens"])),
        "eglr_vllm_vs_ours_counts": sum((a, b) == (c, d) for a, b, c, d in zip(
            gated_vllm["gated"], gated_vllm["reapplications"], gated_hf["gated"], gated_hf["reapplications"])),
        "eglr_vllm_vs_ours_tokens_with_stop_tokens": sum(a == b for a, b in zip(stopped_vllm["tokens"],
                                                                                stopped_hf["tokens"])),
        "gated_fraction": sum(gated_vllm["gated"]) / (len(parity_prompts) * args.new_tokens),
        "step_counts": gated_vllm["step_counts"],  # sub_batch_passes vs full_batch_passes: which path ran
    }
    throughput = {}
    for batch in args.batches:
        rows = prompts[:batch]
        results = {name: run_job(engine=engine, prompts=rows, eglr=settings, dtype="bfloat16", entropies=False, **common)
                   for name, engine, settings in (("vllm_plain", "vllm", None), ("vllm_eglr", "vllm", eglr),
                                                  ("hf_eglr", "hf", eglr))}
        throughput[str(batch)] = {
            "tokens_per_s": {name: result["tokens_per_s"] for name, result in results.items()},
            "vllm_eglr_over_hf_eglr": round(results["vllm_eglr"]["tokens_per_s"] / results["hf_eglr"]["tokens_per_s"], 3),
            "eglr_cost_vllm": round(results["vllm_plain"]["tokens_per_s"] / results["vllm_eglr"]["tokens_per_s"], 3),
            "gated_fraction": round(sum(results["vllm_eglr"]["gated"]) / (batch * args.new_tokens), 4),
        }
    return {"tau": tau, "parity_fp32": parity, "throughput_bf16": throughput,
            "parity_ok": all(parity[k] == parity["rows"] for k in parity
                             if k not in ("rows", "gated_fraction", "step_counts"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--study-model", default="Qwen/Qwen2.5-1.5B-Instruct")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--parity-batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--gate-quantile", type=float, default=0.85)
    parser.add_argument("--attention-backend", default="TRITON_ATTN")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "bench" / "vllm_cuda.json")
    args = parser.parse_args(argv)
    if args.worker:
        Path(args.worker[1]).write_text(json.dumps(worker(json.loads(Path(args.worker[0]).read_text()))))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu-check-vllm needs a CUDA device; none is visible", file=sys.stderr)
        return 2
    import vllm

    report = {"device": torch.cuda.get_device_name(0), "vllm": vllm.__version__, "torch": torch.__version__,
              "new_tokens": args.new_tokens, "eglr": EGLR, "models": {}}
    for location in (real_model_location(), args.study_model):
        started = time.perf_counter()
        report["models"][location] = {**check_model(location, args), "seconds": round(time.perf_counter() - started)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=lambda v: None if isinstance(v, float)
                                       and math.isnan(v) else v) + "\n")
    print(json.dumps({name: {"parity_ok": entry["parity_ok"], "throughput": entry["throughput_bf16"]}
                      for name, entry in report["models"].items()}, indent=2))
    return 0 if all(entry["parity_ok"] for entry in report["models"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
