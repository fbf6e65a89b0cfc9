"""Issue 21 with issue 20's rules: the bad-input, copy, pickle and save guarantees of the other
`test_bad_inputs_*.py` files on the newer families (InternVL, Qwen3-VL, Qwen3-VL-MoE, Gemma 3, SmolVLM,
Idefics3), each with its own batch (`test_support_matrix.INPUTS`, the family's own tests' builders).

Bad arguments are refused before any work, naming the argument, its value and what is allowed, with
the model left exactly as it was (an earlier pruning, its config and its trace included); a deep copy
of a pruned model is an independent pruned model; pickle / `torch.save` store the stock model and
re-apply the pruning on load; `save_pretrained` saves the stock weights; a failed re-apply keeps the
earlier pruning working; a hand-built prompt with wrong placeholders is refused before the towers run.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import math
import pickle
import re
from contextlib import contextmanager

import pytest
import torch

import llava
from bad_inputs import (
    EARLIER,
    PROMPT_EDITS,
    PRUNINGS,
    SUPPORTED,
    apply,
    assert_same_state,
    assert_video_only_prompt_is_pruned,
    logits,
    nothing_runs,
    pruned_with,
    snapshot,
)
from llava.pruning import create_pruner
from llava.testing import (
    build_tiny_gemma3,
    build_tiny_idefics3,
    build_tiny_internvl,
    build_tiny_qwen3_vl,
    build_tiny_smolvlm,
)
from llava.testing.qwen3_vl import qwen3_vl_video_text
from test_support_matrix import INPUTS

BUILDERS = {
    "internvl": build_tiny_internvl,
    "qwen3_vl": build_tiny_qwen3_vl,
    "qwen3_vl_moe": functools.partial(build_tiny_qwen3_vl, moe=True),
    # 224-px images pooled to 16 tokens (not the checkpoints' 896 px and 256, which test_gemma3.py runs): the
    # same code path at a fraction of the time; the sliding window shrunk with them so prompts still cross it
    "gemma3": functools.partial(build_tiny_gemma3, image_size=224, tokens_per_image=16, sliding_window=32),
    "smolvlm": build_tiny_smolvlm,
    "idefics3": build_tiny_idefics3,
}
FAMILIES = sorted(BUILDERS)


@functools.cache
def family(name: str):
    return BUILDERS[name]()


def model_of(name: str):
    return family(name)[0]


@functools.cache
def _inputs(name: str) -> dict:
    built = family(name)
    return INPUTS[type(built[0]).__name__](built)


def inputs_of(name: str) -> dict:
    return {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in _inputs(name).items()}


def class_of(name: str) -> str:
    return type(model_of(name)).__name__


def depth_of(name: str) -> int:
    return model_of(name).config.get_text_config().num_hidden_layers


@functools.cache
def _earlier_record(name: str):
    """One real pruned call's trace record under EARLIER, made once per family."""
    model = model_of(name)
    with pruned_with(model, **EARLIER):
        logits(model, inputs_of(name))
        (record,) = model.pruning_trace
    return record


@contextmanager
def pruned_earlier(name: str):
    """The family's model pruned with EARLIER, its trace holding one pruned call; stock again afterwards.
    The record is one a real call made (cached: one forward per family, not one per case)."""
    model = model_of(name)
    record = _earlier_record(name)
    with pruned_with(model, **EARLIER):
        model.pruning_trace.append(record)
        yield model


# ======================================================================================================
# apply_pruning, attach_pruner, remove_pruning and copy.copy on every family
# ======================================================================================================

