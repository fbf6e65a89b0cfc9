"""Small LLaVA-architecture models built from configs, offline, for tests, the demo and benchmarks.

They travel the exact code path of LLaVA-1.5 (`LlavaForConditionalGeneration`, a CLIP vision tower
with [CLS], a 2-layer MLP projector, a Llama language model, `LlavaProcessor`) with random weights.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
_CORPUS = [
    "USER: <image>\nWhat is shown in the image? ASSISTANT: a red circle and a blue square.",
    "Is there a green triangle? Answer with yes or no. yes no",
    "How many objects are there? one two three four five six. What colour is the star? left right top bottom",
]


def build_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with an `<image>` token, trained on a few sentences."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
    )


def clip_image_processor(image_size: int) -> CLIPImageProcessorPil:
    """CLIP preprocessing (resize the short side, centre-crop, CLIP statistics) at `image_size` px."""
    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )


def build_tiny_llava(
    image_size: int = 336,
    patch_size: int = 14,
    vision_hidden: int = 64,
    vision_layers: int = 4,
    text_hidden: int = 64,
    text_layers: int = 2,
    seed: int = 0,
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A random-weight LLaVA-1.5-shaped model (feature layer -2, [CLS] dropped) and its processor."""
    tokenizer = build_tokenizer()
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=vision_hidden,
            intermediate_size=4 * vision_hidden,
            num_hidden_layers=vision_layers,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=patch_size,
            projection_dim=vision_hidden,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_hidden,
            intermediate_size=2 * text_hidden,
            num_hidden_layers=text_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = clip_image_processor(image_size)
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    return model, processor
