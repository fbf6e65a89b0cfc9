"""Single attention rows computed beside SDPA, so no model ever has to switch to eager attention.

Eager attention materialises an N x N map per head in every layer only to expose it; a pruning
signal needs one query row of one layer. The helpers here capture that layer's own query and key
projections as it runs (no extra matmuls) and turn one query row into softmax weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def capture_projections(attention: nn.Module, query_rows: slice) -> Iterator[dict[str, torch.Tensor]]:
    """While active, the next forward of `attention` stores `query` (its q_proj output at `query_rows`)
    and `key` (its full k_proj output) in the yielded dict."""
    store: dict[str, torch.Tensor] = {}
    handles = [
        attention.q_proj.register_forward_hook(lambda _m, _i, out: store.__setitem__("query", out[:, query_rows])),
        attention.k_proj.register_forward_hook(lambda _m, _i, out: store.__setitem__("key", out)),
    ]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def row_softmax(query: torch.Tensor, key: torch.Tensor, num_heads: int, scale: float) -> torch.Tensor:
    """Softmax attention of the given query rows over all keys, per head, in float32.

    query: [B, Q, D] projected queries; key: [B, N, D] projected keys (same heads, no grouping).
    Returns [B, H, Q, N].
    """
    batch, num_queries, width = query.shape
    head_dim = width // num_heads
    q = query.float().view(batch, num_queries, num_heads, head_dim).transpose(1, 2)
    k = key.float().view(batch, key.shape[1], num_heads, head_dim).transpose(1, 2)
    return torch.softmax((q @ k.transpose(-1, -2)) * scale, dim=-1)


def rotate(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding (the rotate-half form Llama-style models use): states [B, H, Q, d], cos/sin [B, Q, d]."""
    cos, sin = cos[:, None], sin[:, None]
    half = states.shape[-1] // 2
    rotated = torch.cat((-states[..., half:], states[..., :half]), dim=-1)
    return states * cos + rotated * sin


def causal_rows_softmax(
    query: torch.Tensor,
    key: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    query_index: torch.Tensor,
    key_mask: torch.Tensor,
    num_heads: int,
    num_key_value_heads: int,
    scale: float,
) -> torch.Tensor:
    """Causal softmax attention of a few query rows of a rotary decoder layer, in float32.

    query: [B, Q, H * d] projected queries of the tokens at `query_index` [B, Q];
    key:   [B, L, H_kv * d] projected keys of the whole sequence (grouped heads are shared);
    cos, sin: [B, L, d] the layer's rotary tables for the sequence; key_mask: [B, L] False = padding, or
    [B, Q, L] per row (e.g. padding and a sliding window).
    Returns [B, H, Q, L]: each row attends to the unmasked tokens at or before it.
    """
    batch, num_queries, _ = query.shape
    length = key.shape[1]
    head_dim = key.shape[-1] // num_key_value_heads
    gather = query_index[..., None].expand(-1, -1, cos.shape[-1])
    q = query.float().view(batch, num_queries, num_heads, head_dim).transpose(1, 2)
    k = key.float().view(batch, length, num_key_value_heads, head_dim).transpose(1, 2)
    q = rotate(q, cos.float().gather(1, gather), sin.float().gather(1, gather))
    k = rotate(k, cos.float(), sin.float()).repeat_interleave(num_heads // num_key_value_heads, dim=1)
    scores = (q @ k.transpose(-1, -2)) * scale
    rows_mask = key_mask if key_mask.dim() == 3 else key_mask[:, None, :]
    visible = rows_mask & (torch.arange(length, device=key.device) <= query_index[..., None])
    return torch.softmax(scores.masked_fill(~visible[:, None], float("-inf")), dim=-1)


def split_heads(projected: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, N, H * d] projections -> [B, H, N, d]."""
    batch, length, width = projected.shape
    return projected.view(batch, length, num_heads, width // num_heads).transpose(1, 2)


def mean_received_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    scale: float,
    max_elements: int = 1 << 24,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean softmax attention each key receives from all queries, per head, in float32.

    query: [B, H, Nq, d]; key: [B, H, Nk, d] (rotary embeddings already applied where the model uses
    them). Returns [B, H, Nk]: (1/Nq) * sum over queries of softmax(q k^T * scale). The signal for
    encoders without [CLS]: each batch row's queries are processed in chunks of at most `max_elements`
    weights, so no full Nq x Nk map is held unless it is that small, and a row's result does not depend
    on the rest of the batch (an image scores the same alone as in a batch).

    mask: [B, N] (Nq == Nk == N), False for padding tokens (e.g. the padded patches of a smaller image):
    as in the encoder's own attention, no query attends to them, so they receive nothing, and the mean
    is over the real queries only (a padding query's row is not one of the image's tokens).
    """
    batch, heads, num_queries, _ = query.shape
    num_keys = key.shape[2]
    k = key.float().transpose(-1, -2)
    # chunks of one batch row: a row's sum runs in the same order whatever else the batch holds
    chunk = max(1, max_elements // max(1, heads * num_keys))
    bias = None  # [B, 1, 1, Nk]: -inf at padding keys
    if mask is not None:
        bias = torch.zeros(mask.shape, dtype=torch.float32, device=key.device)
        bias = bias.masked_fill(~mask.bool(), float("-inf"))[:, None, None, :]
    received = query.new_zeros((batch, heads, num_keys), dtype=torch.float32)
    for row in range(batch):
        for start in range(0, num_queries, chunk):
            scores = (query[row, :, start : start + chunk].float() @ k[row]) * scale  # [H, chunk, Nk]
            if mask is None:
                received[row] += torch.softmax(scores, dim=-1).sum(dim=1)
            else:
                counted = mask[row, None, start : start + chunk, None].to(torch.float32)  # real queries only
                received[row] += (torch.softmax(scores + bias[row], dim=-1) * counted).sum(dim=1)
    if mask is None:
        return received / num_queries
    return received / mask.sum(dim=-1).clamp(min=1)[:, None, None].to(torch.float32)
