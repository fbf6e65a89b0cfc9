"""Issue 20 (library half): bad inputs to apply_pruning / attach_pruner and remove_pruning, and what
copies, pickles and saved checkpoints of pruned models hold.

Every bad input is refused before any work starts (no module of the model runs, no weight is read, no
file is written), with an error naming the argument, its value and what is allowed, and the model is
left exactly as it was (an earlier pruning, its config and its trace included). Each table is (case,
call, error type, message fragment), so `pytest --collect-only` counts the cases. The other entry
points are in test_bad_inputs_methods.py, _hosts.py, _loading.py and _prompting.py; the shared models
and checks in bad_inputs.py.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import re

import pytest
import torch

import llava
from bad_inputs import (
    BUILDERS,
    CLASSES,
    FAMILIES,
    SUPPORTED,
    apply,
    earlier_state,
    family,
    inputs_of,
    logits,
    model_of,
    nothing_runs,
    pruned_with,
)
from family_helpers import random_image
from llava.models.llava_next import pin_paper_resolution
from llava.pruning import create_pruner

# ======================================================================================================
# apply_pruning / attach_pruner
# ======================================================================================================


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
