"""Real-shaped configs of the newer families for `python -m efficiency.flops exact --model NAME`.

The shapes are the published config.json values of each checkpoint (widths, depths, heads, vocabulary,
resolution), written out here because no weights or configs can be downloaded where this runs; FLOPs
depend on nothing else. `--config path/to/config.json` reads a downloaded one instead. Each preset
also says what one image is (its size, or InternVL's tiles) at the setting the docs' table reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16)
QWEN2_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                num_key_value_heads=4)  # fmt: skip
COCO_IMAGE = (480, 640)  # (height, width) of a typical COCO / POPE image


@dataclass(frozen=True)
class Preset:
    """A model's config builder and the image geometry `prefill_flops` takes (image_size, tiles, layout)."""

    build: object
    description: str
    geometry: dict = field(default_factory=dict)

    @property
    def config(self):
        return self.build()


def qwen2_5_vl_7b():
    from transformers import Qwen2_5_VLConfig

    text = {**QWEN2_7B, "vocab_size": 152064}
    vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                  patch_size=14, window_size=112, fullatt_block_indexes=[7, 15, 23, 31])  # fmt: skip
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision)


def qwen3_vl_8b():
    from transformers import Qwen3VLConfig

    text = dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, vocab_size=151936)  # fmt: skip
    vision = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
                  patch_size=16, num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24])  # fmt: skip
    return Qwen3VLConfig(text_config=text, vision_config=vision)


def internvl3_8b():
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    vision = InternVLVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                  image_size=[448, 448], patch_size=[14, 14], use_qk_norm=False)  # fmt: skip
    return InternVLConfig(vision_config=vision, text_config=Qwen2Config(**QWEN2_7B, vocab_size=151674),
                          downsample_ratio=0.5, vision_feature_layer=-1)  # fmt: skip


def llava_onevision_7b():
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    tile = 384
    pinpoints = [[tile * rows, tile * cols] for rows in range(1, 7) for cols in range(1, 7)]
    vision = SiglipVisionConfig(**{**SIGLIP_SO400M, "num_hidden_layers": 26}, image_size=tile, patch_size=14,
                                vision_use_head=False)  # fmt: skip
    return LlavaOnevisionConfig(vision_config=vision, text_config=Qwen2Config(**QWEN2_7B, vocab_size=152128),
                                image_grid_pinpoints=pinpoints, vision_feature_layer=-1,
                                vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")  # fmt: skip


def gemma3_4b():
    from transformers import Gemma3Config, SiglipVisionConfig

    text = dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
                num_key_value_heads=4, head_dim=256, vocab_size=262208, sliding_window=1024)  # fmt: skip
    vision = SiglipVisionConfig(**SIGLIP_SO400M, image_size=896, patch_size=14, vision_use_head=False)
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=256)


def smolvlm_instruct():
    from transformers import Idefics3Config, Idefics3VisionConfig, LlamaConfig

    vision = Idefics3VisionConfig(**SIGLIP_SO400M, image_size=384, patch_size=14)
    text = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=49155)  # fmt: skip
    return Idefics3Config(vision_config=vision, text_config=text, scale_factor=3)


SMOLVLM_RESIZED = (1152, 1536)  # a 480 x 640 image after the processor's resize (longest edge 4 x 384)
PRESETS = {
    "qwen2.5-vl-7b": Preset(
        qwen2_5_vl_7b, "Qwen2.5-VL-7B, one 448 x 448 image (256 tokens)", {"image_size": (448, 448)}
    ),
    "internvl3-8b": Preset(internvl3_8b, "InternVL3-8B, one 448 px tile (256 tokens)", {"tiles": 1}),
    "llava-onevision-7b": Preset(
        llava_onevision_7b, "LLaVA-OneVision-7B, one 640 x 480 image (anyres_max_9)", {"image_size": COCO_IMAGE}
    ),  # fmt: skip
    "qwen3-vl-8b": Preset(qwen3_vl_8b, "Qwen3-VL-8B, one 448 x 448 image (196 tokens)", {"image_size": (448, 448)}),
    "gemma-3-4b": Preset(gemma3_4b, "Gemma-3-4B, one 896 px image (256 tokens)"),
    "smolvlm-instruct": Preset(
        smolvlm_instruct,
        "SmolVLM-Instruct, a 640 x 480 image: 3 x 4 crops + global, 81 each",
        {"image_size": SMOLVLM_RESIZED},
    ),  # fmt: skip
}
