"""Vision-side baselines (before the language model) on the tiny LLaVA: wiring, counts, determinism, options."""

import pytest
import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration, SiglipVisionConfig

import llava
from llava.pruning.base import check_signals
from llava.pruning.fastervlm import FasterVLM
from support import LONG_PROMPT, PROMPT

N, T = 64, 16  # patch tokens per 112-px image (8 x 8 grid), budget
VISION_METHODS = {
    "fastervlm": {},
    "random": {"seed": 3},
    "pool": {},
    "divprune": {},
    "visionzip": {},
    "prumerge_plus": {},
    "tome": {},
}


@pytest.fixture(params=sorted(VISION_METHODS))
def pruned(request, tiny):
    model, processor = tiny
    llava.apply_pruning(model, method=request.param, visual_token_num=T, **VISION_METHODS[request.param])
    yield request.param, model, processor
    llava.remove_pruning(model)


def language_model_inputs(model, **inputs):
    seen = []
    handle = model.model.language_model.register_forward_pre_hook(lambda m, a, k: seen.append(k), with_kwargs=True)
    try:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    finally:
        handle.remove()
    return out, seen[0]


def test_generate_with_a_padded_batch_and_the_language_model_sees_t_tokens(pruned, images):
    method, model, processor = pruned
    batch = processor(text=[PROMPT, LONG_PROMPT, PROMPT], images=images, return_tensors="pt", padding=True)
    assert (batch.attention_mask == 0).any()
    out, prefill = language_model_inputs(model, **batch)
    length = batch.input_ids.shape[1]
    assert out.shape == (3, length + 3) and torch.equal(out[:, :length], batch.input_ids)
    assert prefill["inputs_embeds"].shape[1] == length - (N - T)  # 4 x 4 pooled grid for "pool"
    assert torch.isfinite(prefill["inputs_embeds"]).all()


def test_deterministic_and_an_image_alone_agrees_with_the_batch(pruned, images):
    method, model, processor = pruned
    batch = processor(text=[PROMPT, LONG_PROMPT, PROMPT], images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        if method == "random":  # a seeded stream: re-applying restarts it
            first = model.generate(**batch, max_new_tokens=4, do_sample=False)
            llava.apply_pruning(model, method="random", visual_token_num=T, seed=3)
            assert torch.equal(first, model.generate(**batch, max_new_tokens=4, do_sample=False))
            return
        assert torch.equal(
            model.generate(**batch, max_new_tokens=4, do_sample=False),
            model.generate(**batch, max_new_tokens=4, do_sample=False),
        )
        alone = model.model.get_image_features(batch.pixel_values[:1]).pooler_output[0]
        together = model.model.get_image_features(batch.pixel_values).pooler_output[0]
    assert alone.shape[0] == T and torch.allclose(alone, together, atol=1e-5)


def test_fastervlm_equals_vispruner_with_important_ratio_one(tiny, images):
    model, processor = tiny
    batch = processor(text=[PROMPT, LONG_PROMPT, PROMPT], images=images, return_tensors="pt", padding=True)
    results = []
    for method, options in (("fastervlm", {}), ("vispruner", {"important_ratio": 1.0})):
        llava.apply_pruning(model, method=method, visual_token_num=T, **options)
        try:
            results.append(language_model_inputs(model, **batch))
        finally:
            llava.remove_pruning(model)
    (out_a, lm_a), (out_b, lm_b) = results
    assert torch.equal(out_a, out_b) and torch.equal(lm_a["inputs_embeds"], lm_b["inputs_embeds"])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # and as pure functions, on random scores with ties
        features, attention = torch.randn(2, 40, 8, generator=g), torch.randint(0, 5, (2, 4, 40), generator=g).float()
        vision = llava.pruning.VisionFeatures(features, (5, 8), attention)
        assert torch.equal(
            FasterVLM(9).select(vision), llava.create_pruner("vispruner", 9, important_ratio=1.0).select(vision)
        )


@pytest.mark.parametrize(
    "method, options, option",
    [
        ("random", {"seed": -1}, "seed"),
        ("random", {"seed": 1.5}, "seed"),
        ("visionzip", {"contextual_num": T}, "contextual_num"),
        ("visionzip", {"contextual_num": -1}, "contextual_num"),
        ("prumerge_plus", {"num_neighbors": 0}, "num_neighbors"),
        ("tome", {"ratio": 0.5}, "ratio"),
        ("pool", {}, "visual_token_num"),
        ("tome", {}, "visual_token_num"),  # 64 tokens cannot become 1 in 3 layers halving at most
    ],
)
def test_bad_options_name_the_option(tiny, method, options, option):
    model, _ = tiny
    budget = 0 if (method, option) == ("pool", "visual_token_num") else 1 if method == "tome" and not options else T
    with pytest.raises(ValueError, match=option):
        llava.apply_pruning(model, method=method, visual_token_num=budget, **options)
    assert "forward" not in model.__dict__ and "get_image_features" not in model.model.__dict__


def test_methods_needing_a_signal_the_host_lacks_fail_clearly(tiny):
    with pytest.raises(ValueError, match=r"needs importance \(cls_attention or received_attention\).*SigLIP-like host"):
        check_signals(FasterVLM(T), frozenset({"projected"}), "a SigLIP-like host")
    siglip = LlavaForConditionalGeneration(
        LlavaConfig(
            vision_config=SiglipVisionConfig(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=32,
                patch_size=8,
            ),
            text_config=tiny[0].config.text_config,
            image_token_id=tiny[0].config.image_token_id,
        )
    )
    with pytest.raises(ValueError, match="supports CLIP vision towers"):
        llava.apply_pruning(siglip, method="fastervlm", visual_token_num=T)


def test_every_method_is_registered_with_a_cited_docstring():
    import importlib

    expected = {
        "vispruner",
        "fastervlm",
        "random",
        "pool",
        "divprune",
        "visionzip",
        "prumerge_plus",
        "tome",
        "fastv",
        "pdrop",
        "sparsevlm",
    }
    assert set(llava.list_methods()) == expected
    for name, cls in llava.METHODS.items():
        if name == "vispruner":  # the target method, documented in its own module and the README
            continue
        module = importlib.import_module(cls.__module__).__doc__
        assert "arXiv" in module and "Where" in module and "Budget" in module, name