# (case, call of the model, error type, the message fragment for the family's name)
GENERIC_CASES = [
    (
        "model the class",
        lambda m: llava.apply_pruning(type(m)),
        TypeError,
        lambda n: f"apply_pruning takes a model ({SUPPORTED}), got type",
    ),
    (
        "model its language model",
        lambda m: llava.apply_pruning(m.get_decoder()),
        ValueError,
        lambda n: f"pruning does not support {type(model_of(n).get_decoder()).__name__}; supported model",
    ),
    ("method None", apply(None), ValueError, lambda n: "method must be the name of a pruning method (one of divprune"),
    ("method unknown", apply("VisPruner"), ValueError, lambda n: "unknown pruning method 'VisPruner'; available:"),
    (
        "budget 0",
        apply("vispruner", 0),
        ValueError,
        lambda n: "visual_token_num must be a positive integer (>= 1), got 0",
    ),
    ("budget a float", apply("vispruner", 16.0), ValueError, lambda n: "positive integer (>= 1), got 16.0"),
    ("budget a bool", apply("vispruner", True), ValueError, lambda n: "positive integer (>= 1), got True"),
    ("budget None", apply("vispruner", None), ValueError, lambda n: "positive integer (>= 1), got None"),
    (
        "trace a string",
        apply("vispruner", 8, trace="yes"),
        ValueError,
        lambda n: "trace must be True or False, got 'yes'",
    ),
    (
        "unknown option",
        apply("vispruner", 8, ratio=0.5),
        ValueError,
        lambda n: "unknown option(s) ratio for method 'vispruner'; allowed: important_ratio",
    ),
    (
        "another family's option",
        apply("vispruner", 8, layout="paper"),
        ValueError,
        lambda n: f"{class_of(n)} accepts no model options",
    ),
    (
        "a video option",
        apply("vispruner", 8, video_token_num=4),
        ValueError,
        lambda n: f"{class_of(n)} accepts no model options",
    ),
    (
        "attach_pruner: a method name, not a pruner",
        lambda m: llava.attach_pruner(m, "vispruner"),
        TypeError,
        lambda n: "pruner must be a llava.pruning.TokenPruner (e.g. llava.create_pruner(...)), got str",
    ),
    (
        "attach_pruner: unknown model option",
        lambda m: llava.attach_pruner(m, create_pruner("vispruner", 8), layout="paper"),
        ValueError,
        lambda n: f"unknown model option(s) layout for {class_of(n)}; allowed: none",
    ),
    (
        "host refuses: fastv layer past the depth",
        apply("fastv", 8, layer=100),
        ValueError,
        lambda n: f"fastv: pruning before layer 100 does not fit a language model of {depth_of(n)} layers",
    ),
    (
        "host refuses: pdrop layer past the depth",
        lambda m: llava.apply_pruning(m, "pdrop", 8, layers=(m.config.get_text_config().num_hidden_layers,)),
        ValueError,
        lambda n: f"pdrop: pruning before layer {depth_of(n)} does not fit a language model of {depth_of(n)} layers",
    ),
    (
        "host refuses: sparsevlm schedule that cannot prune",
        apply("sparsevlm", 16, layers=(0,), schedule=(100_000,)),
        ValueError,
        lambda n: f"sparsevlm's schedule (100000,) cannot prune the {SPARSEVLM_ITEMS[n]}: each pruning layer keeps",
    ),
    (
        "remove_pruning: its language model",
        lambda m: llava.remove_pruning(m.get_decoder()),
        ValueError,
        lambda n: "pruning does not support",
    ),
    (
        "copy.copy of a pruned model",
        lambda m: copy.copy(m),
        TypeError,
        lambda n: "copy.copy of a pruned model would share its pruned parts with the original; use copy.deepcopy",
    ),
]
# What each family prunes one by one (its encoded images or tiles): a SparseVLM schedule must prune them.
SPARSEVLM_ITEMS = {
    "internvl": "256-token tiles of InternVL",
    "gemma3": "16-token images of Gemma 3",
    "smolvlm": "81-token tiles of SmolVLM",
    "idefics3": "169-token tiles of Idefics3",
}
# Cases whose assumption does not hold for a family, and why.
NOT_APPLICABLE = {
    (qwen, "host refuses: sparsevlm schedule that cannot prune"): (
        "Qwen3-VL encodes each image at its own resolution, so no per-image token count exists when "
        "pruning is applied; a schedule above an image's count keeps all but one of its tokens"
    )
    for qwen in ("qwen3_vl", "qwen3_vl_moe")
}


def family_params(cases):
    """(family name, *case) for every family and case, the cases in NOT_APPLICABLE skipped with their reason."""
    return [
        pytest.param(
            name,
            *case,
            id=f"{name}-{case[0]}",
            marks=[pytest.mark.skip(reason=NOT_APPLICABLE[name, case[0]])] if (name, case[0]) in NOT_APPLICABLE else [],
        )
        for name in FAMILIES
        for case in cases
    ]


