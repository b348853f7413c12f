"""A deterministic test model, served through litellm's custom-provider mechanism (the same path
as the embedded model): it answers a `fields`-format prompt correctly only when it was shown
enough demos, so optimizers have a real signal, instantly and without any weights.

Question i needs (md5(i) % 4) demos: zero-shot gets about a quarter right, 3+ demos all.
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


def register() -> None:
    from rewardctl.lm.litellm_setup import get_litellm

    litellm = get_litellm()  # first: it sets up litellm offline before anything imports it
    from litellm import CustomLLM

    class DemoHungry(CustomLLM):
        async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                              encoding, api_key, logging_obj, optional_params, acompletion=None,
                              litellm_params=None, logger_fn=None, headers=None, timeout=None, client=None):
            CALLS["count"] += 1
            model_response.choices[0].message.content = reply(messages[-1]["content"])
            model_response.usage = litellm.Usage(prompt_tokens=10, completion_tokens=2, total_tokens=12)
            return model_response

    if not any(p.get("provider") == "fakelm" for p in litellm.custom_provider_map):
        litellm.custom_provider_map = [*litellm.custom_provider_map, {"provider": "fakelm", "custom_handler": DemoHungry()}]
