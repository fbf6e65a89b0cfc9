"""Small random-weight models of every supported family, built from configs offline.

For tests, examples and benchmarks: each is the real transformers class with a tiny vision tower and
language model, so it travels the same code path as the full-size checkpoint.

>>> from llava.testing import build_tiny_llava
>>> model, processor = build_tiny_llava(image_size=112)
"""

from .families import (
    build_family_tokenizer,
    build_tiny_internvl,
    build_tiny_llava_next,
    build_tiny_llava_next_video,
    build_tiny_llava_onevision,
    build_tiny_qwen2_vl,
    build_tiny_video_llava,
    internvl_image_text,
)
from .gemma3 import build_tiny_gemma3
from .qwen3_vl import build_tiny_qwen3_vl as build_tiny_qwen3_vl
from .smolvlm import build_tiny_idefics3, build_tiny_smolvlm, smolvlm_image_text, smolvlm_video_text  # noqa: F401
from .tiny import CLIP_MEAN, CLIP_STD, build_tiny_llava, build_tokenizer, clip_image_processor

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "build_family_tokenizer",
    "build_tiny_gemma3",
    "build_tiny_internvl",
    "build_tiny_llava",
    "build_tiny_llava_next",
    "build_tiny_llava_next_video",
    "build_tiny_llava_onevision",
    "build_tiny_qwen2_vl",
    "build_tiny_video_llava",
    "build_tokenizer",
    "clip_image_processor",
    "internvl_image_text",
]