@pytest.mark.parametrize("name, case, call, error, fragment", family_params(GENERIC_CASES))
def test_bad_arguments_are_refused_and_leave_the_earlier_pruning(name, case, call, error, fragment):
    with pruned_earlier(name) as model:
        with nothing_runs(model), pytest.raises(error, match=re.escape(fragment(name))):
            call(model)


def family_case(name, case, call, fragment, error=ValueError):
    return pytest.param(name, call, error, fragment, id=f"{name}-{case}")


def signals(name, label, method, needs, provides):
    """The case of `method` refused on family `name` (`label` in messages) for the signals it `needs`."""
    return family_case(
        name,
        f"a method needing {needs}",
        apply(method, 8),
        f"method '{method}' needs {needs}, which {label}, before its language model, does not provide "
        f"(it provides: {provides})",
    )


NO_CLS = "projected, received_attention"  # what the towers without [CLS] provide
INTERNVL = "cls_attention, projected"  # InternViT's [CLS] attention, summed over each pixel-shuffled group
FAMILY_CASES = [
    *[
        family_case(
            name, f"a merging method ({method})", apply(method, 8), f"method '{method}' merges tokens; {reason}"
        )
        for name in ("qwen3_vl", "qwen3_vl_moe")
        for method, reason in [("pool", "Qwen3-VL needs kept positions for M-RoPE"), ("visionzip", "Qwen3-VL needs")]
    ],
    signals("internvl", "InternVL", "visionzip", "cls_token, projections", INTERNVL),
    signals("internvl", "InternVL", "tome", "token_merging", INTERNVL),
    signals("internvl", "InternVL", "prumerge_plus", "next_projections", INTERNVL),
    *[
        signals(name, label, method, needs, NO_CLS)
        for name, label in [("gemma3", "Gemma 3"), ("smolvlm", "SmolVLM"), ("idefics3", "Idefics3")]
        for method, needs in [
            ("visionzip", "cls_attention, cls_token, projections"),
            ("tome", "token_merging"),
            ("prumerge_plus", "next_projections"),
        ]
    ],
]


@pytest.mark.parametrize("name, call, error, fragment", FAMILY_CASES)
def test_methods_a_family_cannot_run_are_refused(name, call, error, fragment):
    with pruned_earlier(name) as model:
        with nothing_runs(model), pytest.raises(error, match=re.escape(fragment)):
            call(model)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_failed_reapply_keeps_the_earlier_pruning_working(name):
    """A re-apply failing inside the host (an in-LLM layer past the depth) leaves the earlier pruning:
    same config and trace objects, the same outputs, one more trace record for the next call."""
    model, inputs = model_of(name), inputs_of(name)
    with pruned_with(model, **EARLIER):
        before = logits(model, inputs)
        config, trace = model.pruning_config, model.pruning_trace
        state = snapshot(model)
        with pytest.raises(ValueError, match="does not fit a language model"):
            llava.apply_pruning(model, "fastv", 8, layer=100)
        assert_same_state(model, state)
        assert model.pruning_config is config and model.pruning_trace is trace and len(trace) == 1
        assert torch.equal(logits(model, inputs), before)
        assert len(model.pruning_trace) == 2


# ======================================================================================================
# copies, pickles, save_pretrained
# ======================================================================================================

# method and options of each copy check: a vision-side and an in-LLM method per family, and a random stream
COPIED = {
    "internvl": [
        {"method": "vispruner", "visual_token_num": 5},
        {"method": "fastv", "visual_token_num": 4, "layer": 1},
    ],
    "qwen3_vl": [
        {"method": "random", "visual_token_num": 3, "seed": 3},
        {"method": "pdrop", "visual_token_num": 3, "layers": (1,)},
    ],
    "qwen3_vl_moe": [
        {"method": "divprune", "visual_token_num": 3},
        {"method": "fastv", "visual_token_num": 3, "layer": 1},
    ],
    "gemma3": [
        {"method": "pool", "visual_token_num": 4},
        {"method": "sparsevlm", "visual_token_num": 8, "layers": (1,), "schedule": (8,)},
    ],
    "smolvlm": [
        {"method": "fastervlm", "visual_token_num": 4},
        {"method": "fastv", "visual_token_num": 4, "layer": 1},
    ],
    "idefics3": [
        {"method": "vispruner", "visual_token_num": 4},
        {"method": "pdrop", "visual_token_num": 4, "layers": (1,)},
    ],
}
COPY_CASES = [(name, pruning) for name, prunings in COPIED.items() for pruning in prunings]


