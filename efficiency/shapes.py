"""Model shapes the efficiency tools measure, and random-weight models of those shapes built fast.

Speed and FLOPs depend on the shapes, not on the weights, so every shape here is a `LlavaConfig`
(CLIP vision tower, two-layer projector, Llama decoder) plus the number of images (crops) a prompt
carries. LLaVA-NeXT-7B is measured in the paper's setting (a 672 x 672 grid: the base image and 4
crops, each 576 tokens, 2880 in all, no unpadding or newline tokens): the same compute as LLaVA-1.5
with 5 images in one prompt, which is how it is modelled here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and transformers are imported where used: the command lines answer --help at once
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

# LLaVA-1.5's CLIP ViT-L/14-336 tower and Vicuna-7B decoder.
CLIP_L_336 = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
)
VICUNA_7B = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    vocab_size=32064,
)


@dataclass(frozen=True)
class PromptLayout:
    """Text tokens around the image placeholders of one prompt.

    The default approximates LLaVA-1.5's vicuna_v1 prompt for a POPE question: the system prompt and
    "USER: " before the image (about 35 Llama tokens), the question, the answer instruction and
    " ASSISTANT:" after it (about 29)."""

    before: int = 35
    after: int = 29

    @property
    def text_tokens(self) -> int:
        return self.before + self.after


POPE_PROMPT = PromptLayout()


@dataclass(frozen=True)
class Shape:
    name: str
    config: LlavaConfig
    images: int  # images (crops) per prompt
    description: str

    @property
    def patches_per_image(self) -> int:
        vision = self.config.vision_config
        return (vision.image_size // vision.patch_size) ** 2


def llava_config(vision: dict, text: dict, image_token_id: int | None = None) -> LlavaConfig:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    text = {"max_position_embeddings": 4096, **text}
    return LlavaConfig(
        vision_config=CLIPVisionConfig(projection_dim=vision["hidden_size"], **vision),
        text_config=LlamaConfig(**text),
        image_token_id=text["vocab_size"] - 1 if image_token_id is None else image_token_id,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )


def shape(name: str) -> Shape:
    """A named shape: llava-1.5-7b, llava-next-7b, cpu-small (for a CPU) or tiny (smoke tests)."""
    if name == "llava-1.5-7b":
        return Shape(
            name,
            llava_config(CLIP_L_336, VICUNA_7B, image_token_id=32000),
            1,
            "LLaVA-1.5-7B: CLIP ViT-L/14-336 (24 layers, 576 tokens) + Vicuna-7B (32 layers, 4096)",
        )
    if name == "llava-next-7b":
        return Shape(
            name,
            llava_config(CLIP_L_336, VICUNA_7B, image_token_id=32000),
            5,
            "LLaVA-NeXT-7B, paper setting: 5 crops x 576 tokens = 2880, CLIP ViT-L/14-336 + Vicuna-7B",
        )
    if name == "cpu-small":
        # 576 tokens per image as in LLaVA-1.5, and about its split of FLOPs between tower and decoder
        # (the tower is ~4 % of the unpruned prefill), at ~1/300 of its cost.
        vision = dict(
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=336,
            patch_size=14,
        )
        text = dict(
            hidden_size=448,
            intermediate_size=1216,
            num_hidden_layers=8,
            num_attention_heads=7,
            num_key_value_heads=7,
            vocab_size=32064,
        )
        return Shape(
            name,
            llava_config(vision, text),
            1,
            "scaled down for a CPU: CLIP 336 px / 14 (576 tokens, 3 layers, 128 wide) + Llama 8 layers, 448 wide",
        )
    if name == "tiny":
        vision = dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=112,
            patch_size=14,
        )
        text = dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=320,
        )
        return Shape(name, llava_config(vision, text), 1, "tiny smoke-test shape: 64 tokens per image")
    raise ValueError(f"unknown shape {name!r}; available: {', '.join(SHAPES)}")


SHAPES = ("llava-1.5-7b", "llava-next-7b", "cpu-small", "tiny")


def build_model(
    config: LlavaConfig, device: torch.device, dtype: torch.dtype, attn_implementation: str = "sdpa", seed: int = 0
) -> LlavaForConditionalGeneration:
    """A random-weight model allocated directly on `device` in `dtype`, without transformers' slow init.

    Parameters are allocated uninitialised on the device, then filled in place: matrices and
    embeddings from N(0, initializer_range), norm weights with 1, biases with 0 (finite, ordinary
    values: uninitialised memory could hold NaNs or denormals, which slow CPUs down)."""
    import torch
    from torch import nn
    from transformers import LlavaForConditionalGeneration
    from transformers.initialization import no_init_weights

    with no_init_weights(), torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    generator = torch.Generator(device=device).manual_seed(seed)
    std = config.text_config.initializer_range
    with torch.no_grad():
        for module in model.modules():
            is_norm = isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")
            for name, parameter in module.named_parameters(recurse=False):
                if name == "bias":
                    parameter.zero_()
                elif is_norm:
                    parameter.fill_(1.0)
                else:
                    parameter.normal_(0.0, std, generator=generator)
    model.generation_config.pad_token_id = 0
    return model.eval()
