"""Issue 20: each method's options refused with the argument, its value and what is allowed, before any
work starts; every method at edge budgets (1, N-1, N, N+1) runs as documented or is refused when
applied; Video-LLaVA's even split of small totals. Shared models and checks: bad_inputs.py."""

from __future__ import annotations

import functools
import math
import re

import pytest
import torch

import llava
from bad_inputs import FRAMES, apply, earlier_state, inputs_of, logits, model_of, nothing_runs, pruned_with
from llava.pruning import create_pruner, list_methods
from llava.pruning.pool import pooled_grid
from llava.testing import build_tiny_llava
from support import PROMPT, shapes_image

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
