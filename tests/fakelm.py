"""A deterministic test model, served through litellm's custom-provider mechanism (the same path
as the embedded model): it answers a `fields`-format prompt correctly only when it was shown
enough demos, so optimizers have a real signal, instantly and without any weights.

Question i needs (md5(i) % 4) demos: zero-shot gets about a quarter right, 3+ demos all.

`fakelm/instruction-hungry` (for the reflective optimizer) ignores demos and counts each "!" in
the prompt's instruction instead: question i needs (md5(i) % 4) of them. It answers a reflection
prompt (one that ends in "New instruction:") with the current instruction plus one "!": every
reflection makes the program better.
"""

import hashlib

ANSWERS: dict[str, str] = {}
CALLS = {"count": 0}


def needed_demos(question: str) -> int:
    return int(hashlib.md5(question.encode()).hexdigest(), 16) % 4


def reply(prompt: str) -> str:
    blocks = prompt.split("\n\n")
    demos = [b for b in blocks[:-1] if "\nanswer: " in b]
    question = blocks[-1].split("\n")[0].split(": ", 1)[1]
    return " " + (ANSWERS.get(question, "?") if len(demos) >= needed_demos(question) else "unknown")


def instruction_bonus(prompt: str) -> int:
    """The "!"s in the instruction: the first block, when it is neither a demo nor the query."""
    blocks = prompt.split("\n\n")
    first = blocks[0]
    if len(blocks) < 2 or "\nanswer: " in first or first.startswith("q: "):
        return 0
    return first.count("!")


def instruction_reply(prompt: str) -> str:
    if prompt.rstrip().endswith("New instruction:"):
        current = [line.split(": ", 1)[1] for line in prompt.split("\n")
                   if line.startswith("Current instruction: ")][-1]  # the last: the prompt's demo is first
        return " " + current + "!"
    question = prompt.split("\n\n")[-1].split("\n")[0].split(": ", 1)[1]
    known = instruction_bonus(prompt) >= needed_demos(question)
    return " " + (ANSWERS.get(question, "?") if known else "unknown")


def register() -> None:
    from rewardctl.lm.litellm_setup import get_litellm

    litellm = get_litellm()  # first: it sets up litellm offline before anything imports it
    from litellm import CustomLLM

    class DemoHungry(CustomLLM):
        async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                              encoding, api_key, logging_obj, optional_params, acompletion=None,
                              litellm_params=None, logger_fn=None, headers=None, timeout=None, client=None):
            CALLS["count"] += 1
            prompt = messages[-1]["content"]
            text = instruction_reply(prompt) if model.endswith("instruction-hungry") else reply(prompt)
            model_response.choices[0].message.content = text
            model_response.usage = litellm.Usage(prompt_tokens=10, completion_tokens=2, total_tokens=12)
            return model_response

    if not any(p.get("provider") == "fakelm" for p in litellm.custom_provider_map):
        litellm.custom_provider_map = [*litellm.custom_provider_map, {"provider": "fakelm", "custom_handler": DemoHungry()}]
