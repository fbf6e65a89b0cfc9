"""Every supported family: one switch, clear errors, exact removal."""

import pytest
from transformers import LlamaConfig, LlamaForCausalLM

import llava
from llava.models import HOSTS
from llava.pruning import METHODS, LanguageModelPruner, VisionTokenPruner
from llava.testing import (
    build_tiny_gemma3,
    build_tiny_internvl,
    build_tiny_llava,
    build_tiny_llava_next,
    build_tiny_llava_next_video,
    build_tiny_llava_onevision,
    build_tiny_qwen2_vl,
    build_tiny_qwen3_vl,
    build_tiny_video_llava,
)
from llava.testing.smolvlm import build_tiny_idefics3, build_tiny_smolvlm

BUILDERS = {
    "internvl": build_tiny_internvl,
    "llava_next": build_tiny_llava_next,
    "video_llava": build_tiny_video_llava,
    "llava_next_video": build_tiny_llava_next_video,
    "llava_onevision": build_tiny_llava_onevision,
    "qwen2_vl": lambda: build_tiny_qwen2_vl("2"),
    "qwen2_5_vl": lambda: build_tiny_qwen2_vl("2.5"),
    "qwen3_vl": build_tiny_qwen3_vl,
    "qwen3_vl_moe": lambda: build_tiny_qwen3_vl(moe=True),
    "gemma3": build_tiny_gemma3,
    "smolvlm": build_tiny_smolvlm,
    "idefics3": build_tiny_idefics3,
}


class NeedsText(VisionTokenPruner):
    name = "test_needs_text"
    requires = frozenset({"importance", "text_attention"})

    def select(self, vision):  # a selecting method, so every family reaches the signal check
        raise AssertionError("never reached: the signal check refuses the method first")


def test_unsupported_classes_are_named_with_every_supported_one():
    text_only = LlamaForCausalLM(
        LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=32)
    )
    with pytest.raises(ValueError) as error:
        llava.apply_pruning(text_only)
    message = str(error.value)
    assert "LlamaForCausalLM" in message
    for name in HOSTS:
        assert name.rsplit(".", 1)[1] in message
    assert len(HOSTS) == 13


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_a_method_needing_an_unavailable_signal_is_refused_and_removal_is_exact(family, monkeypatch):
    model = BUILDERS[family]()[0]
    monkeypatch.setitem(METHODS, NeedsText.name, NeedsText)
    with pytest.raises(ValueError, match="needs text_attention"):
        llava.apply_pruning(model, NeedsText.name, 4)
    assert "forward" not in model.__dict__
    llava.apply_pruning(model, "vispruner", 4)
    assert {"forward", "generate", "pruning_config"} <= set(model.__dict__)
    assert "get_image_features" in model.model.__dict__
    llava.remove_pruning(model)
    assert not {"forward", "generate", "pruning_config"} & set(model.__dict__)
    assert "get_image_features" not in model.model.__dict__ and "get_video_features" not in model.model.__dict__


class VisionSideNeedsQuestion(VisionTokenPruner):
    name = "test_vision_side_needs_question"
    requires = frozenset({"question"})


class InsideNeedsClsAttention(LanguageModelPruner):
    name = "test_inside_needs_cls_attention"
    requires = frozenset({"cls_attention"})


@pytest.mark.parametrize("pruner", [VisionSideNeedsQuestion, InsideNeedsClsAttention])
def test_each_side_gets_only_its_own_signals(pruner, monkeypatch):
    """The question is read inside the language model and [CLS] attention in the encoder: a method on
    the other side would receive nothing, so LLaVA-1.5's host refuses it, naming the side."""
    model = build_tiny_llava(image_size=56, vision_layers=2)[0]
    monkeypatch.setitem(METHODS, pruner.name, pruner)
    (needed,) = pruner.requires
    with pytest.raises(ValueError, match=f"needs {needed}, which .* (before|inside) its language model"):
        llava.apply_pruning(model, pruner.name, 4)
    assert "forward" not in model.__dict__


def test_the_readme_names_every_supported_class_and_the_checkpoints_it_was_written_for():
    from support import REPO

    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Model families") : readme.index("## Support matrix")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`" in line]
    for path in HOSTS:
        name = path.rsplit(".", 1)[1]
        row = next((line for line in rows if f"`{name}`" in line), None)
        assert row is not None, f"README's model-family table does not name {name}"
        assert "/" in row.split("|")[3], f"README names no checkpoint {name} was written for"
