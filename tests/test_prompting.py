"""Conversation templates (exact strings) and LLaVA's piece-wise tokenization of prompts with images."""

import pytest
import torch
from tokenizers import processors

from llava.conversation import get_template
from llava.prompting import encode_batch, tokenize_like_llava
from llava.testing import build_tokenizer

VICUNA = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
LLAVA = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


def test_vicuna_v1_single_turn_is_the_llava_eval_prompt():
    prompt = get_template("vicuna_v1").single_turn(
        "<image>\nWhat is shown?\nAnswer the question using a single word or phrase."
    )
    assert prompt == (
        VICUNA + " USER: <image>\nWhat is shown?\nAnswer the question using a single word or phrase. ASSISTANT:"
    )
    assert get_template("v1") is get_template("vicuna_v1")


def test_llava_v1_and_plain_single_turn():
    assert get_template("llava_v1").single_turn("<image>\nQ?") == LLAVA + " USER: <image>\nQ? ASSISTANT:"
    assert get_template("plain").single_turn("<image>\nQ?") == "<image>\nQ?\n"


def test_multi_turn_uses_both_separators():
    template = get_template("vicuna_v1")
    text = template.prompt([("USER", "Hi"), ("ASSISTANT", "Hello."), ("USER", "Bye"), ("ASSISTANT", None)])
    assert text == VICUNA + " USER: Hi ASSISTANT: Hello.</s>USER: Bye ASSISTANT:"


def test_unknown_template_names_the_choices():
    with pytest.raises(ValueError, match="available: llava_v1, plain, v1, vicuna_v1"):
        get_template("chatml")


@pytest.fixture(scope="module")
def bos_tokenizer():
    tokenizer = build_tokenizer()
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)]
    )
    return tokenizer


def test_pieces_are_tokenized_separately_with_bos_kept_once(bos_tokenizer):
    tok = bos_tokenizer
    bos = tok.bos_token_id
    assert tok("What").input_ids[0] == bos
    ids = tokenize_like_llava(tok, "USER: <image>\nWhat<image>is", [[7, 7], [8]])
    pieces = [tok(p).input_ids[1:] for p in ("USER: ", "\nWhat", "is")]
    assert ids == [bos] + pieces[0] + [7, 7] + pieces[1] + [8] + pieces[2]
    assert ids != tok("USER: ").input_ids + [7, 7] + tok("\nWhatis", add_special_tokens=False).input_ids  # not joined
    assert tokenize_like_llava(tok, "<image>\nHi", [[7]]) == [bos, 7] + tok("\nHi").input_ids[1:]


def test_without_bos_pieces_are_concatenated():
    tok = build_tokenizer()
    ids = tokenize_like_llava(tok, "A <image> B", [[9]])
    assert ids == tok("A ").input_ids + [9] + tok(" B").input_ids


def test_placeholder_count_must_match(bos_tokenizer):
    with pytest.raises(ValueError, match="2 media placeholders but 1"):
        tokenize_like_llava(bos_tokenizer, "<image><image>", [[1]])


def test_encode_batch_left_pads_and_expands_each_image(tiny, images):
    model, processor = tiny
    image_id = model.config.image_token_id
    batch = encode_batch(
        processor, ["<image>\nWhat is shown?", "USER: <image> <image>\nHi"], [[images[0]], images[1:3]]
    )
    assert batch.pixel_values.shape[0] == 3
    per_image = 64  # 112 px / 8 px patches, [CLS] dropped
    counts = (batch.input_ids == image_id).sum(1).tolist()
    assert counts == [per_image, 2 * per_image]
    lengths = batch.attention_mask.sum(1)
    assert batch.attention_mask[0, : batch.input_ids.shape[1] - lengths[0]].sum() == 0  # left padding
    assert torch.all(batch.input_ids[batch.attention_mask == 0] == processor.tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="prompt 0 has 1 <image> and 0 <video> placeholders but 2 images"):
        encode_batch(processor, ["<image> only one"], [images[:2]])
    with pytest.raises(ValueError, match="prompt 0 has 2 <image>"):  # images never slide to another prompt
        encode_batch(processor, ["<image> <image>", "none here"], [images[:1], images[1:2]])


def test_videos_are_expanded_by_the_processor_and_reach_a_video_model():
    """The video branch with Video-LLaVA: transformers' video processors need torchvision, so frames go
    through the CLIP image processor here, and the token count comes from VideoLlavaProcessor's rule."""
    import functools
    from types import SimpleNamespace

    import numpy as np
    from transformers import (
        AddedToken,
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        VideoLlavaConfig,
        VideoLlavaForConditionalGeneration,  # fmt: skip
        VideoLlavaProcessor,
    )
    from transformers.image_processing_utils import BatchFeature

    from llava.testing import CLIP_MEAN, CLIP_STD

    tok = build_tokenizer()
    tok.add_tokens([AddedToken("<video>", special=True, normalized=False)], special_tokens=True)
    video_id = tok.convert_tokens_to_ids("<video>")
    config = VideoLlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, pad_token_id=tok.pad_token_id),
        image_token_id=tok.convert_tokens_to_ids("<image>"), video_token_id=video_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = VideoLlavaForConditionalGeneration(config).eval()
    clip = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=CLIP_MEAN, image_std=CLIP_STD
    )

    def video_processor(videos, return_tensors="pt"):
        return BatchFeature(
            {"pixel_values_videos": torch.stack([clip(list(v), return_tensors="pt").pixel_values for v in videos])}
        )

    counter = SimpleNamespace(patch_size=8, num_additional_image_tokens=1, video_token="<video>")
    processor = SimpleNamespace(tokenizer=tok, image_processor=clip, video_processor=video_processor,
                                replace_video_token=functools.partial(VideoLlavaProcessor.replace_video_token, counter))  # fmt: skip
    frames = np.random.default_rng(0).integers(0, 255, (8, 40, 48, 3), dtype=np.uint8)
    batch = encode_batch(
        processor, ["USER: <video>\nWhat? ASSISTANT:", "USER: <video>\nHi ASSISTANT:"], videos=[[frames], [frames]]
    )
    assert batch.pixel_values_videos.shape == (2, 8, 3, 32, 32)
    assert (batch.input_ids == video_id).sum(1).tolist() == [8 * 17, 8 * 17]  # frames x (16 patches + [CLS])
    with torch.no_grad():
        output = model.generate(**batch, max_new_tokens=2, do_sample=False)
    assert output.shape == (2, batch.input_ids.shape[1] + 2)
    no_video = SimpleNamespace(tokenizer=tok, image_processor=clip, video_processor=None)
    with pytest.raises(ValueError, match="has no video processor"):
        encode_batch(no_video, ["<video>"], videos=[[frames]])
