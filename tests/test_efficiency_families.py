"""The exact FLOPs accounting of every family against torch's FlopCounterMode on tiny models.

Each family's tiny model (llava.testing's builders; Qwen3-VL, Gemma 3 and SmolVLM built here from
their configs) runs one prompt with one image under the counter, unpruned and, where this package
prunes the family, with VisPruner and FastV; `prefill_flops` must give the same total. Both count
matrix multiplies only (softmax, norms, pooling, interpolation are free for both), so the totals
agree exactly; the tolerance below only absorbs a counter formula that rounds.
"""

from __future__ import annotations

import pytest
import torch

import llava
from efficiency.flops import flop_counter, prefill_flops
from efficiency.shapes import PromptLayout
from family_helpers import onevision_processor, random_image
from llava.models import HOSTS
from llava.models.llava_next import pin_paper_resolution
from llava.testing import (
    build_family_tokenizer,
    build_tiny_internvl,
    build_tiny_llava_next,
    build_tiny_llava_onevision,
    build_tiny_qwen2_vl,
    internvl_image_text,
)

TEXT_LAYERS = 3
OPTIONS = {"fastv": {"layer": 2}}  # FastV's pruning layer must fit 3 decoder layers
BUDGET = 8
TOLERANCE = 1e-9  # the counter and the accounting are both integer sums of the same products


def _ids(tokenizer, text: str) -> dict:
    return dict(tokenizer([text], return_tensors="pt"))


PROMPT = "USER: <image>\nWhat is it? ASSISTANT:"


def llava_next_case(layout: str = "native"):
    """An image cut into base + 2x2 tiles (unpadded map, newlines), or the paper's pinned 5 crops."""
    model, processor = build_tiny_llava_next(text_layers=TEXT_LAYERS)
    if layout == "paper":
        pin_paper_resolution(processor)
    inputs = processor(images=[random_image(60, 40, 1)], text=[PROMPT], return_tensors="pt")
    return model, dict(inputs), {"image_size": (40, 60), "layout": layout}


def llava_onevision_case(aspect_ratio: str = "anyres_max_9"):
    """anyres_max_9: the map as it is; anyres_max_1: a 3x3-tile map the stock model shrinks after projecting."""
    model, image_processor, tokenizer = build_tiny_llava_onevision(text_layers=TEXT_LAYERS)
    model.config.vision_aspect_ratio = aspect_ratio
    processor = onevision_processor(image_processor, tokenizer, aspect_ratio=aspect_ratio)
    size = (40, 60) if aspect_ratio == "anyres_max_9" else (96, 96)
    inputs = processor(images=[random_image(size[1], size[0], 2)], text=[PROMPT], return_tensors="pt")
    return model, dict(inputs), {"image_size": size}


def qwen_case(version: str):
    model, image_processor, tokenizer = build_tiny_qwen2_vl(version, text_layers=TEXT_LAYERS)
    pixels = image_processor([random_image(120, 90, 3)], return_tensors="pt")
    grid = pixels.image_grid_thw[0]
    count = int(grid.prod()) // 4
    inputs = _ids(tokenizer, f"USER: <|vision_start|>{'<|image_pad|>' * count}<|vision_end|> What is it? ASSISTANT:")
    ids = inputs["input_ids"]
    inputs["mm_token_type_ids"] = (ids == model.config.image_token_id).int()
    inputs.update(pixel_values=pixels.pixel_values, image_grid_thw=pixels.image_grid_thw)
    patch = model.config.vision_config.patch_size
    return model, inputs, {"image_size": (int(grid[1]) * patch, int(grid[2]) * patch)}


def internvl_case():
    model, image_processor, tokenizer = build_tiny_internvl(text_layers=TEXT_LAYERS)
    vision = image_processor([random_image(896, 448, 4)], return_tensors="pt")
    tiles = int(vision.num_patches[0])
    inputs = _ids(tokenizer, f"USER: {internvl_image_text(model, tiles)}\nWhat is it? ASSISTANT:")
    inputs["pixel_values"] = vision.pixel_values
    return model, inputs, {"tiles": tiles}


def _tiny_text(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=TEXT_LAYERS,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                pad_token_id=tokenizer.pad_token_id)  # fmt: skip


