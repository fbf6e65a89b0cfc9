"""Qwen2-VL / Qwen2.5-VL / Qwen3-VL vision towers: merged tokens, their pre-merger features and the
attention they receive at the last vision block, for pruning the merged tokens.

The tower has no [CLS] token. Importance is the mean attention each patch token receives from all
tokens it attends to in the last block (the merger's input layer; its own image, or its window for
a windowed Qwen2.5-VL block), computed from the block's own `qkv` output and rotary embeddings in
query chunks beside SDPA. The PatchMerger joins 2x2 patches into one token; the attention is joined
the same way (summed over the four patches) and so are the features (the four pre-merger vectors
concatenated, the merger's own grouping before its MLP), so the method prunes merged tokens, the
ones the language model sees (VisPruner issue #1). Videos go through the same tower: a video's
temporal patches are attention segments of their own, and its merged tokens are laid out as its
frames' grids stacked as rows. Qwen3-VL's tower (patch 16, learned position embeddings added to the
patches, the same `qkv` block attention) also merges the output of a few intermediate blocks with
mergers of their own (DeepStack, `deepstack_visual_indexes`); those levels come out in the same merged
token order, for the host to keep the same tokens of each.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
from transformers.vision_utils import get_vision_window_index

from ..attention import mean_received_attention

SIGNALS = frozenset({"received_attention"})
NOTE = " (the Qwen-VL tower has no [CLS] token)"


@dataclass
class MergedTokens:
    """One batch of images through the tower, in the language model's token order."""

    tokens: torch.Tensor  # [G, D] merged tokens (the stock `pooler_output`)
    features: torch.Tensor  # [G, 4 C] pre-merger features of each merged token's 2x2 patches
    attention: torch.Tensor | None  # [H, G] attention received, summed over each 2x2 group
    counts: list[int]  # merged tokens per image
    grids: list[tuple[int, int]]  # (rows, cols) of merged tokens per image (frames stacked as rows)
    deepstack: list[torch.Tensor] = field(default_factory=list)  # [G, D] per DeepStack level (Qwen3-VL)


def encode(
    visual, pixel_values: torch.Tensor, grid_thw: torch.Tensor, signals: frozenset[str] = frozenset()
) -> MergedTokens:
    """Run the stock tower once on images or videos (`grid_thw` [N, 3]); the `signals` (of `SIGNALS`)
    asked for are kept by forward hooks on its last block, so nothing is computed twice."""
    unknown = set(signals) - SIGNALS
    if unknown:
        raise ValueError(
            f"a Qwen2-VL / Qwen2.5-VL / Qwen3-VL tower provides {', '.join(sorted(SIGNALS))}; asked for {', '.join(sorted(unknown))}"
        )
    with_attention = "received_attention" in signals
    attention = visual.blocks[-1].attn
    store: dict = {}

    def keep_inputs(_module, _args, kwargs):
        store.update(cu_seqlens=kwargs["cu_seqlens"], position_embeddings=kwargs["position_embeddings"])

    handles = []
    if with_attention:
        handles.append(attention.register_forward_pre_hook(keep_inputs, with_kwargs=True))
        handles.append(attention.qkv.register_forward_hook(lambda _m, _i, out: store.__setitem__("qkv", out)))
    try:
        output = visual(pixel_values.type(visual.dtype), grid_thw=grid_thw)
    finally:
        for handle in handles:
            handle.remove()

    unit = visual.spatial_merge_size**2
    hidden = output.last_hidden_state  # merger input, in the tower's (window) order
    order = _merge_order(visual, grid_thw)  # window-ordered group of each merged token in image order
    features = hidden.reshape(-1, unit * hidden.shape[-1])
    received = None
    if with_attention:
        received = received_attention(attention, store).reshape(attention.num_heads, -1, unit).sum(-1)
    if order is not None:
        features = features[order]
        received = None if received is None else received[:, order]
    merge = visual.spatial_merge_size
    counts = (grid_thw.prod(-1) // unit).tolist()
    grids = [(int(t * h // merge), int(w // merge)) for t, h, w in grid_thw.tolist()]
    deepstack = list(getattr(output, "deepstack_features", None) or ())
    if order is not None:
        deepstack = [level[order] for level in deepstack]
    return MergedTokens(output.pooler_output, features, received, counts, grids, deepstack)


def _merge_order(visual, grid_thw):
    """For Qwen2.5-VL's windowed tower: positions of the merged groups in image order, else None."""
    if not hasattr(visual, "window_size"):
        return None
    window_index, _ = get_vision_window_index(
        grid_thw, visual.spatial_merge_size, visual.window_size, visual.patch_size
    )
    return torch.argsort(window_index.to(grid_thw.device))


def received_attention(attention, store: dict) -> torch.Tensor:
    """[H, N] mean attention each token receives within its attention segment, from what a forward of
    the block's `attention` left in `store`: its `qkv` output and its `cu_seqlens` and
    `position_embeddings` arguments."""
    qkv = store["qkv"]
    length = qkv.shape[0]
    query, key, _ = qkv.reshape(length, 3, attention.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = store["position_embeddings"]
    rotate = sys.modules[type(attention).__module__].apply_rotary_pos_emb_vision  # the model's own rotary code
    query, key = rotate(query, key, cos, sin)
    bounds = store["cu_seqlens"].tolist()
    parts = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        q = query[start:end].transpose(0, 1)[None]
        k = key[start:end].transpose(0, 1)[None]
        parts.append(mean_received_attention(q, k, attention.scaling)[0])
    return torch.cat(parts, dim=-1)
