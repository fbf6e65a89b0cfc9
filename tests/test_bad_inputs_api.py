"""Issue 20 (library half): bad inputs to the Python API and the demo.

Every bad input is refused before any work starts (no module of the model runs, no weight is read, no
file is written), with an error naming the argument or file, its value and what is allowed, and the
model is left exactly as it was (an earlier pruning, its config and its trace included). One section
per entry point; each table is (case, call, error type, message fragment), so `pytest --collect-only`
counts the cases. Beside the tables: copies, pickles and saved checkpoints of pruned models, every
method at edge budgets, and Qwen2-VL / Qwen2.5-VL video-only prompts.
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

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import llava
from family_helpers import onevision_processor, random_image
from llava.conversation import get_template
from llava.models import HOSTS
from llava.models.llava_next import pin_paper_resolution
from llava.prompting import encode_batch, tokenize_like_llava
from llava.pruning import create_pruner, list_methods
from llava.pruning.pool import pooled_grid
from llava.testing import (
    build_tiny_llava,
    build_tiny_llava_next,
    build_tiny_llava_next_video,
    build_tiny_llava_onevision,
    build_tiny_qwen2_vl,
    build_tiny_video_llava,
)
from llava.visualize import draw_kept_patches, pixels_to_image, side_by_side
from support import LONG_PROMPT, PROMPT, load_example, shapes_image

SIZE = 112  # LLaVA: 8 x 8 patches of 14 px
FRAMES = 4  # frames per video of the video families' batches
TEXT = 5  # a plain text token id of the tiny tokenizers (ids 0-4 are special)

# --- the tiny models, built once per module, and a batch of two left-padded prompts for each -----------

BUILDERS = {
    "llava": lambda: build_tiny_llava(image_size=SIZE, vision_layers=4),
    "llava_next": build_tiny_llava_next,
    "video_llava": build_tiny_video_llava,
    "llava_next_video": build_tiny_llava_next_video,
    "llava_onevision": build_tiny_llava_onevision,
    "qwen2_vl": lambda: build_tiny_qwen2_vl("2"),
    "qwen2_5_vl": lambda: build_tiny_qwen2_vl("2.5"),
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
    model = built[0]
    if name in ("llava", "llava_next"):
        processor = built[1]
        processor.tokenizer.padding_side = "left"
        if name == "llava":
            images = [shapes_image(SIZE, seed) for seed in range(2)]
            text = [PROMPT, LONG_PROMPT]
        else:
            images = [random_image(70, 40, 0), random_image(30, 60, 1)]
            text = ["USER: <image>\nWhat? ASSISTANT:", "USER: <image>\nWhat is shown here? ASSISTANT:"]
        return dict(processor(text=text, images=images, return_tensors="pt", padding=True))
    _, image_processor, tokenizer = built
    tokenizer.padding_side = "left"
    if name == "llava_onevision":
        processor = onevision_processor(image_processor, tokenizer, num_image_tokens=16)
        images = [random_image(100, 40, 1), random_image(60, 90, 2)]
        text = ["USER: <image>\nWhat? ASSISTANT:", "USER: <image>\nWhat is shown here? ASSISTANT:"]
        return dict(processor(text=text, images=images, return_tensors="pt", padding=True))
    if name.startswith("qwen"):
        vision = image_processor([random_image(120, 90, 20), random_image(60, 100, 21)], return_tensors="pt")
        counts = (vision.image_grid_thw.prod(-1) // 4).tolist()
        runs = [f"USER: <|vision_start|>{'<|image_pad|>' * n}<|vision_end|>" for n in counts]
        inputs = dict(
            tokenizer([runs[0] + "What? ASSISTANT:", runs[1] + "Why? ASSISTANT:"], return_tensors="pt", padding=True)
        )
        inputs["mm_token_type_ids"] = (inputs["input_ids"] == model.config.image_token_id).int()
        return {**inputs, "pixel_values": vision.pixel_values, "image_grid_thw": vision.image_grid_thw}
    # the video families: one video of FRAMES frames per prompt
    videos = torch.stack(
        [
            image_processor([random_image(40, 36, 10 * v + f) for f in range(FRAMES)], return_tensors="pt").pixel_values
            for v in range(2)
        ]
    )
    per_frame = 17 if name == "video_llava" else 4  # [CLS] + 4 x 4 patches; 4 x 4 pooled 2 x 2
    run = "<video>" * (FRAMES * per_frame)
    texts = [f"USER: {run}\nWhat? ASSISTANT:", f"USER: {run}\nWhat happens here? ASSISTANT:"]
    return {**dict(tokenizer(texts, return_tensors="pt", padding=True)), "pixel_values_videos": videos}


def inputs_of(name: str) -> dict:
    return {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in _inputs(name).items()}


def placeholder_of(name: str) -> int:
    config = model_of(name).config
    return config.video_token_id if name in ("video_llava", "llava_next_video") else config.image_token_id


# The pruning every family runs before a table case, so that a case also shows the earlier pruning survives.
EARLIER = {"method": "vispruner", "visual_token_num": 3, "trace": True}


@contextmanager
def pruned_with(model, **pruning):
    llava.apply_pruning(model, **pruning)
    try:
        yield model
    finally:
        llava.remove_pruning(model)


@contextmanager
def earlier_state(model, earlier: str, inputs: dict | None = None):
    """The model stock, or pruned with EARLIER and one pruned call in its trace; stock again afterwards."""
    if earlier == "stock":
        try:
            yield model
        finally:
            llava.remove_pruning(model)  # in case a case's call pruned it after all
        return
    with pruned_with(model, **EARLIER):
        if inputs is not None:
            with torch.no_grad():
                model(**inputs)
        yield model


def snapshot(model) -> dict:
    """Every module's attributes (by identity) and the trace length: what 'unchanged' compares."""
    state = {name: dict(module.__dict__) for name, module in model.named_modules()}
    state["<trace length>"] = len(model.__dict__.get("pruning_trace", ()))
    return state


