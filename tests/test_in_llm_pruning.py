"""In-LLM methods (FastV, PDrop, SparseVLM) on a tiny LLaVA with a 4-layer language model."""

import pytest
import torch
from transformers import StaticCache

import llava
import llava.models  # the pruning wiring, which the fixtures patch
from llava.testing import build_tiny_llava
from support import LONG_PROMPT, PROMPT

N, T = 64, 16  # patch tokens per 112-px image, kept visual tokens per image
SETTINGS = {
    "fastv": {"layer": 2},
    "pdrop": {"layers": (1, 3), "ratio": 0.5},
    "sparsevlm": {"layers": (0, 2), "schedule": (12, 5)},
}
# Tokens each of the 4 layers sees for one image: FastV keeps T from layer 2; PDrop T from layer 1 and
# int(T * 0.5) from layer 3; SparseVLM keeps 12 after layer 0 (+2 recycled clusters of the 52 dropped)
# and 5 after layer 2 (+1 cluster of the 9 dropped).
DROPPED_BEFORE_LAYER = {
    "fastv": [0, 0, N - T, N - T],
    "pdrop": [0, N - T, N - T, N - T // 2],
    "sparsevlm": [0, N - 14, N - 14, N - 6],
}


@pytest.fixture(scope="module")
def model_and_processor():
    return build_tiny_llava(image_size=112, vision_layers=4, text_layers=4, seed=1)


@pytest.fixture(scope="module")
def batch(model_and_processor, images):
    _, processor = model_and_processor
    return processor(text=[PROMPT, LONG_PROMPT, PROMPT], images=images, return_tensors="pt", padding=True)


@pytest.fixture(params=sorted(SETTINGS))
def pruned(request, model_and_processor, monkeypatch):
    """The model pruned with each method, and a list of what every `reduce` call saw and returned."""
    model, processor = model_and_processor
    create = llava.models.create_pruner
    records = []

    def recording_pruner(*args, **kwargs):
        pruner = create(*args, **kwargs)
        reduce = pruner.reduce

        def recorded_reduce(stage, sequence, attention, state):
            entry = {"stage": stage, "before": sequence}

            def reading(query_index):
                entry.update(query=query_index, rows=attention(query_index))
                return entry["rows"]

            entry["after"] = reduce(stage, sequence, reading, state)
            records.append(entry)
            return entry["after"]

        pruner.reduce = recorded_reduce
        return pruner

    monkeypatch.setattr(llava.models, "create_pruner", recording_pruner)
    llava.apply_pruning(model, method=request.param, visual_token_num=T, **SETTINGS[request.param])
    yield request.param, model, processor, records
    llava.remove_pruning(model)


def pruner_of(model):
    return llava.create_pruner(model.pruning_config.method, T, **model.pruning_config.options)


def test_generate_with_a_padded_batch_and_layers_see_the_documented_counts(pruned, batch):
    method, model, _, _ = pruned
    assert (batch.attention_mask == 0).any()
    seen = {}
    handles = [
        layer.register_forward_pre_hook(lambda m, args, k=k: None if k in seen else seen.update({k: args[0].shape[1]}))
        for k, layer in enumerate(model.model.language_model.layers)
    ]
    try:
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    finally:
        for h in handles:
            h.remove()
    length = batch.input_ids.shape[1]
    assert out.shape == (3, length + 4) and torch.equal(out[:, :length], batch.input_ids)
    assert [seen[k] for k in range(4)] == [length - d for d in DROPPED_BEFORE_LAYER[method]]
    assert model.config.text_config._attn_implementation == "sdpa"


def test_deterministic(pruned, batch):
    _, model, _, _ = pruned
    with torch.no_grad():
        first = model.generate(**batch, max_new_tokens=5, min_new_tokens=5, do_sample=False)
        second = model.generate(**batch, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert torch.equal(first, second)


def test_a_prompt_alone_and_in_a_padded_batch_agree(pruned, batch, images):
    _, model, processor, _ = pruned
    alone = processor(text=LONG_PROMPT, images=images[1], return_tensors="pt")
    kwargs = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        one = model.generate(**alone, **kwargs)
        many = model.generate(**batch, **kwargs)
    assert torch.equal(one.sequences[0, -5:], many.sequences[1, -5:])
    for a, b in zip(one.logits, many.logits):
        assert torch.allclose(a[0], b[1], atol=1e-4)


def eager_attentions(model, batch):
    """Attention maps of the unpruned model with eager attention in the language model."""
    lm = model.model.language_model
    lm.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            return model(**batch, output_attentions=True).attentions
    finally:
        lm.set_attn_implementation("sdpa")


def test_attention_rows_match_eager_attention_while_sdpa_stays_on(pruned, batch):
    method, model, _, records = pruned
    with torch.no_grad():
        model(**batch)
    first = records[0]
    pruner = pruner_of(model)
    layer = pruner.attention_layer(pruner.stages()[0])
    llava.remove_pruning(model)  # the first stage reads the unpruned sequence: compare with the stock model
    eager = eager_attentions(model, batch)[layer]  # [B, H, L, L]
    expected = eager.gather(2, first["query"][:, None, :, None].expand(-1, eager.shape[1], -1, eager.shape[-1]))
    assert (first["rows"] - expected).abs().max() < 1e-5


def reference_logits(model, records, batch, generated):
    """Logits for each generated token recomputed without a cache: every layer runs on [prompt, generated]
    with an explicit causal + padding mask; at each stage the prompt part becomes the recorded reduced
    prompt, and the generated tokens get positions after the prompt's last position in that group."""
    lm = model.model.language_model
    with torch.no_grad():
        inputs = {}
        handle = lm.register_forward_pre_hook(lambda m, a, k: inputs.update(k), with_kwargs=True)
        try:
            model(**batch)
        finally:
            handle.remove()
        prompt = inputs["inputs_embeds"]
        batch_size, length = prompt.shape[:2]
        steps = generated.shape[1]
        mask = batch.attention_mask.bool()
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        gen_hidden = lm.embed_tokens(generated)
        prompt_hidden, prompt_mask, prompt_positions = prompt, mask, positions
        keeps_positions = model.pruning_config.method == "fastv"
        stages = {lm_layer: rec for lm_layer, rec in zip(pruner_of(model).stages(), records)}
        for index, layer in enumerate(lm.layers):
            if index in stages:
                after = stages[index]["after"]
                prompt_hidden, prompt_mask = after.hidden, after.mask
                prompt_positions = after.positions
                if not keeps_positions:  # renumbered from the first real token
                    prompt_positions = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)
            last = prompt_positions.masked_fill(~prompt_mask, -1).amax(dim=1)
            gen_positions = last[:, None] + 1 + torch.arange(steps)
            hidden = torch.cat([prompt_hidden, gen_hidden], dim=1)
            keys = torch.cat([prompt_mask, torch.ones(batch_size, steps, dtype=torch.bool)], dim=1)
            total = hidden.shape[1]
            visible = keys[:, None, None, :] & torch.ones(total, total, dtype=torch.bool).tril()[None, None]
            all_positions = torch.cat([prompt_positions, gen_positions], dim=1)
            out = layer(hidden, attention_mask=visible, position_embeddings=lm.rotary_emb(hidden, all_positions))
            prompt_hidden, gen_hidden = out[:, : prompt_hidden.shape[1]], out[:, prompt_hidden.shape[1] :]
        return model.lm_head(lm.norm(gen_hidden))  # [B, steps, V]: logits after each generated token


def test_kv_cache_decoding_equals_recomputation(pruned, batch):
    method, model, _, records = pruned
    with torch.no_grad():
        out = model.generate(
            **batch,
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    generated = out.sequences[:, batch.input_ids.shape[1] :]
    assert len(records) == len(pruner_of(model).stages())  # pruning happened once, at prefill
    recomputed = reference_logits(model, records, batch, generated[:, :-1])
    for step in range(1, 4):  # logits of decode step `step` come after generated token step - 1
        assert torch.allclose(out.logits[step], recomputed[:, step - 1], atol=1e-4), (method, step)


def test_positions_kept_by_fastv_and_renumbered_by_pdrop_and_sparsevlm(pruned, batch):
    method, model, _, records = pruned
    with torch.no_grad():
        model(**batch)
    after = records[0]["after"]
    for row in range(after.mask.shape[0]):
        real = after.mask[row]
        positions, origin = after.positions[row][real], after.origin[row][real]
        assert positions[0] == origin[0]  # a forward without position_ids: position = index in the prompt
        if method == "fastv":
            assert torch.equal(positions, origin)
        else:
            assert torch.equal(positions.diff(), torch.ones_like(positions.diff()))


def test_labels_inputs_embeds_and_prompts_without_a_question_are_refused(pruned, batch, images):
    method, model, processor, _ = pruned
    no_question = processor(text="USER: look <image>", images=images[0], return_tensors="pt")
    with pytest.raises(ValueError, match="needs the question after the image"):
        model.generate(**no_question, max_new_tokens=1)
    with pytest.raises(ValueError, match="needs a DynamicCache"):
        model(**batch, past_key_values=StaticCache(config=model.config.text_config, max_cache_len=256))
    with pytest.raises(ValueError, match="labels are not supported"):
        model(**batch, labels=batch.input_ids)
    embeds = model.get_input_embeddings()(batch.input_ids)
    with pytest.raises(ValueError, match="pass input_ids"):
        model(inputs_embeds=embeds, pixel_values=batch.pixel_values, attention_mask=batch.attention_mask)


@pytest.mark.parametrize(
    "method, options, option",
    [
        ("fastv", {"layer": 4}, "layer"),
        ("fastv", {"layer": 0}, "layer"),
        ("pdrop", {"layers": (2, 1)}, "layers"),
        ("pdrop", {"layers": (1, 9)}, "layers"),
        ("pdrop", {"ratio": 1.5}, "ratio"),
        ("sparsevlm", {"layers": (0, 3), "schedule": (4, 2)}, "layers"),
        ("sparsevlm", {"layers": (0, 1), "schedule": (4,)}, "schedule"),
        ("sparsevlm", {"layers": (0, 1)}, "schedule"),
    ],
)
def test_bad_options_name_the_option(model_and_processor, method, options, option):
    model, _ = model_and_processor
    with pytest.raises(ValueError, match=option):
        llava.apply_pruning(model, method=method, visual_token_num=T, **options)
    assert "forward" not in model.model.language_model.__dict__


def test_sparsevlm_published_schedules():
    from llava.pruning.sparsevlm import SparseVLM

    assert SparseVLM(64).schedule == (66, 30, 17) and SparseVLM(64).stages() == (3, 7, 16)
    with pytest.raises(ValueError, match="visual_token_num"):
        SparseVLM(100)


def test_remove_pruning_restores_the_stock_language_model(model_and_processor, batch):
    model, _ = model_and_processor
    with torch.no_grad():
        before = model(**batch).logits
        for method, options in SETTINGS.items():
            llava.apply_pruning(model, method=method, visual_token_num=T, **options)
            assert model(**batch).logits.shape[1] < before.shape[1]
            llava.remove_pruning(model)
            assert "forward" not in model.model.language_model.__dict__ and "forward" not in model.model.__dict__
        assert torch.equal(model(**batch).logits, before)
