"""Turn prompts with `<image>` / `<video>` placeholders into model inputs the way original LLaVA does.

LLaVA (`tokenizer_image_token`) does not tokenize the prompt as one string: it splits it at each
placeholder, tokenizes every piece on its own (each piece gets the tokenizer's BOS, which is then
dropped except at the very start) and puts the image between the pieces. With SentencePiece Llama
tokenizers this changes the ids right after an image (the piece "\\nWhat ..." starts a new
sequence), so tokenizing the joined string would feed the model different ids than the paper did.

The number of placeholder ids each image needs comes from the processor itself
(`replace_image_token`), so every transformers processor family counts its own tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from transformers import BatchFeature

IMAGE = "<image>"
VIDEO = "<video>"
_PLACEHOLDER = re.compile(f"({re.escape(IMAGE)}|{re.escape(VIDEO)})")


def tokenize_like_llava(tokenizer, prompt: str, media_ids: Sequence[list[int]]) -> list[int]:
    """Ids of `prompt` with the i-th placeholder replaced by `media_ids[i]`, pieces tokenized separately."""
    pieces = _PLACEHOLDER.split(prompt)[::2]
    if len(pieces) - 1 != len(media_ids):
        raise ValueError(
            f"the prompt has {len(pieces) - 1} media placeholders but {len(media_ids)} images/videos were given"
        )
    encoded = [tokenizer(piece).input_ids for piece in pieces]
    bos = tokenizer.bos_token_id
    starts_with_bos = bos is not None and len(encoded[0]) > 0 and encoded[0][0] == bos
    skip = 1 if starts_with_bos else 0
    ids = [bos] if starts_with_bos else []
    for i, piece in enumerate(encoded):
        if i:
            ids.extend(media_ids[i - 1])
        ids.extend(piece[skip:])
    return ids


def encode_batch(
    processor,
    prompts: Sequence[str],
    images: Sequence[Sequence] = (),
    videos: Sequence[Sequence] = (),
    image_kwargs: dict | None = None,
) -> BatchFeature:
    """Left-padded `input_ids`/`attention_mask` plus the processor's pixel inputs for a batch.

    images[i] / videos[i] are the images / videos of prompts[i], in placeholder order.
    """
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompts must be a non-empty list of strings, got {_short(prompts)}")
    tokenizer = processor.tokenizer
    images = _per_prompt(images, "images", len(prompts))
    videos = _per_prompt(videos, "videos", len(prompts))
    for row, (prompt, prompt_images, prompt_videos) in enumerate(zip(prompts, images, videos)):
        placeholders = _PLACEHOLDER.findall(prompt)  # checked before any image is processed
        if placeholders.count(IMAGE) != len(prompt_images) or placeholders.count(VIDEO) != len(prompt_videos):
            raise ValueError(
                f"prompt {row} has {placeholders.count(IMAGE)} {IMAGE} and {placeholders.count(VIDEO)} {VIDEO} "
                f"placeholders but {len(prompt_images)} images and {len(prompt_videos)} videos were given"
            )
    flat_images = [image for group in images for image in group]
    flat_videos = [video for group in videos for video in group]
    if flat_videos and getattr(processor, "video_processor", None) is None:
        raise ValueError(f"{type(processor).__name__} has no video processor: this model takes no videos")
    features: dict = {}
    if flat_images:
        features.update(processor.image_processor(flat_images, return_tensors="pt", **(image_kwargs or {})))
    if flat_videos:
        features.update(processor.video_processor(flat_videos, return_tensors="pt"))

    sequences = []
    next_image = next_video = 0
    for prompt in prompts:
        placeholders = _PLACEHOLDER.findall(prompt)
        media = []
        for placeholder in placeholders:
            if placeholder == IMAGE:
                text = processor.replace_image_token(features, next_image)
                next_image += 1
            else:
                text = processor.replace_video_token(features, next_video)
                next_video += 1
            media.append(tokenizer(text, add_special_tokens=False).input_ids)
        sequences.append(tokenize_like_llava(tokenizer, prompt, media))
    features.update(left_pad(sequences, _pad_id(tokenizer)))
    return BatchFeature(features)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _per_prompt(groups, name: str, count: int) -> list[list]:
    """`groups` (one list per prompt; empty for none at all) checked against the prompt count."""
    groups = list(groups)
    if not groups:
        return [[] for _ in range(count)]
    if len(groups) != count or not all(isinstance(g, (list, tuple)) for g in groups):
        raise ValueError(
            f"{name} must hold one list per prompt ({count} prompt(s)), {name}[i] being the {name} of prompts[i], "
            f"got {_short(groups)}"
        )
    return [list(g) for g in groups]


def left_pad(sequences: Sequence[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    raise ValueError("the tokenizer has no pad, unk or eos token to pad a batch with")