def assert_same_state(model, before: dict) -> None:
    after = snapshot(model)
    assert after["<trace length>"] == before["<trace length>"], "the trace changed"
    assert after.keys() == before.keys()
    for name, attributes in before.items():
        if name == "<trace length>":
            continue
        now = after[name]
        assert now.keys() == attributes.keys(), (name, sorted(set(now) ^ set(attributes)))
        assert not [key for key in attributes if now[key] is not attributes[key]], name


@contextmanager
def nothing_runs(model):
    """No module of `model` runs inside the block (calling the model itself is the entry, not work),
    and every attribute of every module, the trace included, is as it was."""
    calls = []
    handles = [
        module.register_forward_pre_hook(lambda module, args: calls.append(type(module).__name__))
        for module in model.modules()
        if module is not model
    ]
    before = snapshot(model)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
    assert not calls, f"work started before the error: {calls[:5]}"
    assert_same_state(model, before)


# ======================================================================================================
# apply_pruning / attach_pruner
# ======================================================================================================


def apply(*args, **kwargs):
    return lambda model: llava.apply_pruning(model, *args, **kwargs)


CLASSES = ", ".join(sorted(path.rsplit(".", 1)[1] for path in HOSTS))  # what the messages list
SUPPORTED = f"an instance of one of: {CLASSES}"
APPLY_CASES = [
    ("model None", lambda m: llava.apply_pruning(None), TypeError, f"apply_pruning takes a model ({SUPPORTED}"),
    ("model a string", lambda m: llava.apply_pruning("llava-hf/llava-1.5-7b-hf"), TypeError, "got str"),
    ("model the class", lambda m: llava.apply_pruning(type(m)), TypeError, "got type"),
    (
        "model of an unsupported class",
        lambda m: llava.apply_pruning(m.model.language_model),
        ValueError,
        f"pruning does not support LlamaModel; supported model classes: {CLASSES}",
    ),
    ("method None", apply(None), ValueError, "method must be the name of a pruning method (one of divprune"),
    ("method a list", apply(["vispruner"]), ValueError, "method must be the name of a pruning method"),
    ("method unknown", apply("VisPruner"), ValueError, "unknown pruning method 'VisPruner'; available: divprune"),
    ("budget 0", apply("vispruner", 0), ValueError, "visual_token_num must be a positive integer (>= 1), got 0"),
    (
        "budget negative",
        apply("vispruner", -5),
        ValueError,
        "visual_token_num must be a positive integer (>= 1), got -5",
    ),
    (
        "budget a float",
        apply("vispruner", 16.0),
        ValueError,
        "visual_token_num must be a positive integer (>= 1), got 16.0",
    ),
    (
        "budget a bool",
        apply("vispruner", True),
        ValueError,
        "visual_token_num must be a positive integer (>= 1), got True",
    ),
    (
        "budget a string",
        apply("vispruner", "64"),
        ValueError,
        "visual_token_num must be a positive integer (>= 1), got '64'",
    ),
    (
        "budget None",
        apply("vispruner", None),
        ValueError,
        "visual_token_num must be a positive integer (>= 1), got None",
    ),
    (
        "budget NaN",
        apply("vispruner", float("nan")),
        ValueError,
        "visual_token_num must be a positive integer (>= 1), got nan",
    ),
    ("trace a string", apply("vispruner", 8, trace="yes"), ValueError, "trace must be True or False, got 'yes'"),
    ("trace 1", apply("vispruner", 8, trace=1), ValueError, "trace must be True or False, got 1"),
    (
        "unknown option",
        apply("vispruner", 8, ratio=0.5),
        ValueError,
        "unknown option(s) ratio for method 'vispruner'; allowed: important_ratio",
    ),
    (
        "another family's option",
        apply("vispruner", 8, layout="paper"),
        ValueError,
        "LlavaForConditionalGeneration accepts no model options",
    ),
    (
        "attach_pruner: a method name, not a pruner",
        lambda m: llava.attach_pruner(m, "vispruner"),
        TypeError,
        "pruner must be a llava.pruning.TokenPruner (e.g. llava.create_pruner(...)), got str",
    ),
    (
        "attach_pruner: trace None",
        lambda m: llava.attach_pruner(m, create_pruner("vispruner", 8), trace=None),
        ValueError,
        "trace must be True or False, got None",
    ),
    (
        "attach_pruner: unknown model option",
        lambda m: llava.attach_pruner(m, create_pruner("vispruner", 8), layout="paper"),
        ValueError,
        "unknown model option(s) layout for LlavaForConditionalGeneration; allowed: none",
    ),
    (
        "host refuses: fastv layer past the depth",
        apply("fastv", 8, layer=100),
        ValueError,
        "fastv: pruning before layer 100 does not fit a language model of 2 layers (allowed: 1..1); set layer",
    ),
    (
        "host refuses: pdrop layer past the depth",
        apply("pdrop", 8, layers=(1, 2)),
        ValueError,
        "pdrop: pruning before layer 2 does not fit a language model of 2 layers",
    ),
    (
        "host refuses: sparsevlm layer past the depth",
        apply("sparsevlm", 8, layers=(0, 1), schedule=(4, 2)),
        ValueError,
        "sparsevlm: pruning after layer 1 does not fit a language model of 2 layers",
    ),
    (
        "host refuses: tome budget out of reach",
        apply("tome", 1),
        ValueError,
        "tome cannot merge 64 tokens down to visual_token_num=1 in 3 layers",
    ),
    (
        "host refuses: sparsevlm schedule that cannot prune",
        apply("sparsevlm", 16, layers=(0,), schedule=(600,)),
        ValueError,
        "sparsevlm's schedule (600,) cannot prune the 64-token images of LlavaForConditionalGeneration",
    ),
]


