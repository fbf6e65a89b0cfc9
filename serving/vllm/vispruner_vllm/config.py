"""The pruning settings a served model runs with: read from its config, where `hf_overrides` puts them.

    vllm serve llava-hf/llava-1.5-7b-hf --hf-overrides '{"architectures": ["VisPrunerLlavaForConditionalGeneration"],
        "vispruner": {"visual_token_num": 64, "important_ratio": 0.5}}'

`vispruner` holds the budget (`visual_token_num`, tokens per image; per crop for LLaVA-NeXT's paper
layout), optionally `method` (any method of `llava.pruning` that reduces tokens before the language
model; "vispruner" by default), that method's own options, and a family's own settings (LLaVA-NeXT's
`layout`). Bad settings raise ValueError naming them, from the processor (in the process that starts
the engine) and from the model's constructor.
"""

from __future__ import annotations

from collections.abc import Mapping

from llava.pruning import VisionTokenPruner, create_pruner, list_methods
from llava.pruning.base import check_signals

CONFIG_KEY = "vispruner"  # the hf_overrides entry
METHOD_KEY = "method"
BUDGET_KEY = "visual_token_num"
DEFAULT_METHOD = "vispruner"
EXAMPLE = f'{{"{CONFIG_KEY}": {{"{BUDGET_KEY}": 64, "important_ratio": 0.5}}}}'
PROJECTED = "projected"  # the signal name for the projector's output (llava.pruning.divprune asks for it)


def pruner_from_config(
    hf_config, architecture: str, provided: frozenset[str], family_keys: frozenset[str] = frozenset()
) -> VisionTokenPruner:
    """The method `hf_config.vispruner` names, built and checked against the signals (`provided`) that
    `architecture` can compute; ValueError naming the setting otherwise. `family_keys`: the family's own
    settings (read with `family_setting`), not passed to the method."""
    options = {key: value for key, value in settings_of(hf_config, architecture).items() if key not in family_keys}
    method = options.pop(METHOD_KEY, DEFAULT_METHOD)
    if BUDGET_KEY not in options:
        raise ValueError(f"hf_overrides[{CONFIG_KEY!r}] needs {BUDGET_KEY!r} (tokens kept per image), e.g. {EXAMPLE}")
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


def settings_of(hf_config, architecture: str) -> Mapping:
    """`hf_config.vispruner`, checked to be a mapping."""
    settings = getattr(hf_config, CONFIG_KEY, None)
    if settings is None:
        raise ValueError(f"{architecture} needs pruning settings: pass hf_overrides with {EXAMPLE}")
    if not isinstance(settings, Mapping):
        raise ValueError(f"hf_overrides[{CONFIG_KEY!r}] must be a mapping such as {EXAMPLE}, got {settings!r}")
    return settings


def family_setting(hf_config, architecture: str, key: str, choices: tuple[str, ...]) -> str:
    """A family's own setting `key` of `hf_config.vispruner`, one of `choices` (the first by default)."""
    value = settings_of(hf_config, architecture).get(key, choices[0])
    if value not in choices:
        raise ValueError(
            f"hf_overrides[{CONFIG_KEY!r}][{key!r}] must be one of {', '.join(map(repr, choices))} for "
            f"{architecture}, got {value!r}"
        )
    return value