def _finished(model, tokenizer):
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def qwen3_vl_case():
    """Qwen3-VL: 16-px patches, learned position embeddings, deepstack mergers after two blocks."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tokenizer = build_family_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(f"<|{token}|>") for name, token in
           [("image_token_id", "image_pad"), ("video_token_id", "video_pad"),
            ("vision_start_token_id", "vision_start"), ("vision_end_token_id", "vision_end")]}  # fmt: skip
    text = {**_tiny_text(tokenizer), "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                         "mrope_section": [2, 3, 3]}}  # fmt: skip
    vision = dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=64, patch_size=16,
                  num_position_embeddings=64, deepstack_visual_indexes=[0, 1])  # fmt: skip
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(text_config=text, vision_config=vision, **ids))
    grid = torch.tensor([[1, 6, 8]])  # 96 x 128 px: 48 patches, 12 merged tokens
    pixels = torch.randn(int(grid.prod()), 3 * 2 * 16 * 16, generator=torch.Generator().manual_seed(5))
    count = int(grid.prod()) // 4
    inputs = _ids(tokenizer, f"USER: <|vision_start|>{'<|image_pad|>' * count}<|vision_end|> What is it? ASSISTANT:")
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == ids["image_token_id"]).int()
    inputs.update(pixel_values=pixels, image_grid_thw=grid)
    return _finished(model, tokenizer), inputs, {"image_size": (96, 128)}


def gemma3_case():
    """Gemma 3: SigLIP at 64 px (64 patches) average-pooled to 16 tokens; sliding-window layers."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig

    tokenizer = build_family_tokenizer()
    tokenizer.add_tokens(["<start_of_image>", "<end_of_image>"], special_tokens=True)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    text = {**_tiny_text(tokenizer), "sliding_window": 16, "layer_types": ["sliding_attention", "sliding_attention",
                                                                          "full_attention"]}  # fmt: skip
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                                image_size=64, patch_size=8, vision_use_head=False)  # fmt: skip
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=16, image_token_index=image_id,
                          boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
                          eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"))  # fmt: skip
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config)
    inputs = _ids(tokenizer, f"USER:\n\n<start_of_image>{'<image>' * 16}<end_of_image>\n\nWhat is it? ASSISTANT:")
    inputs["token_type_ids"] = (inputs["input_ids"] == image_id).long()
    inputs["pixel_values"] = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    return _finished(model, tokenizer), inputs, {}


def smolvlm_case():
    """SmolVLM: 2x2 crops of 64 px and the global crop, each pixel-shuffled by 2 to 16 tokens."""
    from transformers import LlamaConfig, SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMVisionConfig

    tokenizer = build_family_tokenizer()
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    text = _tiny_text(tokenizer)
    vision = SmolVLMVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                                 image_size=64, patch_size=8)  # fmt: skip
    config = SmolVLMConfig(vision_config=vision, text_config=LlamaConfig(**text), image_token_id=image_id,
                           scale_factor=2)  # fmt: skip
    torch.manual_seed(0)
    model = SmolVLMForConditionalGeneration(config)
    crops = "".join(f"<s><unk>{'<image>' * 16}" for _ in range(5))  # stand-ins for each crop's two marker tokens
    inputs = _ids(tokenizer, f"USER: {crops}<s>\n\nWhat is it? ASSISTANT:")
    inputs["pixel_values"] = torch.randn(1, 5, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    return _finished(model, tokenizer), inputs, {"image_size": (128, 128)}


CASES = {
    "llava-next": llava_next_case,
    "llava-next-paper": lambda: llava_next_case("paper"),
    "llava-onevision": llava_onevision_case,
    "llava-onevision-shrunk": lambda: llava_onevision_case("anyres_max_1"),
    "qwen2-vl": lambda: qwen_case("2"),
    "qwen2.5-vl": lambda: qwen_case("2.5"),
    "qwen3-vl": qwen3_vl_case,
    "internvl": internvl_case,
    "gemma3": gemma3_case,
    "smolvlm": smolvlm_case,
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    return CASES[request.param]()


def counted(model, inputs: dict) -> int:
    with torch.inference_mode(), flop_counter() as counter:
        model(**inputs, logits_to_keep=1)
    return counter.get_total_flops()


def prompt_of(model, inputs: dict, placeholder_id: int, cost_images: int, markers: int) -> PromptLayout:
    """The text tokens of the prompt: all but its image placeholders and the family's image markers."""
    ids = inputs["input_ids"][0]
    visual = int((ids == placeholder_id).sum())
    return PromptLayout(before=ids.numel() - visual - cost_images * markers, after=0)


def is_pruned_here(model) -> bool:
    """Whether this checkout prunes the model's class (Qwen3-VL, Gemma 3 and SmolVLM hosts are being added)."""
    return any(f"{cls.__module__}.{cls.__qualname__}" in HOSTS for cls in type(model).__mro__)


@pytest.mark.parametrize("method", ["none", "vispruner", "fastv"])
def test_family_flops_match_the_flop_counter(case, method):
    from efficiency.flops_families import describe

    model, inputs, geometry = case
    if method != "none" and not is_pruned_here(model):
        pytest.skip(f"no pruning host for {type(model).__name__} in this checkout")
    markers = describe(model.config, **geometry).markers
    prompt = prompt_of(model, inputs, model.config.image_token_id, 1, markers)
    options = OPTIONS.get(method, {})
    host_options = {"layout": geometry["layout"]} if "layout" in geometry else {}
    budget = None if method == "none" else BUDGET
    if method == "none":
        found = counted(model, inputs)
    else:
        llava.apply_pruning(model, method, budget, **options, **host_options)
        try:
            found = counted(model, inputs)
        finally:
            llava.remove_pruning(model)
    expected = prefill_flops(model.config, method, budget, prompt=prompt, **geometry, **options)
    assert expected.total == pytest.approx(found, rel=TOLERANCE), (method, expected.as_dict(), found)