@pytest.mark.parametrize("earlier", ["stock", "pruned"])
@pytest.mark.parametrize("case, call, error, fragment", APPLY_CASES, ids=[c[0] for c in APPLY_CASES])
def test_apply_pruning_refuses(case, call, error, fragment, earlier):
    model = model_of("llava")
    with earlier_state(model, earlier, inputs_of("llava")):
        with nothing_runs(model), pytest.raises(error, match=re.escape(fragment)):
            call(model)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_failed_reapply_keeps_the_earlier_pruning_working(name):
    """A re-apply failing inside the host (an in-LLM layer past the depth) leaves the earlier pruning:
    same config and trace objects, the same outputs, one more trace record for the next call."""
    model, inputs = model_of(name), inputs_of(name)
    with earlier_state(model, "pruned", inputs):
        config, trace = model.pruning_config, model.pruning_trace
        with torch.no_grad():
            before = model(**inputs).logits
        with pytest.raises(ValueError, match="does not fit a language model"):
            llava.apply_pruning(model, "fastv", 8, layer=100)
        assert model.pruning_config is config and model.pruning_trace is trace and len(trace) == 2
        with torch.no_grad():
            assert torch.equal(model(**inputs).logits, before)
        assert len(model.pruning_trace) == 3


@pytest.mark.parametrize("earlier", ["stock", "pruned"])
def test_compile_on_the_cpu_without_a_toolchain_is_refused_before_anything_runs(earlier, monkeypatch):
    """VisPruner(compile=True) builds its C++ rounds when attached to a CPU model: a build that fails
    says so at apply time (naming the missing compiler and compile=False), and the model stays as it was."""
    import torch.utils.cpp_extension

    from llava.pruning import fused_rounds

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'vispruner_rounds': c++: command not found")

    model = model_of("llava")
    with earlier_state(model, earlier, inputs_of("llava")):
        monkeypatch.setattr(torch.utils.cpp_extension, "load", no_compiler)
        fused_rounds.load.cache_clear()
        try:
            with nothing_runs(model), pytest.raises(RuntimeError, match="C\\+\\+ compiler.*compile=False"):
                llava.apply_pruning(model, "vispruner", 8, compile=True)
        finally:
            fused_rounds.load.cache_clear()


# ======================================================================================================
# remove_pruning, copies, pickles, save_pretrained
# ======================================================================================================

REMOVE_CASES = [
    ("remove None", lambda m: llava.remove_pruning(None), TypeError, "remove_pruning takes a model (an instance"),
    ("remove a string", lambda m: llava.remove_pruning("model"), TypeError, "remove_pruning takes a model"),
    (
        "remove an unsupported class",
        lambda m: llava.remove_pruning(m.model.language_model),
        ValueError,
        "pruning does not support LlamaModel; supported model classes",
    ),
    (
        "copy.copy of a pruned model",
        lambda m: copy.copy(m),
        TypeError,
        "copy.copy of a pruned model would share its pruned parts with the original; use copy.deepcopy",
    ),
]


@pytest.mark.parametrize("case, call, error, fragment", REMOVE_CASES, ids=[c[0] for c in REMOVE_CASES])
def test_remove_and_copy_refuse(case, call, error, fragment):
    model = model_of("llava")
    with earlier_state(model, "pruned", inputs_of("llava")):
        with nothing_runs(model), pytest.raises(error, match=re.escape(fragment)):
            call(model)


# method and options of each copy check: a vision-side and an in-LLM method, and a random stream
COPIED = {
    "llava": [
        {"method": "random", "visual_token_num": 5, "seed": 3},
        {"method": "fastv", "visual_token_num": 4, "layer": 1},
    ],
    "llava_next": [{"method": "vispruner", "visual_token_num": 6, "layout": "paper"}],
    "video_llava": [{"method": "vispruner", "visual_token_num": 3, "video_token_num": 7, "frame_cls": False}],
    "llava_next_video": [{"method": "divprune", "visual_token_num": 2}],
    "llava_onevision": [{"method": "fastervlm", "visual_token_num": 4}],
    "qwen2_vl": [{"method": "vispruner", "visual_token_num": 3}],
    "qwen2_5_vl": [{"method": "pdrop", "visual_token_num": 3, "layers": (1,)}],
}
COPY_CASES = [(name, pruning) for name, prunings in COPIED.items() for pruning in prunings]


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("name, pruning", COPY_CASES, ids=[f"{n}-{p['method']}" for n, p in COPY_CASES])
def test_a_deep_copy_is_an_independent_pruned_model(name, pruning):
    model, inputs = model_of(name), inputs_of(name)
    if name == "llava_next" and pruning.get("layout") == "paper":
        processor = pin_paper_resolution(copy.deepcopy(family(name)[1]))
        inputs = dict(
            processor(text=["USER: <image>\nWhat? ASSISTANT:"], images=[random_image(70, 40, 0)], return_tensors="pt")
        )
    stock = logits(model, inputs)
    with pruned_with(model, trace=True, **pruning):
        twin = copy.deepcopy(model)
        assert twin.pruning_config == model.pruning_config and twin.pruning_trace == []
        assert twin.pruning_trace is not model.pruning_trace
        expected = logits(model, inputs)
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


