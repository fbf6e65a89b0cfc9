"""One latency case of `efficiency.latency`: a method at a budget, timed part by part on one shape.

`measure_case` times (with `efficiency.timing.measure`, passed in as `timed`) the time to first token,
the image features, a before-LLM method's scoring and selection, `generate` of 1, 1 + D and a
POPE answer's tokens, and the batched prefill; it reads the KV cache's size off the cache and, on a
GPU, the peak memory of the end-to-end run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from llava.models import attach_pruner, clip, remove_pruning
from llava.pruning import create_pruner
from llava.pruning.base import VisionFeatures, VisionTokenPruner, resolve_signals

from .flops import prefill_flops
from .shapes import PromptLayout, Shape

FASTV_LAYER_FRACTION = 2 / 32  # FastV's published K = 2 of LLaVA-1.5's 32 decoder layers
MS_PER_S = 1e3
Timed = Callable[[Callable[[], object]], dict]  # a callable -> its timing (efficiency.timing.Timing.as_dict())


class FirstTokens(VisionTokenPruner):
    """The first T patch tokens, chosen without computation: the floor for any before-LLM pruner."""

    name = "first_tokens"

    def select(self, vision: VisionFeatures) -> torch.Tensor:
        batch, num_tokens, _ = vision.features.shape
        kept = min(self.visual_token_num, num_tokens)
        return torch.arange(kept, device=vision.features.device).expand(batch, kept)


class SameTokens(VisionTokenPruner):
    """The oracle: the very tokens VisPruner keeps for these images (`kept`, recorded beforehand), fed
    with no [CLS] row and no selection work. A batch of more images repeats them."""

    name = "oracle"

    def __init__(self, visual_token_num: int, kept: torch.Tensor):
        super().__init__(visual_token_num)
        self.kept = kept

    def select(self, vision: VisionFeatures) -> torch.Tensor:
        repeats = -(-vision.features.shape[0] // self.kept.shape[0])
        return self.kept.repeat(repeats, 1)[: vision.features.shape[0]]


def vispruner_kept(model, tokens: int, pixel_values: torch.Tensor) -> torch.Tensor:
    """The tokens VisPruner keeps for `pixel_values` on `model` (what the oracle feeds)."""
    inner = model.model
    vision = clip.encode(inner.vision_tower, pixel_values, inner.config.vision_feature_layer, {"cls_attention"})
    return create_pruner("vispruner", tokens).select(vision)


def make_pruner(method: str, tokens: int, config, kept: torch.Tensor | None = None):
    if method == "none":
        return None
    if method == "oracle":
        return SameTokens(tokens, kept)
    if method == "first_tokens":
        return FirstTokens(tokens)
    if method == "fastv":
        layers = config.text_config.num_hidden_layers
        return create_pruner(method, tokens, layer=max(1, round(FASTV_LAYER_FRACTION * layers)))
    return create_pruner(method, tokens)


def prompt_batch(preset: Shape, batch: int, device, dtype, prompt: PromptLayout, seed: int = 0) -> dict:
    """`batch` prompts of random text ids around `preset.images` runs of image placeholders."""
    config = preset.config
    generator = torch.Generator().manual_seed(seed)
    run = preset.images * preset.patches_per_image
    ids = torch.randint(3, config.text_config.vocab_size, (batch, prompt.text_tokens + run), generator=generator)
    ids[ids == config.image_token_id] = 3
    ids[:, prompt.before : prompt.before + run] = config.image_token_id
    size = config.vision_config.image_size
    pixels = torch.randn(batch * preset.images, 3, size, size, generator=generator)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids, device=device),
        "pixel_values": pixels.to(device=device, dtype=dtype),
    }


def first_token(model, inputs: dict) -> torch.Tensor:
    return model(**inputs, use_cache=True, logits_to_keep=1).logits[:, -1].argmax(dim=-1)


def generate(model, inputs: dict, new_tokens: int) -> torch.Tensor:
    return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)


def cache_bytes(model, inputs: dict, prompt: PromptLayout) -> dict:
    """Bytes the KV cache holds after the prefill, all tokens and the visual ones (all minus the text)."""
    cache = model(**inputs, use_cache=True, logits_to_keep=1).past_key_values
    total = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    per_token = sum((layer.keys.nbytes + layer.values.nbytes) // layer.keys.shape[-2] for layer in cache.layers)
    # per_token spans the batch
    return {"kv_cache_bytes": total, "kv_visual_bytes": total - per_token * prompt.text_tokens}


class OperatorCount(TorchDispatchMode):
    """Counts the aten operators dispatched while active. On a GPU every non-view operator launches at
    least one kernel, at a few microseconds of host time each: in a loop of many small steps that,
    not arithmetic, sets the time."""

    def __init__(self):
        super().__init__()
        self.total = self.computing = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.total += 1
        self.computing += not func.is_view
        return func(*args, **(kwargs or {}))


def selection_times(model, pruner, pixel_values: torch.Tensor, timed: Timed) -> tuple[dict | None, dict | None]:
    """(scoring, selection) timings of a before-LLM pruner; None where they cannot be separated."""
    if not isinstance(pruner, VisionTokenPruner) or "token_merging" in pruner.requires:
        return None, None  # in-LLM methods select inside the layer loop; ToMe merges inside the tower
    inner = model.model
    tower, layer = inner.vision_tower, inner.config.vision_feature_layer
    signals = resolve_signals(pruner.requires, clip.SIGNALS) & clip.SIGNALS
    if signals:
        # Both towers are timed in this run, one after the other, so their difference is like for like.
        plain = timed(lambda: clip.encode(tower, pixel_values, layer))
        signalled = timed(lambda: clip.encode(tower, pixel_values, layer, signals=signals))
        scoring = {
            "median_ms": max(0.0, signalled["median_ms"] - plain["median_ms"]),
            "tower": plain,
            "tower_with_signals": signalled,
        }
    else:
        scoring = {"median_ms": 0.0}
    vision = clip.encode(tower, pixel_values, layer, signals=signals)
    if "projected" in pruner.requires:
        vision.projected = inner.multi_modal_projector(vision.features)
        selection = lambda: pruner.select(vision)  # noqa: E731
    else:
        selection = lambda: pruner.reduce(vision)  # noqa: E731
    with OperatorCount() as count:
        selection()
    return scoring, {**timed(selection), "operators": count.total, "non_view_operators": count.computing}


def throughput(model, batched: dict, batch: int, timed: Timed) -> dict:
    """The batched prefill (no cache, last-position logits): its timing and prompts per second."""
    timing = timed(lambda: model(**batched, use_cache=False, logits_to_keep=1))
    return {**timing, "prompts_per_s": batch * MS_PER_S / timing["median_ms"]}


def measure_case(model, preset: Shape, method: str, tokens: int, args, device, dtype, timed: Timed, step) -> dict:
    """Every measurement of one (method, budget); `step(name)` reports progress."""
    config = preset.config
    remove_pruning(model)
    inputs = prompt_batch(preset, 1, device, dtype, args.prompt)
    kept = None
    if method == "oracle":
        with torch.inference_mode():
            kept = vispruner_kept(model, tokens, inputs["pixel_values"])
    pruner = make_pruner(method, tokens, config, kept)
    if pruner is not None:
        attach_pruner(model, pruner)
    case = {
        "method": method,
        "tokens_per_image": tokens,
        "visual_tokens": tokens * preset.images,
        "options": pruner.options if pruner is not None else {},
    }
    cuda = device.type == "cuda"
    with torch.inference_mode():
        step("time to first token")
        case["ttft"] = timed(lambda: first_token(model, inputs))
        step("image features")
        case["image_features"] = timed(lambda: model.model.get_image_features(pixel_values=inputs["pixel_values"]))
        step("scoring and selection")
        case["scoring"], case["selection"] = selection_times(model, pruner, inputs["pixel_values"], timed)
        case.update(cache_bytes(model, inputs, args.prompt))
        step("generate")
        case["generate_1"] = timed(lambda: generate(model, inputs, 1))
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        case["end_to_end"] = timed(lambda: generate(model, inputs, args.answer_tokens))
        case["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
        case["generate_decode"] = timed(lambda: generate(model, inputs, 1 + args.decode_tokens))
        # Decode per token: the difference of two generate medians timed in this run (one extra prefill cancels).
        case["decode_ms_per_token"] = (
            case["generate_decode"]["median_ms"] - case["generate_1"]["median_ms"]
        ) / args.decode_tokens
        case["throughput"] = {}
        for batch in args.batch:
            step(f"prefill throughput, batch {batch}")
            batched = prompt_batch(preset, batch, device, dtype, args.prompt)
            case["throughput"][str(batch)] = throughput(model, batched, batch, timed)
    remove_pruning(model)
    cost = prefill_flops(config, pruner, images=preset.images, prompt=args.prompt)
    case["flops"] = {"prefill": cost.total, "parts": {k: v for k, v in cost.as_dict().items() if isinstance(v, int)}}
    case["expected_kv_cache_bytes"] = cost.kv_cache_bytes(torch.finfo(dtype).bits // 8)
    return case
