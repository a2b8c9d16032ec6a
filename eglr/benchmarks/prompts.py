"""Turn a benchmark problem into chat messages for an instruction-tuned model.

The prompt text is part of the experiment: its version is recorded in every
rollout record and enters the settings hash, so changing the wording without
bumping ``version`` is caught by the runner's resume check.
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class PromptConfig:
    """How a problem becomes a chat conversation.

    ``template`` is a ``str.format`` pattern with the fields ``problem`` and
    ``instruction``; ``system`` is an optional system message.
    """

    instruction: str = DEFAULT_INSTRUCTION
    template: str = "{problem}\n{instruction}"
    system: str | None = None
    version: str = "v1"


def build_messages(problem: str, prompt: PromptConfig = PromptConfig()) -> list[dict[str, str]]:
    """Chat messages (``[{"role": ..., "content": ...}]``) for one problem."""
    content = prompt.template.format(problem=problem, instruction=prompt.instruction)
    messages: list[dict[str, str]] = []
    if prompt.system:
        messages.append({"role": "system", "content": prompt.system})
    messages.append({"role": "user", "content": content})
    return messages


def render_prompt(tokenizer, problem: str, prompt: PromptConfig = PromptConfig()) -> str:
    """The model's input text: the chat template applied, ready for the assistant's turn."""
    return tokenizer.apply_chat_template(
        build_messages(problem, prompt), tokenize=False, add_generation_prompt=True
    )