PICKLED = {
    "llava": {"method": "fastv", "visual_token_num": 4, "layer": 1},
    "qwen2_vl": {"method": "vispruner", "visual_token_num": 3},
    "video_llava": {"method": "vispruner", "visual_token_num": 3, "video_token_num": 7, "frame_cls": False},
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


def test_save_pretrained_of_a_pruned_model_saves_the_stock_model(tmp_path):
    model, processor = family("llava")
    inputs = inputs_of("llava")
    stock = logits(model, inputs)
    with pruned_with(model, method="vispruner", visual_token_num=4, trace=True):
        model.save_pretrained(tmp_path)
        processor.save_pretrained(tmp_path)
        assert not torch.equal(logits(model, inputs), stock)
    loaded, _ = llava.load_pretrained_model(str(tmp_path))
    assert "pruning_config" not in loaded.__dict__ and "forward" not in loaded.__dict__
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["LlavaForConditionalGeneration"]
    assert torch.allclose(logits(loaded, inputs), stock, atol=1e-6)


# ======================================================================================================
# each method's options, and every method at edge budgets
# ======================================================================================================


def method_case(case, method, options, fragment, budget=8):
    return (f"{method}: {case}", apply(method, budget, **options), ValueError, fragment)


METHOD_CASES = [
    method_case(
        "important_ratio NaN",
        "vispruner",
        {"important_ratio": float("nan")},
        "important_ratio must be a number in [0, 1], got nan",
    ),
    method_case(
        "important_ratio above 1", "vispruner", {"important_ratio": 1.5}, "important_ratio must be in [0, 1], got 1.5"
    ),
    method_case(
        "important_ratio negative",
        "vispruner",
        {"important_ratio": -0.1},
        "important_ratio must be in [0, 1], got -0.1",
    ),
    method_case(
        "important_ratio a bool",
        "vispruner",
        {"important_ratio": True},
        "important_ratio must be a number in [0, 1], got True",
    ),
    method_case(
        "important_ratio a string",
        "vispruner",
        {"important_ratio": "0.5"},
        "important_ratio must be a number in [0, 1], got '0.5'",
    ),
    method_case(
        "important_ratio None",
        "vispruner",
        {"important_ratio": None},
        "important_ratio must be a number in [0, 1], got None",
    ),
    method_case(
        "an option it has not",
        "fastervlm",
        {"important_ratio": 0.5},
        "unknown option(s) important_ratio for method 'fastervlm'; allowed: none",
    ),
    method_case(
        "an option it has not", "pool", {"stride": 2}, "unknown option(s) stride for method 'pool'; allowed: none"
    ),
    method_case(
        "an option it has not", "divprune", {"layer": 0}, "unknown option(s) layer for method 'divprune'; allowed: none"
    ),
    method_case("an option it has not", "tome", {"r": 8}, "unknown option(s) r for method 'tome'; allowed: none"),
    method_case("seed negative", "random", {"seed": -1}, "seed must be a non-negative integer, got -1"),
    method_case("seed a float", "random", {"seed": 1.5}, "seed must be a non-negative integer, got 1.5"),
    method_case("seed a bool", "random", {"seed": True}, "seed must be a non-negative integer, got True"),
    method_case(
        "contextual_num negative", "visionzip", {"contextual_num": -1}, "contextual_num must be an integer >= 0, got -1"
    ),
    method_case(
        "contextual_num a float",
        "visionzip",
        {"contextual_num": 1.5},
        "contextual_num must be an integer >= 0, got 1.5",
    ),
    method_case(
        "contextual_num the whole budget",
        "visionzip",
        {"contextual_num": 8},
        "contextual_num must leave room for the [CLS] token: at most visual_token_num - 1 = 7, got 8",
    ),
    method_case(
        "num_neighbors 0", "prumerge_plus", {"num_neighbors": 0}, "num_neighbors must be an integer >= 1, got 0"
    ),
    method_case(
        "num_neighbors a float",
        "prumerge_plus",
        {"num_neighbors": 2.5},
        "num_neighbors must be an integer >= 1, got 2.5",
    ),
    method_case(
        "num_neighbors a bool",
        "prumerge_plus",
        {"num_neighbors": True},
        "num_neighbors must be an integer >= 1, got True",
    ),
    method_case("layer 0", "fastv", {"layer": 0}, "layer must be an integer >= 1, got 0"),
    method_case("layer a string", "fastv", {"layer": "1"}, "layer must be an integer >= 1, got '1'"),
    method_case("layer None", "fastv", {"layer": None}, "layer must be an integer >= 1, got None"),
    method_case("layers empty", "pdrop", {"layers": ()}, "layers must hold layer indices >= 0, got ()"),
    method_case("layers decreasing", "pdrop", {"layers": (1, 0)}, "layers must be strictly increasing, got (1, 0)"),
    method_case("layers negative", "pdrop", {"layers": (-1,)}, "layers must hold layer indices >= 0, got (-1,)"),
    method_case("layers None", "pdrop", {"layers": None}, "layers must be a layer index or a list of them, got None"),
    method_case("layers floats", "pdrop", {"layers": (1.0,)}, "layers must hold layer indices >= 0, got (1.0,)"),
    method_case(
        "ratio NaN", "pdrop", {"layers": (1,), "ratio": float("nan")}, "ratio must be a number in [0, 1], got nan"
    ),
    method_case("ratio above 1", "pdrop", {"layers": (1,), "ratio": 2}, "ratio must be in [0, 1], got 2"),
    method_case(
        "no published schedule",
        "sparsevlm",
        {"layers": (0,)},
        "sparsevlm has published schedules for visual_token_num in [64, 96, 128, 192], got 8",
    ),
    method_case(
        "schedule a string",
        "sparsevlm",
        {"layers": (0,), "schedule": "12"},
        "schedule must be a list of kept counts, one per layer, got '12'",
    ),
    method_case(
        "schedule a dict",
        "sparsevlm",
        {"layers": (0,), "schedule": {12: 1}},
        "schedule must be a list of kept counts, one per layer",
    ),
    method_case(
        "schedule of another length",
        "sparsevlm",
        {"layers": (0,), "schedule": (4, 2)},
        "schedule must have one kept count per pruning layer (1 layers), got (4, 2)",
    ),
    (  # two pruning layers do not fit the tiny model: the method is built on its own
        "sparsevlm: schedule with 0",
        lambda m: create_pruner("sparsevlm", 8, layers=(0, 1), schedule=(4, 0)),
        ValueError,
        "schedule must be an integer >= 1, got 0",
    ),
    (
        "sparsevlm: schedule growing",
        lambda m: create_pruner("sparsevlm", 8, layers=(2, 6), schedule=(4, 12)),
        ValueError,
        "schedule must not grow from one pruning layer to the next",
    ),
]


@pytest.mark.parametrize("case, call, error, fragment", METHOD_CASES, ids=[c[0] for c in METHOD_CASES])
def test_method_options_are_refused(case, call, error, fragment):
    model = model_of("llava")
    with earlier_state(model, "pruned", inputs_of("llava")):
        with nothing_runs(model), pytest.raises(error, match=re.escape(fragment)):
            call(model)


IN_LLM = {"fastv": {"layer": 1}, "pdrop": {"layers": (1,)}, "sparsevlm": {"layers": (0,)}}
EDGES = {"1": lambda n: 1, "N-1": lambda n: n - 1, "N": lambda n: n, "N+1": lambda n: n + 1}


@functools.cache
def edge_model(side: int):
    return build_tiny_llava(image_size=14 * side, vision_layers=4)


@pytest.mark.parametrize("side, batch", [(8, 1), (7, 3)], ids=["8x8 grid, batch 1", "7x7 grid, batch 3"])
@pytest.mark.parametrize("edge", list(EDGES))
@pytest.mark.parametrize("method", list_methods())
def test_every_method_at_edge_budgets_runs_as_documented_or_is_refused_when_applied(method, edge, side, batch):
    """T = 1, N - 1, N, N + 1 on an even and an odd grid, one image and three: the language model gets
    min(T, N) tokens per image (pool: its pooled grid), in-LLM methods keep min(T, N) (SparseVLM: at most
    N - 1, recycling the rest), or apply_pruning refuses the budget, naming why."""
    model, processor = edge_model(side)
    count = side * side
    budget = EDGES[edge](count)
    options = dict(IN_LLM.get(method, {}))
    if method == "sparsevlm":
        options["schedule"] = (budget,)
    images = [shapes_image(14 * side, seed) for seed in range(batch)]
    inputs = processor(text=[PROMPT] * batch, images=images, return_tensors="pt")
    refusal = {
        ("tome", "1"): "tome cannot merge",
        ("sparsevlm", "N-1"): "cannot prune",
        ("sparsevlm", "N"): "cannot prune",
        ("sparsevlm", "N+1"): "cannot prune",
    }.get((method, edge))
    if refusal:
        try:
            with nothing_runs(model), pytest.raises(ValueError, match=refusal):
                llava.apply_pruning(model, method, budget, **options)
        finally:
            llava.remove_pruning(model)  # in case it was applied after all
        return
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True
    )
    try:
        with pruned_with(model, method=method, visual_token_num=budget, trace=True, **options):
            out = logits(model, inputs)
            (call,) = model.pruning_trace
    finally:
        hook.remove()
    assert torch.isfinite(out).all()
    text = inputs["input_ids"].shape[1] - count
    if method in IN_LLM:
        expected = min(budget, count - 1) if method == "sparsevlm" else min(budget, count)
        assert [len(part.kept) for part in call.parts] == [expected] * batch
        assert seen == [inputs["input_ids"].shape[1]]
    else:
        kept = math.prod(pooled_grid((side, side), budget)) if method == "pool" else min(budget, count)
        assert seen == [text + kept]


