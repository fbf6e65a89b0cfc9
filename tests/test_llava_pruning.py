import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

import llava
from llava.pruning.vispruner import select
from support import LONG_PROMPT, PROMPT

T = 16  # of 64 patch tokens per 112-px image


@pytest.fixture
def pruned(tiny):
    model, processor = tiny
    llava.apply_pruning(model, method="vispruner", visual_token_num=T, important_ratio=0.5)
    yield model, processor
    llava.remove_pruning(model)


def expected_visual_tokens(model, pixel_values):
    """The projected features of the tokens VisPruner should keep, computed the slow, independent way."""
    tower = model.model.vision_tower
    with torch.no_grad():
        hidden = tower(pixel_values, output_hidden_states=True).hidden_states[-2][:, 1:]
        tower.set_attn_implementation("eager")
        try:
            attention = tower(pixel_values, output_attentions=True).attentions[-2][:, :, 0, 1:]
        finally:
            tower.set_attn_implementation("sdpa")
        kept = select(hidden, attention, T, 0.5)
        return model.model.multi_modal_projector(torch.stack([h[k] for h, k in zip(hidden, kept)]))


def capture_language_model_inputs(model):
    seen = []
    handle = model.model.language_model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs), with_kwargs=True
    )
    return seen, handle


def test_language_model_sees_t_tokens_in_raster_order_with_contiguous_positions(pruned, images):
    model, processor = pruned
    inputs = processor(text=PROMPT, images=images[0], return_tensors="pt")
    full_length = inputs.input_ids.shape[1]
    seen, handle = capture_language_model_inputs(model)
    try:
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=3, do_sample=False)
    finally:
        handle.remove()
    prefill = seen[0]
    assert prefill["inputs_embeds"].shape[1] == full_length - (64 - T)
    image_rows = (inputs.input_ids[0] == model.config.image_token_id).nonzero()[:T, 0]
    got = prefill["inputs_embeds"][0, image_rows]
    assert torch.allclose(got, expected_visual_tokens(model, inputs.pixel_values)[0], atol=1e-5)
    positions = prefill.get("position_ids")
    assert positions is None or torch.equal(positions[0], torch.arange(prefill["inputs_embeds"].shape[1]))
    mask = prefill.get("attention_mask")
    assert mask is None or mask.shape[-1] == prefill["inputs_embeds"].shape[1]


def test_generate_returns_the_callers_prompt_then_new_tokens(pruned, images):
    model, processor = pruned
    inputs = processor(text=PROMPT, images=images[0], return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False, return_dict_in_generate=True)
    assert torch.equal(ids[:, : inputs.input_ids.shape[1]], inputs.input_ids)
    assert ids.shape[1] == inputs.input_ids.shape[1] + 4
    assert torch.equal(out.sequences, ids)


def greedy_over_embeddings(model, embeds, steps):
    """Greedy decoding with the bare language model and an explicit KV cache."""
    lm, head = model.model.language_model, model.lm_head
    cache, tokens = DynamicCache(config=model.config.text_config), []
    with torch.no_grad():
        hidden = lm(inputs_embeds=embeds, past_key_values=cache, use_cache=True).last_hidden_state
        for _ in range(steps):
            token = head(hidden[:, -1]).argmax(-1)
            tokens.append(token)
            hidden = lm(
                inputs_embeds=lm.embed_tokens(token)[:, None], past_key_values=cache, use_cache=True
            ).last_hidden_state
    return torch.stack(tokens, dim=1)


def test_pruned_generate_equals_manual_decoding_of_pruned_embeddings(pruned, images):
    model, processor = pruned
    inputs = processor(text=PROMPT, images=images[1], return_tensors="pt")
    image_id = model.config.image_token_id
    is_image = inputs.input_ids[0] == image_id
    keep = ~is_image | (is_image.cumsum(0) <= T)
    ids = inputs.input_ids[:, keep]
    with torch.no_grad():
        embeds = model.model.language_model.embed_tokens(ids)
    embeds[ids == image_id] = expected_visual_tokens(model, inputs.pixel_values)[0]
    expected = greedy_over_embeddings(model, embeds, steps=6)
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=6, do_sample=False, min_new_tokens=6)
    assert torch.equal(generated[:, inputs.input_ids.shape[1] :], expected)


def test_kv_cache_decoding_equals_recomputation(pruned, images):
    model, processor = pruned
    inputs = processor(text=PROMPT, images=images[2], return_tensors="pt")
    with torch.no_grad():
        cached = model.generate(**inputs, max_new_tokens=6, do_sample=False, min_new_tokens=6)
        uncached = model.generate(**inputs, max_new_tokens=6, do_sample=False, min_new_tokens=6, use_cache=False)
    assert torch.equal(cached, uncached)


