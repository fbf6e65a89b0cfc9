"""The shared part of the bad-input tests (test_bad_inputs_*.py): the tiny models of each LLaVA-style
family built once per test process, a batch of two left-padded prompts for each, the earlier pruning
every table case starts from, and the checks that nothing ran and nothing changed."""

from __future__ import annotations

import functools
from contextlib import contextmanager

import torch

import llava
from family_helpers import onevision_processor, random_image
from llava.models import HOSTS
from llava.testing import (
    build_tiny_llava,
    build_tiny_llava_next,
    build_tiny_llava_next_video,
    build_tiny_llava_onevision,
    build_tiny_qwen2_vl,
    build_tiny_video_llava,
)
from support import LONG_PROMPT, PROMPT, shapes_image

SIZE = 112  # LLaVA: 8 x 8 patches of 14 px
FRAMES = 4  # frames per video of the video families' batches
TEXT = 5  # a plain text token id of the tiny tokenizers (ids 0-4 are special)

# --- the tiny models, built once per process, and a batch of two left-padded prompts for each ----------

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


def apply(*args, **kwargs):
    return lambda model: llava.apply_pruning(model, *args, **kwargs)


CLASSES = ", ".join(sorted(path.rsplit(".", 1)[1] for path in HOSTS))  # what the messages list
SUPPORTED = f"an instance of one of: {CLASSES}"


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


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


def assert_video_only_prompt_is_pruned(model, inputs: dict, count: int, method: str) -> None:
    """A prompt holding one video and no image (`count` video placeholders) is pruned by `method` to 3
    tokens in a forward call and in generate, and the language model sees the pruned length."""
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