@pytest.mark.parametrize("name, pruning", COPY_CASES, ids=[f"{n}-{p['method']}" for n, p in COPY_CASES])
def test_a_deep_copy_is_an_independent_pruned_model(name, pruning):
    model, inputs = model_of(name), inputs_of(name)
    stock = logits(model, inputs)
    with pruned_with(model, trace=True, **pruning):
        twin = copy.deepcopy(model)
        assert twin.pruning_config == model.pruning_config and twin.pruning_trace == []
        assert twin.pruning_trace is not model.pruning_trace
        expected = logits(model, inputs)
        assert not torch.allclose(expected[:, -1], stock[:, -1])  # pruned outputs differ: the copy must prune too
        assert torch.allclose(logits(twin, inputs), expected, atol=1e-6)  # random: the copied stream, same draws
        assert len(twin.pruning_trace) == 1
        with torch.no_grad():  # own weights: changing the copy's leaves the original as it was
            for parameter in twin.parameters():
                parameter.add_(0.5)
        assert not torch.allclose(logits(twin, inputs), expected)
        if pruning["method"] != "random":
            assert torch.allclose(logits(model, inputs), expected, atol=1e-6)
        llava.remove_pruning(twin)  # removing the copy's pruning leaves the original pruned
        assert "pruning_config" not in twin.__dict__ and model.pruning_config.method == pruning["method"]
        assert not any("__reduce_ex__" in part.__dict__ for part in twin.modules())
        part = copy.deepcopy(model.model)  # a part of a pruned model copies unpruned
        assert not any("forward" in m.__dict__ or "get_image_features" in m.__dict__ for m in part.modules())
    assert torch.equal(logits(model, inputs), stock)


# a vision-side method on half the families, an in-LLM one on the others (pickles and save_pretrained)
PICKLED = {
    "internvl": {"method": "vispruner", "visual_token_num": 4},
    "qwen3_vl": {"method": "vispruner", "visual_token_num": 3},
    "qwen3_vl_moe": {"method": "fastv", "visual_token_num": 3, "layer": 1},
    "gemma3": {"method": "fastv", "visual_token_num": 4, "layer": 2},
    "smolvlm": {"method": "divprune", "visual_token_num": 4},
    "idefics3": {"method": "fastv", "visual_token_num": 4, "layer": 1},
}


@pytest.mark.parametrize("name", sorted(PICKLED))
def test_pickles_and_torch_save_store_the_stock_model_and_reapply_the_pruning(name):
    """Where the stock model pickles: transformers 5 models pickle until their first forward, which
    installs output-capturing hooks pickle cannot store (the pruned model then fails the same way)."""
    model, inputs = BUILDERS[name]()[0], inputs_of(name)  # a fresh model: none of its forwards has run
    pickle.loads(pickle.dumps(model))
    with pruned_with(model, trace=True, **PICKLED[name]):
        config = model.pruning_config
        buffer = io.BytesIO()
        torch.save(model, buffer)
        loaded = [pickle.loads(pickle.dumps(model, protocol=p)) for p in (2, pickle.HIGHEST_PROTOCOL)]
        buffer.seek(0)
        loaded.append(torch.load(buffer, weights_only=False))
        expected = logits(model, inputs)
    for copy_ in loaded:
        assert copy_.pruning_config == config and copy_.pruning_trace == []
        assert torch.allclose(logits(copy_, inputs), expected, atol=1e-6)
        assert len(copy_.pruning_trace) == 1
        llava.remove_pruning(copy_)
        assert "pruning_config" not in copy_.__dict__


