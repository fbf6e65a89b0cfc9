"""The pruning settings a served model runs with: read from its config, where `hf_overrides` puts them.

    vllm serve llava-hf/llava-1.5-7b-hf --hf-overrides '{"architectures": ["VisPrunerLlavaForConditionalGeneration"],
        "vispruner": {"visual_token_num": 64, "important_ratio": 0.5}}'

`vispruner` holds the budget (`visual_token_num`, tokens per image; per crop for LLaVA-NeXT's paper
layout), optionally `method` (any method of `llava.pruning` that reduces tokens before the language
model; "vispruner" by default) and that method's own options. Bad settings raise ValueError naming
them, from the processor (in the process that starts the engine) and from the model's constructor.
"""

from __future__ import annotations

from collections.abc import Mapping

from llava.pruning import VisionTokenPruner, create_pruner, list_methods
from llava.pruning.base import check_signals

CONFIG_KEY = "vispruner"  # the hf_overrides entry
METHOD_KEY = "method"
BUDGET_KEY = "visual_token_num"
DEFAULT_METHOD = "vispruner"
PROJECTED = "projected"  # the signal name for the projector's output (llava.pruning.divprune asks for it)


def pruner_from_config(hf_config, architecture: str, provided: frozenset[str]) -> VisionTokenPruner:
    """The method `hf_config.vispruner` names, built and checked against the signals (`provided`) that
    `architecture` can compute; ValueError naming the setting otherwise."""
    settings = getattr(hf_config, CONFIG_KEY, None)
    example = f'{{"{CONFIG_KEY}": {{"{BUDGET_KEY}": 64, "important_ratio": 0.5}}}}'
    if settings is None:
        raise ValueError(f"{architecture} needs pruning settings: pass hf_overrides with {example}")
    if not isinstance(settings, Mapping):
        raise ValueError(f"hf_overrides[{CONFIG_KEY!r}] must be a mapping such as {example}, got {settings!r}")
    options = dict(settings)
    method = options.pop(METHOD_KEY, DEFAULT_METHOD)
    if BUDGET_KEY not in options:
        raise ValueError(f"hf_overrides[{CONFIG_KEY!r}] needs {BUDGET_KEY!r} (tokens kept per image), e.g. {example}")
    budget = options.pop(BUDGET_KEY)
    if method not in list_methods():
        raise ValueError(f"unknown pruning method {method!r}; available: {', '.join(list_methods())}")
    pruner = create_pruner(method, budget, **options)
    if not isinstance(pruner, VisionTokenPruner):
        raise ValueError(
            f"method {method!r} prunes inside the language model; {architecture} runs methods that reduce "
            "the visual tokens before it"
        )
    check_signals(pruner, provided | {PROJECTED}, architecture)
    return pruner