@pytest.mark.parametrize("total", [1, FRAMES - 1, FRAMES + 1])
@pytest.mark.parametrize("method", ["visionzip", "prumerge_plus", "pool", "vispruner"])
def test_video_llava_even_split_of_small_totals_runs_for_every_vision_side_method(method, total):
    """Frames of budget 0, 1 and 2: each method runs at a frame's share (VisionZip's contextual tokens
    follow the share; PruMerge+ at 1 keeps its extra token alone)."""
    model, inputs = model_of("video_llava"), inputs_of("video_llava")
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True
    )
    try:
        with pruned_with(
            model, method=method, visual_token_num=16, video_token_num=total, video_split="even", frame_cls=False
        ):
            out = logits(model, inputs)
    finally:
        hook.remove()
    assert torch.isfinite(out).all()
    assert seen == [inputs["input_ids"].shape[1] - FRAMES * 17 + total]


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


def drop_placeholders(inputs, token, count=5):
    """The first `count` placeholders of the first row holding some turned into text."""
    ids = inputs["input_ids"]
    row = int((ids == token).any(dim=1).nonzero()[0])
    ids[row, (ids[row] == token).nonzero()[:count, 0]] = TEXT
    return inputs


def add_placeholder(inputs, token):
    """The token after the first row's first run turned into a placeholder."""
    ids = inputs["input_ids"]
    row = int((ids == token).any(dim=1).nonzero()[0])
    ids[row, int((ids[row] == token).nonzero()[-1]) + 1] = token
    return inputs