@pytest.mark.parametrize("name", FAMILIES)
def test_save_pretrained_of_a_pruned_model_saves_the_stock_model(name, tmp_path):
    """The folder loads (as the class its config names) as the unpruned model: the stock outputs."""
    model, inputs = model_of(name), inputs_of(name)
    stock = logits(model, inputs)
    with pruned_with(model, trace=True, **PICKLED[name]):
        model.save_pretrained(tmp_path)
        assert not torch.equal(logits(model, inputs), stock)
    (architecture,) = json.loads((tmp_path / "config.json").read_text())["architectures"]
    assert architecture == class_of(name)
    loaded = type(model).from_pretrained(tmp_path).eval()
    assert "pruning_config" not in loaded.__dict__ and "forward" not in loaded.__dict__
    assert torch.allclose(logits(loaded, inputs), stock, atol=1e-6)


# ======================================================================================================
# hand-built prompts with wrong placeholders
# ======================================================================================================


def expected_prompt_error(name, source, kind):
    """What the count or run check says: it is about pruning, and gives the items' counts."""
    if name.startswith("qwen3"):
        return "pruning Qwen3-VL: the prompt" + (" holds" if kind != "runs of" else f"'s runs of {source}")
    return "pruning: the prompt" + (" holds" if kind != "runs of" else "'s runs of placeholder token")


# Qwen3-VL's batch holds one video too (in its second prompt): its count is checked like the images'.
# The wrong-runs edit moves a placeholder from the first prompt holding that kind to the last, so it
# needs two prompts holding it, which the video has not.
COUNT_EDITS = [edit for edit, (_, kind) in PROMPT_EDITS.items() if kind == "placeholders"]
PROMPT_CASES = [
    *[(name, "image", method, edit) for name in FAMILIES for method in PRUNINGS for edit in PROMPT_EDITS],
    *[
        (name, "video", method, edit)
        for name in ("qwen3_vl", "qwen3_vl_moe")
        for method in PRUNINGS
        for edit in COUNT_EDITS
    ],
]


@pytest.mark.parametrize(
    "name, source, method, edit", PROMPT_CASES, ids=[f"{n}-{s}-{m}-{e}" for n, s, m, e in PROMPT_CASES]
)
def test_a_hand_built_prompt_with_wrong_placeholders_is_refused_before_the_towers_run(name, source, method, edit):
    model = model_of(name)
    change, kind = PROMPT_EDITS[edit]
    placeholder = getattr(model.config, f"{source}_token_id")
    inputs = change(inputs_of(name), placeholder)
    with pruned_with(model, method=method, trace=True, **PRUNINGS[method]):
        with nothing_runs(model), pytest.raises(ValueError) as error:
            model(**inputs)
        assert not model.pruning_trace
    message = str(error.value)
    assert expected_prompt_error(name, source, kind) in message, message
    if kind == "placeholders":
        found = int((inputs["input_ids"] == placeholder).sum())
        need = found + (5 if "fewer" in edit else -1)
        assert f"holds {found} " in message and f"need {need} (" in message, message


def qwen3_video_prompt(name):
    """One prompt holding a video alone (no image, so no `pixel_values` / `image_grid_thw`), and its
    count of video placeholders."""
    from test_qwen3_vl import PATCH_VALUES, VIDEO_GRID, merged_count

    model, _, tokenizer = family(name)
    text = f"USER: {qwen3_vl_video_text(VIDEO_GRID)}What happens? ASSISTANT:"
    inputs = dict(tokenizer([text], return_tensors="pt"))
    inputs["mm_token_type_ids"] = 2 * (inputs["input_ids"] == model.config.video_token_id).int()
    inputs["pixel_values_videos"] = torch.randn(
        math.prod(VIDEO_GRID), PATCH_VALUES, generator=torch.Generator().manual_seed(0)
    )
    inputs["video_grid_thw"] = torch.tensor([VIDEO_GRID])
    return inputs, merged_count(VIDEO_GRID)


@pytest.mark.parametrize("method", ["vispruner", "fastv"])
@pytest.mark.parametrize("name", ["qwen3_vl", "qwen3_vl_moe"])
def test_qwen3_video_only_prompts_are_pruned(name, method):
    model = model_of(name)
    assert_video_only_prompt_is_pruned(model, *qwen3_video_prompt(name), method)
