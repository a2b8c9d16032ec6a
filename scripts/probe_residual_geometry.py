"""Where a re-application's input sits relative to what the re-applied layers normally see.

EGLR re-applies the top L decoder layers to the last layer's output ``h`` (pre-norm). Those layers
were trained on the residual stream at depth N - L, ``a``. This probe runs the model once over
real chat prompts followed by the model's own recorded responses (teacher forcing, no EGLR) and
reports, per layer span, the norms of ``a`` and ``h``, their cosine, and the share of the norm in
the largest ("massive") hidden dimension: the geometry that ``eglr.reinject=raw`` (feed ``h``) and
``norm_matched`` (feed ``h`` rescaled to ``|a|``) act on. Writes a small JSON file.

    python scripts/probe_residual_geometry.py --rollouts results/real-cpu/rollouts \\
        --out results/real-cpu/residual_geometry.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def response_prompts(rollouts: Path, model_name: str, count: int) -> list[tuple[str, str, object]]:
    """(problem, greedy L = 0 response, prompt settings) of the first ``count`` problems in the study's records."""
    from eglr.benchmarks import load_benchmark
    from eglr.benchmarks.prompts import PromptConfig
    from eglr.metrics import load_rollouts

    frame = load_rollouts(rollouts)
    greedy = frame[(frame.model == model_name) & (frame.layer_span == 0) & (frame.temperature == 0)]
    problems = {problem.id: problem for problem in load_benchmark("gsm8k")}
    rows = greedy.sort_values("problem_id", key=lambda ids: ids.astype(int)).head(count)
    return [(problems[row.problem_id].problem, row.response, PromptConfig()) for row in rows.itertuples()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--rollouts", type=Path, default=REPO_ROOT / "results" / "real-cpu" / "rollouts")
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--layer-spans", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "real-cpu" / "residual_geometry.json")
    args = parser.parse_args()

    from omegaconf import OmegaConf

    from eglr.benchmarks.prompts import render_prompt
    from eglr.models import load_model

    torch.set_num_threads(1)
    model, tokenizer = load_model(OmegaConf.load(REPO_ROOT / "configs" / "model" / f"{args.model}.yaml"), device="cpu")
    layers = model.model.layers
    depth = len(layers)
    captured: dict[str, torch.Tensor] = {}

    def keep_input(index: int):
        def hook(module, positional, keywords):
            captured[f"in{index}"] = (positional[0] if positional else keywords["hidden_states"]).detach()
        return hook

    def keep_output(module, positional, keywords, output):
        captured["out"] = (output[0] if isinstance(output, tuple) else output).detach()

    for span in args.layer_spans:
        layers[depth - span].register_forward_pre_hook(keep_input(depth - span), with_kwargs=True)
    layers[-1].register_forward_hook(keep_output, with_kwargs=True)

    per_span: dict[int, dict[str, list[torch.Tensor]]] = {span: {"a": [], "h": []} for span in args.layer_spans}
    for problem, response, prompt in response_prompts(args.rollouts, args.model, args.problems):
        prompt_ids = tokenizer(render_prompt(tokenizer, problem, prompt), add_special_tokens=False)["input_ids"]
        ids = tokenizer(render_prompt(tokenizer, problem, prompt) + response, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            model(torch.tensor([ids]))
        start = len(prompt_ids)  # the response's positions: where decoding steps (and gates) happen
        for span in args.layer_spans:
            per_span[span]["a"].append(captured[f"in{depth - span}"][0, start:].float())
            per_span[span]["h"].append(captured["out"][0, start:].float())

    results = {}
    for span, tensors in per_span.items():
        a, h = torch.cat(tensors["a"]), torch.cat(tensors["h"])
        massive = int(h.abs().mean(0).argmax())
        cosine = torch.nn.functional.cosine_similarity(a, h, dim=-1)
        results[str(span)] = {
            "block_input_norm_median": round(float(a.norm(dim=-1).median()), 2),
            "last_output_norm_median": round(float(h.norm(dim=-1).median()), 2),
            "cosine_median": round(float(cosine.median()), 3),
            "cosine_min": round(float(cosine.min()), 3),
            "massive_dimension": massive,
            "massive_share_of_squared_norm": {
                "block_input": round(float((a[:, massive] ** 2 / (a ** 2).sum(-1)).median()), 3),
                "last_output": round(float((h[:, massive] ** 2 / (h ** 2).sum(-1)).median()), 3)},
        }
    report = {"model": args.model, "positions": int(sum(t.shape[0] for t in per_span[args.layer_spans[0]]["a"])),
              "problems": args.problems, "source": "greedy L = 0 responses of the real-model study, teacher-forced",
              "num_layers": depth, "layer_spans": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