def move_placeholder(inputs, token):
    """One placeholder moved from the first row's run to the end of the last row's: the same total in
    runs that do not match the items."""
    ids = inputs["input_ids"]
    rows = (ids == token).any(dim=1).nonzero()[:, 0].tolist()
    first, last = rows[0], rows[-1]
    ids[first, int((ids[first] == token).nonzero()[-1])] = TEXT
    ids[last, int((ids[last] == token).nonzero()[-1]) + 1] = token
    return inputs


PROMPT_EDITS = {
    "5 placeholders fewer": (drop_placeholders, "placeholders"),
    "1 placeholder more": (add_placeholder, "placeholders"),
    "the right total in the wrong runs": (move_placeholder, "runs of"),
}
PRUNINGS = {"vispruner": {"visual_token_num": 3}, "fastv": {"visual_token_num": 3, "layer": 1}}


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
    inputs, count = qwen_video_prompt(name)
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True
    )
    try:
        with pruned_with(model, method=method, trace=True, **PRUNINGS[method]):
            with torch.no_grad():
                model(**inputs)
                model.generate(**inputs, max_new_tokens=2, do_sample=False)
            trace = model.pruning_trace
    finally:
        hook.remove()
    assert len(trace) == 2 and all(part.source == "video" for call in trace for part in call.parts)
    assert all(sum(len(part.kept) for part in call.parts) == 3 for call in trace)
    length = inputs["input_ids"].shape[1]
    assert seen[0] == (length - count + 3 if method == "vispruner" else length)


# ======================================================================================================
# load_pretrained_model
# ======================================================================================================


def config_folder(config):
    """A folder holding only a config.json (`config` as JSON, or the text as it is): no weights to read."""

    def make(tmp_path):
        folder = tmp_path / "checkpoint"
        folder.mkdir()
        text = config if isinstance(config, str) else json.dumps(config)
        (folder / "config.json").write_text(text)
        return str(folder)

    return make


ALLOWED = f"supported: {CLASSES}"
LOAD_CASES = [
    (
        "an architecture outside the families",
        config_folder({"architectures": ["BertModel"], "model_type": "bert"}),
        {},
        "names architecture 'BertModel', which this loader does not load; " + ALLOWED,
    ),
    (
        "a transformers attribute that is no model",
        config_folder({"architectures": ["pipeline"], "model_type": "llava"}),
        {},
        "names architecture 'pipeline', which this loader does not load",
    ),
    (
        "a module of transformers",
        config_folder({"architectures": ["utils"], "model_type": "llava"}),
        {},
        "names architecture 'utils', which this loader does not load",
    ),
    (
        "architectures not a list",
        config_folder({"architectures": "LlavaForConditionalGeneration", "model_type": "llava"}),
        {},
        "config.json 'architectures' must be a list of class names, got 'LlavaForConditionalGeneration'",
    ),
    (
        "no architectures, another model_type",
        config_folder({"model_type": "bert"}),
        {},
        "has no 'architectures' and model_type 'bert' is not a supported one; supported model types: ",
    ),
    (
        "no architectures, no model_type",
        config_folder({}),
        {},
        "has no 'architectures' and model_type None is not a supported one",
    ),
    ("config.json not JSON", config_folder("{not json"), {}, "config.json is not a valid JSON file"),
    ("config.json a list", config_folder("[1, 2]"), {}, "config.json must hold a JSON object, got list"),
    (
        "vision_tower for a transformers-format checkpoint",
        config_folder({"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava"}),
        {"vision_tower": "openai/clip"},
        "vision_tower only applies to original LLaVA checkpoints",
    ),
    ("path None", lambda tmp_path: None, {}, "path_or_id must be a local folder or a Hub model id, got None"),
    ("path empty", lambda tmp_path: "", {}, "path_or_id must be a local folder or a Hub model id, got ''"),
]


@pytest.mark.parametrize("case, make, kwargs, fragment", LOAD_CASES, ids=[c[0] for c in LOAD_CASES])
def test_load_pretrained_model_refuses_before_reading_weights(case, make, kwargs, fragment, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("weights were read")

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(no_loading))
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", no_loading)
    path = make(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=re.escape(fragment)):
        llava.load_pretrained_model(path, local_files_only=True, **kwargs)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# ======================================================================================================
# the demo (examples/demo.py)
# ======================================================================================================

demo = load_example("demo")


def truncated_png(tmp_path, name="photo.png"):
    """A PNG file cut in the middle of its image data."""
    path = tmp_path / name
    random_image(64, 64, 1).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def text_file(tmp_path, name, text="not an image"):
    path = tmp_path / name
    path.write_text(text)
    return path


