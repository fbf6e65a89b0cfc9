"""Issue 20: each family's own options (configs, layouts, call arguments) refused before its towers run,
hand-built prompts whose placeholders do not match the items refused with the counts, and Qwen2-VL /
Qwen2.5-VL video-only prompts pruned. Shared models and checks: bad_inputs.py."""

from __future__ import annotations

import re

import pytest
import torch

import llava
from bad_inputs import (
    EARLIER,
    FAMILIES,
    PROMPT_EDITS,
    PRUNINGS,
    apply,
    assert_video_only_prompt_is_pruned,
    earlier_state,
    family,
    inputs_of,
    model_of,
    nothing_runs,
    placeholder_of,
    pruned_with,
)
from llava.pruning import create_pruner

# ======================================================================================================
# each family's own options, and its prompts under pruning
# ======================================================================================================


def with_config(name, value, call):
    """`call` with model.config.<name> set to `value` for its duration."""

    def run(model):
        saved = getattr(model.config, name)
        setattr(model.config, name, value)
        try:
            call(model)
        finally:
            setattr(model.config, name, saved)

    return run


def host_case(family_name, case, call, fragment, error=ValueError):
    return (family_name, f"{family_name}: {case}", call, error, fragment)


ASPECT = "config.vision_aspect_ratio must be 'anyres_max_N' with N a positive integer (e.g. 'anyres_max_9'), got "
HOST_CASES = [
    host_case(
        "llava_next",
        "layout misspelt",
        apply("vispruner", 8, layout="Paper"),
        "layout must be one of 'native', 'paper' for LLaVA-NeXT, got 'Paper'",
    ),
    host_case(
        "llava_next",
        "layout None",
        apply("vispruner", 8, layout=None),
        "layout must be one of 'native', 'paper' for LLaVA-NeXT, got None",
    ),
    host_case(
        "llava_next",
        "layout a list",
        apply("vispruner", 8, layout=["paper"]),
        "layout must be one of 'native', 'paper' for LLaVA-NeXT, got ['paper']",
    ),
    host_case(
        "llava_next",
        "a merging method in the native layout",
        apply("pool", 8),
        "method 'pool' merges tokens, but layout='native' places newline tokens",
    ),
    host_case(
        "llava_next",
        "a video option",
        apply("vispruner", 8, video_token_num=4),
        "unknown option(s) video_token_num for method 'vispruner'; allowed: important_ratio",
    ),
    host_case(
        "llava_next_video",
        "layout misspelt",
        apply("vispruner", 8, layout="wide"),
        "layout must be one of 'native', 'paper' for LLaVA-NeXT-Video, got 'wide'",
    ),
    host_case(
        "llava_next_video",
        "video_token_num 0",
        apply("vispruner", 8, video_token_num=0),
        "video_token_num must be a positive integer (>= 1), got 0",
    ),
    host_case(
        "llava_next_video",
        "video_token_num a bool",
        apply("vispruner", 8, video_token_num=True),
        "video_token_num must be a positive integer (>= 1), got True",
    ),
    host_case(
        "llava_next_video",
        "video_token_num a float",
        apply("vispruner", 8, video_token_num=2.5),
        "video_token_num must be a positive integer (>= 1), got 2.5",
    ),
    host_case(
        "llava_next_video",
        "video_token_num a string",
        apply("vispruner", 8, video_token_num="8"),
        "video_token_num must be a positive integer (>= 1), got '8'",
    ),
    host_case(
        "llava_next_video",
        "video_split misspelt",
        apply("vispruner", 8, video_split="uneven"),
        "video_split must be one of 'joint', 'even' for LLaVA-NeXT-Video, got 'uneven'",
    ),
    host_case(
        "llava_next_video",
        "video_token_num for an in-LLM method",
        apply("fastv", 8, layer=1, video_token_num=8),
        "video_token_num is for methods pruning before the language model; fastv keeps",
    ),
    host_case(
        "llava_next_video",
        "a signal the pooled frames lack",
        apply("visionzip", 8),
        "method 'visionzip' needs cls_token, projections, which LLaVA-NeXT-Video",
    ),
    host_case(
        "video_llava",
        "frame_cls a string",
        apply("vispruner", 8, frame_cls="no"),
        "frame_cls must be True or False, got 'no'",
    ),
    host_case(
        "video_llava", "frame_cls 0", apply("vispruner", 8, frame_cls=0), "frame_cls must be True or False, got 0"
    ),
    host_case(
        "video_llava",
        "video_split None",
        apply("vispruner", 8, video_split=None),
        "video_split must be one of 'joint', 'even' for Video-LLaVA, got None",
    ),
    host_case(
        "video_llava",
        "video_token_num negative",
        apply("vispruner", 8, video_token_num=-3),
        "video_token_num must be a positive integer (>= 1), got -3",
    ),
    host_case(
        "video_llava",
        "video_token_num with tome",
        apply("tome", 8, video_token_num=8),
        "'tome' merges inside the encoder down to visual_token_num per frame",
    ),
    host_case(
        "video_llava",
        "a joint total with a merging method",
        apply("pool", 8, video_token_num=8),
        "needs a method that selects tokens; 'pool' merges them",
    ),
    host_case(
        "video_llava",
        "a sparsevlm schedule that cannot prune",
        apply("sparsevlm", 8, layers=(0,), schedule=(15,)),
        "sparsevlm's schedule (15,) cannot prune the 16-token images of Video-LLaVA",
    ),
    host_case(
        "video_llava",
        "another family's option",
        apply("vispruner", 8, layout="paper"),
        "VideoLlavaForConditionalGeneration accepts video_token_num, video_split, frame_cls",
    ),
    host_case(
        "llava_onevision",
        "config aspect ratio without N",
        with_config("vision_aspect_ratio", "anyres", apply("vispruner", 8)),
        ASPECT + "'anyres'",
    ),
    host_case(
        "llava_onevision",
        "config aspect ratio with an empty N",
        with_config("vision_aspect_ratio", "anyres_max_", apply("vispruner", 8)),
        ASPECT + "'anyres_max_'",
    ),
    host_case(
        "llava_onevision",
        "config aspect ratio N = 0",
        with_config("vision_aspect_ratio", "anyres_max_0", apply("vispruner", 8)),
        ASPECT + "'anyres_max_0'",
    ),
    host_case(
        "llava_onevision",
        "config aspect ratio N not a number",
        with_config("vision_aspect_ratio", "anyres_max_9x", apply("vispruner", 8)),
        ASPECT + "'anyres_max_9x'",
    ),
    host_case(
        "llava_onevision",
        "config aspect ratio N negative, an in-LLM method",
        with_config("vision_aspect_ratio", "anyres_max_-1", apply("fastv", 8, layer=1)),
        ASPECT + "'anyres_max_-1'",
    ),
    host_case(
        "llava_onevision",
        "a merging method",
        apply("tome", 8),
        "method 'tome' merges tokens; LLaVA-OneVision images place newline tokens by kept positions",
    ),
    host_case(
        "llava_onevision",
        "video_split misspelt",
        apply("vispruner", 8, video_split="frames"),
        "video_split must be one of 'joint', 'even' for LLaVA-OneVision, got 'frames'",
    ),
    host_case(
        "llava_onevision",
        "another family's option",
        apply("vispruner", 8, layout="paper"),
        "LlavaOnevisionForConditionalGeneration accepts video_token_num, video_split",
    ),
    host_case(
        "qwen2_vl",
        "a merging method",
        apply("pool", 8),
        "method 'pool' merges tokens; Qwen2-VL / Qwen2.5-VL needs kept positions for M-RoPE",
    ),
    host_case(
        "qwen2_vl",
        "a video option",
        apply("vispruner", 8, video_token_num=4),
        "Qwen2VLForConditionalGeneration accepts no model options",
    ),
    host_case(
        "qwen2_5_vl",
        "a merging method",
        apply("visionzip", 8),
        "method 'visionzip' merges tokens; Qwen2-VL / Qwen2.5-VL needs kept positions",
    ),
    host_case(
        "qwen2_5_vl",
        "attach_pruner with another family's option",
        lambda m: llava.attach_pruner(m, create_pruner("vispruner", 8), layout="paper"),
        "unknown model option(s) layout for Qwen2_5_VLForConditionalGeneration; allowed: none",
    ),
]


