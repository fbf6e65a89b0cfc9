"""Original-layout LLaVA checkpoints load into transformers classes with every weight, same logits."""

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import (
    CLIPImageProcessorPil,
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
)

import llava
from llava.conversation import get_template
from llava.prompting import encode_batch
from llava.testing import CLIP_MEAN, CLIP_STD, build_tiny_llava
from original_layout import (
    anyres_views,
    expand2square,
    llava_next_like,
    save_clip,
    save_original,
    tokenizer_without_image_token,
)
from support import shapes_image

SIZE = 56  # 4x4 patches of 14 px
PINPOINTS = [[56, 112], [112, 56], [112, 112]]


@pytest.fixture(scope="module")
def tiny56():
    return build_tiny_llava(image_size=SIZE, patch_size=14, vision_layers=2)


@pytest.fixture(scope="module")
def clip_folder(tiny56, tmp_path_factory):
    return save_clip(tiny56[0], tmp_path_factory.mktemp("clip"), SIZE)


def wide_image():
    return shapes_image(80, seed=3).crop((0, 10, 80, 50))  # 80 x 40


def batch(processor, images):
    prompt = get_template("vicuna_v1").single_turn("<image>\nWhat is shown?")
    return encode_batch(processor, [prompt] * len(images), [[image] for image in images])


def assert_same_weights(expected, loaded):
    want, got = expected.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_llava15_layout_uses_every_weight_and_gives_the_same_logits(tiny56, clip_folder, tmp_path):
    model, processor = tiny56
    folder = save_original(model, processor.tokenizer, tmp_path / "ckpt", clip_folder)
    loaded, loaded_processor = llava.load_pretrained_model(str(folder))
    assert type(loaded) is LlavaForConditionalGeneration
    assert loaded.config.image_token_id == model.config.image_token_id
    assert loaded.config.vision_feature_layer == -2 and loaded.config.image_aspect_ratio == "pad"
    assert_same_weights(model, loaded)
    inputs = batch(loaded_processor, [wide_image(), shapes_image(64, seed=1)])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)


def test_a_tower_left_out_of_the_checkpoint_comes_from_mm_vision_tower(tiny56, clip_folder, tmp_path):
    model, processor = tiny56
    folder = save_original(model, processor.tokenizer, tmp_path / "ckpt", clip_folder, with_vision=False)
    loaded, _ = llava.load_pretrained_model(str(folder))
    assert_same_weights(model, loaded)


def test_unknown_or_missing_weights_are_errors(tiny56, clip_folder, tmp_path):
    model, processor = tiny56
    folder = save_original(model, processor.tokenizer, tmp_path / "ckpt", clip_folder)
    weights = load_file(folder / "model.safetensors")
    weights["model.mm_projector.4.weight"] = torch.zeros(2)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"does not have: model\.mm_projector\.4\.weight"):
        llava.load_pretrained_model(str(folder))
    del weights["model.mm_projector.4.weight"], weights["model.norm.weight"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing weights: model\.language_model\.norm\.weight"):
        llava.load_pretrained_model(str(folder))


def test_a_tokenizer_without_image_token_gets_one_that_changes_no_logit(tiny56, clip_folder, tmp_path):
    model, _ = tiny56
    tokenizer = tokenizer_without_image_token()
    vocab = len(tokenizer)
    original = build_tiny_llava(image_size=SIZE, patch_size=14, vision_layers=2)[0]
    original.load_state_dict(model.state_dict())
    original.resize_token_embeddings(vocab)  # an original checkpoint: vocabulary == its tokenizer
    folder = save_original(original, tokenizer, tmp_path / "ckpt", clip_folder)

    loaded, loaded_processor = llava.load_pretrained_model(str(folder))
    assert (
        loaded.config.image_token_id == vocab and loaded_processor.tokenizer.convert_ids_to_tokens(vocab) == "<image>"
    )
    assert loaded.generation_config.suppress_tokens == [vocab]
    expected = original
    expected.resize_token_embeddings(vocab + 1, mean_resizing=False)
    with torch.no_grad():
        expected.get_input_embeddings().weight[vocab:] = 0
        expected.get_output_embeddings().weight[vocab:] = 0
    expected.config.image_token_id = vocab
    assert_same_weights(expected, loaded)
    inputs = batch(loaded_processor, [wide_image()])
    with torch.no_grad():
        logits = loaded(**inputs).logits
        torch.testing.assert_close(logits, expected(**inputs).logits, rtol=0, atol=0)
    assert torch.all(logits[..., vocab] == 0)


@pytest.fixture(scope="module")
def next_reference(tiny56):
    return llava_next_like(tiny56[0], PINPOINTS)


def test_llava16_anyres_layout_becomes_llava_next(tiny56, next_reference, clip_folder, tmp_path):
    processor, reference = tiny56[1], next_reference
    folder = save_original(
        reference, processor.tokenizer, tmp_path / "ckpt", clip_folder, aspect="anyres", pinpoints=PINPOINTS
    )
    loaded, loaded_processor = llava.load_pretrained_model(str(folder))
    assert type(loaded) is LlavaNextForConditionalGeneration
    assert_same_weights(reference, loaded)
    inputs = batch(loaded_processor, [wide_image(), shapes_image(64, seed=2)])
    assert inputs.pixel_values.shape[:2] == (2, 5)  # base view + up to 2x2 tiles (the wide image has 1x2, padded)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, reference(**inputs).logits, rtol=0, atol=0)


def clip_preprocess(images):
    clip = CLIPImageProcessorPil(
        size={"shortest_edge": SIZE},
        crop_size={"height": SIZE, "width": SIZE},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    return clip(images, return_tensors="pt").pixel_values


def test_pad_preprocessing_is_llava_expand2square_in_the_mean_colour(tiny56, clip_folder, tmp_path):
    model, processor = tiny56
    folder = save_original(model, processor.tokenizer, tmp_path / "ckpt", clip_folder)
    _, loaded_processor = llava.load_pretrained_model(str(folder))
    image = wide_image()
    got = loaded_processor.image_processor(image, return_tensors="pt").pixel_values
    mean_colour = tuple(int(v * 255) for v in CLIP_MEAN)
    torch.testing.assert_close(got, clip_preprocess([expand2square(image, mean_colour)]), rtol=0, atol=1e-6)


def test_anyres_preprocessing_is_llava_grid(tiny56, next_reference, clip_folder, tmp_path):
    folder = save_original(
        next_reference, tiny56[1].tokenizer, tmp_path / "ckpt", clip_folder, aspect="anyres", pinpoints=PINPOINTS
    )
    _, loaded_processor = llava.load_pretrained_model(str(folder))
    for image in (wide_image(), wide_image().transpose(Image.Transpose.ROTATE_90), shapes_image(70, seed=5)):
        got = loaded_processor.image_processor(image, return_tensors="pt").pixel_values[0]
        want = clip_preprocess(anyres_views(image, PINPOINTS, crop=SIZE, base=SIZE))
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
