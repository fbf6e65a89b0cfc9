"""Merged tokens, pre-merger features and received attention of vLLM's Qwen2.5-VL tower
(`vllm.model_executor.models.qwen2_5_vl.Qwen2_5_VisionTransformer`), as the library's
`llava.models.qwen_vision.MergedTokens`.

The tower runs once. Forward hooks keep the merger's input (at its norm) (the four pre-merger vectors of each merged
token) and the last block's `qkv` output; the attention each token receives there is the library's own
`received_attention`, given that block's attention segments and rotary tables, which the tower takes
from the encoder metadata this module computes and hands to it (so nothing is computed twice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# `received_attention` applies the rotary code of the module its attention object's class lives in:
# `LastBlockAttention` lives here, and vLLM's tables, widened to the full head, are transformers' format.
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision  # noqa: F401

from llava.models.qwen_vision import SIGNALS, MergedTokens, received_attention

__all__ = ["SIGNALS", "LastBlockAttention", "check_tower", "encode"]


@dataclass(frozen=True)
class LastBlockAttention:
    """What `received_attention` reads of the last block's attention: its heads and softmax scale."""

    num_heads: int
    scaling: float


def check_tower(visual) -> None:
    """ValueError unless every head of the last block is on this rank (tensor parallelism splits them)."""
    attention = visual.blocks[-1].attn
    heads = visual.blocks[-1].attn.qkv.total_num_heads
    if attention.num_attention_heads_per_partition != heads:
        raise ValueError(
            "pruning needs all heads of the vision tower's last block on one rank; tensor parallelism splits "
            f"its {heads} heads (tensor_parallel_size > 1 is not supported)"
        )


def encode(visual, pixel_values: torch.Tensor, grid_thw: list[list[int]], signals: frozenset[str]) -> MergedTokens:
    """The tower on images (`grid_thw`: [t, h, w] per image), with the `signals` (of `SIGNALS`) asked for."""
    metadata = visual.prepare_encoder_metadata(grid_thw)
    last = len(visual.blocks) - 1
    attention = visual.blocks[last].attn
    store: dict[str, torch.Tensor] = {}
    # On the merger's norm: vLLM's compile wrapper replaces the merger's own __call__, which skips its hooks.
    merger_norm = visual.merger.ln_q
    handles = [merger_norm.register_forward_pre_hook(lambda _m, args: store.__setitem__("merger_input", args[0]))]
    if "received_attention" in signals:
        handles.append(attention.qkv.register_forward_hook(lambda _m, _i, out: store.__setitem__("qkv", out[0])))
    try:
        tokens = visual(pixel_values, grid_thw, encoder_metadata=metadata)
    finally:
        for handle in handles:
            handle.remove()
    unit = visual.spatial_merge_unit
    order = metadata["reverse_indices"]  # the tower runs in window order; merged tokens come back in image order
    hidden = store["merger_input"].flatten(0, 1)  # [patches, 1, C] -> [patches, C]
    features = hidden.reshape(-1, unit * hidden.shape[-1])[order]
    received = None
    if "received_attention" in signals:
        segments = metadata["cu_seqlens" if last in visual.fullatt_block_indexes else "cu_window_seqlens"]
        cos, sin = metadata["rotary_pos_emb_cos"], metadata["rotary_pos_emb_sin"]  # the half rotated per token
        qkv = store["qkv"].flatten(0, 1)
        heads, head_dim = attention.num_attention_heads_per_partition, attention.hidden_size_per_attention_head
        kept = {"qkv": qkv, "cu_seqlens": segments, "position_embeddings": (cos.repeat(1, 2), sin.repeat(1, 2))}
        received = received_attention(LastBlockAttention(heads, head_dim**-0.5), kept)
        received = received.reshape(heads, -1, unit).sum(-1)[:, order]
    merge = visual.spatial_merge_size
    counts = [t * h * w // unit for t, h, w in grid_thw]
    grids = [(t * h // merge, w // merge) for t, h, w in grid_thw]
    return MergedTokens(tokens, features, received, counts, grids)