@pytest.mark.parametrize("name, case, call, error, fragment", HOST_CASES, ids=[c[1] for c in HOST_CASES])
def test_family_options_are_refused(name, case, call, error, fragment):
    model = model_of(name)
    with earlier_state(model, "pruned", inputs_of(name)):
        with nothing_runs(model), pytest.raises(error, match=re.escape(fragment)):
            call(model)


def expected_prompt_error(name, edit):
    """What the count or run check says: it is about pruning, and gives the items' counts."""
    if name.startswith("qwen"):
        return "pruning Qwen2-VL / Qwen2.5-VL: the prompt" + (" holds" if edit != "runs of" else "'s runs of image")
    return "pruning: the prompt" + (" holds" if edit != "runs of" else "'s runs of placeholder token")


PROMPT_CASES = [(name, method, edit) for name in FAMILIES for method in PRUNINGS for edit in PROMPT_EDITS]


@pytest.mark.parametrize("name, method, edit", PROMPT_CASES, ids=[f"{n}-{m}-{e}" for n, m, e in PROMPT_CASES])
def test_a_hand_built_prompt_with_wrong_placeholders_is_refused_before_the_towers_run(name, method, edit):
    model = model_of(name)
    change, kind = PROMPT_EDITS[edit]
    inputs = change(inputs_of(name), placeholder_of(name))
    with pruned_with(model, method=method, trace=True, **PRUNINGS[method]):
        with nothing_runs(model), pytest.raises(ValueError) as error:
            model(**inputs)
        assert not model.pruning_trace
    message = str(error.value)
    assert expected_prompt_error(name, kind) in message, message
    if kind == "placeholders":
        found = int((inputs["input_ids"] == placeholder_of(name)).sum())
        need = found + (5 if "fewer" in edit else -1)
        assert f"holds {found} " in message and f"need {need} (" in message, message