def test_image_alone_and_in_a_padded_batch_agree(pruned, images):
    model, processor = pruned
    single = processor(text=PROMPT, images=images[0], return_tensors="pt")  # row 0 of the batch, left-padded
    batch = processor(text=[PROMPT, LONG_PROMPT, PROMPT], images=images, return_tensors="pt", padding=True)
    assert (batch.attention_mask == 0).any()  # the batch really is padded
    with torch.no_grad():
        alone = model.model.get_image_features(single.pixel_values).pooler_output[0]
        together = model.model.get_image_features(batch.pixel_values).pooler_output[0]
        assert torch.allclose(alone, together, atol=1e-5)
        one = model.generate(**single, max_new_tokens=6, do_sample=False, min_new_tokens=6)
        many = model.generate(**batch, max_new_tokens=6, do_sample=False, min_new_tokens=6)
        logits_one = model(**single).logits[0, -1]
        logits_many = model(**batch).logits[0, -1]
    assert torch.equal(one[0, -6:], many[0, -6:])
    assert torch.allclose(logits_one, logits_many, atol=1e-4)


def test_forward_shrinks_placeholders_and_labels(pruned, images):
    model, processor = pruned
    inputs = processor(text=PROMPT, images=images[0], return_tensors="pt")
    labels = inputs.input_ids.masked_fill(inputs.input_ids == model.config.image_token_id, -100)
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    assert out.logits.shape[1] == inputs.input_ids.shape[1] - (64 - T)
    # The loss is over the shortened sequence: the text labels keep their places around T image slots.
    start = int((inputs.input_ids[0] == model.config.image_token_id).nonzero()[0])
    kept_labels = torch.cat([labels[0, :start], torch.full((T,), -100), labels[0, start + 64 :]])
    expected = torch.nn.functional.cross_entropy(out.logits[0, :-1], kept_labels[1:], ignore_index=-100)
    assert torch.allclose(out.loss, expected, atol=1e-5)


def test_attention_stays_sdpa_and_settings_are_readable(pruned, images):
    model, processor = pruned
    assert model.pruning_config == llava.PruningConfig("vispruner", T, {"important_ratio": 0.5})
    with torch.no_grad():
        model.generate(**processor(text=PROMPT, images=images[0], return_tensors="pt"), max_new_tokens=2)
    assert model.config.vision_config._attn_implementation == "sdpa"
    assert model.config.text_config._attn_implementation == "sdpa"


def test_remove_pruning_restores_identical_outputs_and_other_instances_are_untouched(tiny, images):
    model, processor = tiny
    inputs = processor(text=PROMPT, images=images[0], return_tensors="pt")
    with torch.no_grad():
        before = model(**inputs).logits
        gen_before = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        llava.apply_pruning(model, visual_token_num=T)
        llava.apply_pruning(model, visual_token_num=8, important_ratio=0.25)  # re-applying replaces
        assert model.pruning_config.visual_token_num == 8
        assert model(**inputs).logits.shape[1] == inputs.input_ids.shape[1] - (64 - 8)
        assert "forward" not in type(model).__dict__ or type(model).forward is not model.forward
        llava.remove_pruning(model)
        after = model(**inputs).logits
        gen_after = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(before, after) and torch.equal(gen_before, gen_after)
    for name in ("forward", "generate", "pruning_config"):
        assert name not in model.__dict__
    assert "get_image_features" not in model.model.__dict__


def test_budget_at_least_n_is_unpruned(tiny, images):
    model, processor = tiny
    inputs = processor(text=PROMPT, images=images[0], return_tensors="pt")
    with torch.no_grad():
        stock = model(**inputs).logits
        llava.apply_pruning(model, visual_token_num=64)
        try:
            same = model(**inputs).logits
        finally:
            llava.remove_pruning(model)
    assert torch.allclose(stock, same, atol=1e-5)


def test_bad_arguments_and_unsupported_models():
    with pytest.raises(ValueError, match="supported model classes: .*LlavaForConditionalGeneration"):
        llava.apply_pruning(
            LlamaForCausalLM(
                LlamaConfig(
                    hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=32
                )
            )
        )


def test_bad_options_leave_the_model_unpruned(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="important_ratio"):
        llava.apply_pruning(model, visual_token_num=T, important_ratio=1.5)
    with pytest.raises(ValueError, match="visual_token_num"):
        llava.apply_pruning(model, visual_token_num=0)
    assert "forward" not in model.__dict__