DEMO_CASES = [
    ("image missing", lambda t: ["--image", str(t / "nope.png")], "--image {t}/nope.png: no such file"),
    ("image a folder", lambda t: ["--image", str(t)], "--image {t}: a folder, not an image file"),
    (
        "image truncated",
        lambda t: ["--image", str(truncated_png(t))],
        "--image {t}/photo.png: not a readable image (image file is truncated",
    ),
    (
        "image not an image",
        lambda t: ["--image", str(text_file(t, "x.png"))],
        "--image {t}/x.png: not a readable image (cannot identify image file",
    ),
    ("image empty", lambda t: ["--image", str(text_file(t, "e.jpg", ""))], "--image {t}/e.jpg: not a readable image"),
    (
        "device unknown",
        lambda t: ["--device", "gpu"],
        "--device gpu: not a device torch knows; allowed: cpu, cuda, cuda:N, mps",
    ),
    ("device empty", lambda t: ["--device", ""], "--device : not a device torch knows"),
    ("device another backend", lambda t: ["--device", "meta"], "--device meta: the demo does not run on meta"),
    ("device past the GPUs", lambda t: ["--device", "cuda:99"], "--device cuda:99: "),
    (
        "model a missing folder",
        lambda t: ["--model", "./no/such/folder"],
        "--model ./no/such/folder: no such folder (nor a Hub id",
    ),
    ("model a file", lambda t: ["--model", str(text_file(t, "model.bin"))], "--model {t}/model.bin: not a folder"),
    ("model a folder without config.json", lambda t: ["--model", str(t)], "--model {t}: no config.json in this folder"),
    ("model config.json not JSON", lambda t: ["--model", config_folder("{")(t)], "config.json is not valid JSON"),
    (
        "model an unsupported architecture",
        lambda t: ["--model", config_folder({"architectures": ["BertModel"]})(t)],
        "names architecture 'BertModel', which this loader does not load",
    ),
    ("model empty", lambda t: ["--model", ""], "--model : empty"),
    ("max-new-tokens 0", lambda t: ["--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),
    (
        "tokens 0",
        lambda t: ["--tokens", "0"],
        "--tokens/--ratio: visual_token_num must be a positive integer (>= 1), got 0",
    ),
    ("tokens not a number", lambda t: ["--tokens", "many"], "argument --tokens: invalid int value: 'many'"),
    (
        "ratio NaN",
        lambda t: ["--ratio", "nan"],
        "--tokens/--ratio: important_ratio must be a number in [0, 1], got nan",
    ),
    ("ratio above 1", lambda t: ["--ratio", "1.5"], "--tokens/--ratio: important_ratio must be in [0, 1], got 1.5"),
    ("question empty", lambda t: ["--question", " "], "--question: empty"),
    ("output an unknown format", lambda t: ["--output", str(t / "out.xyz")], "unknown picture format '.xyz'"),
    ("output a folder", lambda t: ["--output", str(t)], "--output {t}: is a folder"),
    (
        "output under a file",
        lambda t: ["--output", str(text_file(t, "f.txt") / "out.png")],
        "f.txt is a file, not a folder",
    ),
]


@pytest.mark.parametrize("case, argv, fragment", DEMO_CASES, ids=[c[0] for c in DEMO_CASES])
def test_demo_refuses_bad_arguments_before_loading_a_model(case, argv, fragment, tmp_path, monkeypatch, capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.chdir(tmp_path)  # the default --output lies here: nothing may appear
    monkeypatch.setattr(demo, "load", no_loading)
    arguments = argv(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_:
        demo.main(arguments)
    assert exit_.value.code == 2
    assert fragment.format(t=tmp_path) in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before


def test_demo_names_a_model_that_fails_to_load(monkeypatch):
    def offline(path, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(llava, "load_pretrained_model", offline, raising=False)
    with pytest.raises(SystemExit, match=re.escape("demo: --model owner/missing: cannot load it: We couldn't connect")):
        demo.load("owner/missing")


# ======================================================================================================
# prompting, conversation templates, pictures, the support matrix
# ======================================================================================================


def tiny_processor():
    return family("llava")[1]


IMAGE = shapes_image(SIZE, 0)
OTHER_CASES = [
    (
        "encode_batch: prompts a string",
        lambda: encode_batch(tiny_processor(), "USER: <image>\nWhat?", [[IMAGE]]),
        "prompts must be a non-empty list of strings, got 'USER: <image>\\nWhat?'",
    ),
    (
        "encode_batch: no prompts",
        lambda: encode_batch(tiny_processor(), []),
        "prompts must be a non-empty list of strings, got []",
    ),
    (
        "encode_batch: a prompt None",
        lambda: encode_batch(tiny_processor(), ["<image>", None], [[IMAGE], []]),
        "prompts must be a non-empty list of strings",
    ),
    (
        "encode_batch: fewer image lists than prompts",
        lambda: encode_batch(tiny_processor(), ["<image>", "<image>"], [[IMAGE]]),
        "images must hold one list per prompt (2 prompt(s)), images[i] being the images of prompts[i]",
    ),
    (
        "encode_batch: images not in lists",
        lambda: encode_batch(tiny_processor(), ["<image>"], [IMAGE]),
        "images must hold one list per prompt (1 prompt(s))",
    ),
    (
        "encode_batch: more images than placeholders",
        lambda: encode_batch(tiny_processor(), ["<image>"], [[IMAGE, IMAGE]]),
        "prompt 0 has 1 <image> and 0 <video> placeholders but 2 images and 0 videos were given",
    ),
    (
        "tokenize_like_llava: placeholders vs media",
        lambda: tokenize_like_llava(tiny_processor().tokenizer, "<image> <image>", [[4]]),
        "the prompt has 2 media placeholders but 1 images/videos were given",
    ),
    (
        "get_template: None",
        lambda: get_template(None),
        "unknown conversation template None; available: llava_v1, plain, v1, vicuna_v1",
    ),
    ("get_template: a list", lambda: get_template(["v1"]), "unknown conversation template ['v1']"),
    ("get_template: unknown", lambda: get_template("vicuna"), "unknown conversation template 'vicuna'"),
    (
        "single_turn: None",
        lambda: get_template("v1").single_turn(None),
        "question must be a non-empty string, got None",
    ),
    ("single_turn: empty", lambda: get_template("v1").single_turn(""), "question must be a non-empty string, got ''"),
    (
        "single_turn: a number",
        lambda: get_template("v1").single_turn(42),
        "question must be a non-empty string, got 42",
    ),
    (
        "prompt: a string",
        lambda: get_template("v1").prompt("USER: hi"),
        "messages must be a list of (role, message or None) pairs",
    ),
    (
        "prompt: a message not text",
        lambda: get_template("v1").prompt([("USER", 5)]),
        "messages must be a list of (role, message or None) pairs",
    ),
    (
        "pixels_to_image: a batch",
        lambda: pixels_to_image(torch.zeros(1, 3, 4, 4), [0.5] * 3, [0.5] * 3),
        "pixel_values must be one image as a [3, H, W] tensor (e.g. inputs.pixel_values[0]), got (1, 3, 4, 4)",
    ),
    (
        "pixels_to_image: a list",
        lambda: pixels_to_image([[0.0]], [0.5] * 3, [0.5] * 3),
        "pixel_values must be one image as a [3, H, W] tensor",
    ),
    (
        "pixels_to_image: two means",
        lambda: pixels_to_image(torch.zeros(3, 4, 4), [0.5, 0.5], [0.5] * 3),
        "mean must be 3 finite numbers (one per colour channel), got [0.5, 0.5]",
    ),
    (
        "pixels_to_image: a zero std",
        lambda: pixels_to_image(torch.zeros(3, 4, 4), [0.5] * 3, [0.5, 0.0, 0.5]),
        "std must be non-zero for every channel",
    ),
    (
        "draw_kept_patches: a grid of 0 rows",
        lambda: draw_kept_patches(IMAGE, (0, 4), [], []),
        "grid must be (rows, cols), two integers >= 1, got (0, 4)",
    ),
    (
        "draw_kept_patches: a grid of floats",
        lambda: draw_kept_patches(IMAGE, (4.0, 4), [], []),
        "grid must be (rows, cols), two integers >= 1, got (4.0, 4)",
    ),
    (
        "draw_kept_patches: an index past the grid",
        lambda: draw_kept_patches(IMAGE, (4, 4), [16], []),
        "important must hold patch indices in 0..15 (raster order over the grid), got [16]",
    ),
    (
        "draw_kept_patches: a negative index",
        lambda: draw_kept_patches(IMAGE, (4, 4), [], [-1]),
        "diverse must hold patch indices in 0..15 (raster order over the grid), got [-1]",
    ),
    (
        "draw_kept_patches: not a picture",
        lambda: draw_kept_patches(torch.zeros(3, 4, 4), (4, 4), [], []),
        "image must be a PIL image, got Tensor",
    ),
    (
        "side_by_side: no panels",
        lambda: side_by_side([]),
        "panels must be a non-empty list of (caption, PIL image) pairs",
    ),
    (
        "side_by_side: a tensor panel",
        lambda: side_by_side([("a", torch.zeros(3, 4, 4))]),
        "panels must be a non-empty list of (caption, PIL image) pairs",
    ),
]


@pytest.mark.parametrize("case, call, fragment", OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_prompting_conversation_and_pictures_refuse(case, call, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        call()


def test_support_matrix_takes_no_arguments():
    with pytest.raises(TypeError, match="positional argument"):
        llava.support_matrix("vispruner")


def test_prumerge_plus_at_one_token_keeps_every_patch_weighted_by_attention():
    """T = 1 is the extra token alone: the [CLS]-attention-weighted sum of all patches."""
    from llava.pruning.base import LayerProjections, VisionFeatures
    from llava.pruning.prumerge import PruMergePlus, cls_attention

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 9, 6, generator=generator)
    projections = LayerProjections(
        torch.randn(2, 6, generator=generator), torch.randn(2, 10, 6, generator=generator), 2
    )
    vision = VisionFeatures(features, (3, 3), next_projections=projections)
    attention = cls_attention(projections, 6)
    merged = PruMergePlus(1).reduce(vision)
    assert merged.shape == (2, 1, 6)
    assert torch.allclose(merged[:, 0], (attention[..., None] * features).sum(dim=1), atol=1e-6)


def test_pictures_take_indices_as_the_trace_holds_them():
    """Pictures of kept patches accept numpy indices and tensors as the trace holds them."""
    picture = draw_kept_patches(IMAGE, (8, 8), torch.tensor([0, 63]), np.array([5]))
    assert picture.size == IMAGE.size
    assert isinstance(pixels_to_image(torch.zeros(3, 4, 4), [0.5] * 3, [0.5] * 3), Image.Image)