def test_onevision_refuses_a_malformed_aspect_ratio_passed_to_the_call():
    model, inputs = model_of("llava_onevision"), inputs_of("llava_onevision")
    with pruned_with(model, **EARLIER):
        with (
            nothing_runs(model),
            pytest.raises(ValueError, match=re.escape("vision_aspect_ratio must be 'anyres_max_N'")),
        ):
            model(**inputs, vision_aspect_ratio="anyres_max_nine")


def qwen_video_prompt(name):
    model, _, tokenizer = family(name)
    grid = torch.tensor([[2, 4, 6]])  # 2 x 2 x 3 merged tokens
    count = int(grid.prod() // 4)
    text = f"USER: <|vision_start|>{'<|video_pad|>' * count}<|vision_end|>What happens? ASSISTANT:"
    inputs = dict(tokenizer([text], return_tensors="pt"))
    inputs["mm_token_type_ids"] = 2 * (inputs["input_ids"] == model.config.video_token_id).int()
    inputs["pixel_values_videos"] = torch.randn(
        int(grid.prod()), 3 * 2 * 14 * 14, generator=torch.Generator().manual_seed(0)
    )
    inputs["video_grid_thw"] = grid
    if name == "qwen2_5_vl":
        inputs["second_per_grid_ts"] = torch.tensor([0.5])
    return inputs, count


@pytest.mark.parametrize("method", ["vispruner", "fastv"])
@pytest.mark.parametrize("name", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_video_only_prompts_are_pruned(name, method):
    model = model_of(name)
    assert_video_only_prompt_is_pruned(model, *qwen_video_prompt(name), method)
