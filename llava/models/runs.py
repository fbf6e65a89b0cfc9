"""Rewrite a tokenised batch token by token: drop, keep or repeat each token, then re-pad the rows.

`placeholders.shrink_image_runs` covers runs of one fixed length cut to a shorter fixed length. The
families here need more: runs whose lengths differ per image (anyres layouts, Qwen's dynamic
resolution), runs that grow (LLaVA-NeXT's paper layout can hold more tokens than the processor
wrote for a wide image), and dropping chosen placeholders rather than the tail (Qwen keeps the
positions of the tokens it keeps). All of them are one operation: give every token a count
(0 = drop, 1 = keep, k = repeat k times) and rebuild the rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def retile(
    counts: torch.Tensor,
    tensors: Sequence[tuple[torch.Tensor | None, int]],
    attention_mask: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor | None], torch.Tensor | None]:
    """Repeat each token `counts` [B, L] times in every tensor and re-pad the rows.

    tensors: (tensor [..., B, L] or None, fill value for new padding) pairs, e.g. (input_ids, pad_id),
    (labels, -100), (position_ids [3, B, L], 0). Old padding (attention_mask == 0) is dropped and
    rows are re-padded on the side the batch was padded on (left when it was unpadded, as
    generation wants). Returns the rebuilt tensors and the new attention mask (None when there was
    none and no row needs padding).
    """
    batch, length = counts.shape
    if attention_mask is not None:
        counts = counts * attention_mask.to(counts.dtype)
    lengths = counts.sum(dim=-1)
    new_length = int(lengths.max())
    right_padded = attention_mask is not None and bool((attention_mask[:, -1] == 0).any())
    needs_padding = bool((lengths != new_length).any())

    source = torch.repeat_interleave(torch.arange(batch * length, device=counts.device), counts.flatten())
    row = source // length
    row_start = torch.cumsum(lengths, dim=0) - lengths
    offset = torch.zeros_like(lengths) if right_padded else new_length - lengths
    column = torch.arange(source.numel(), device=counts.device) - row_start[row] + offset[row]

    def rebuild(tensor: torch.Tensor, fill: int) -> torch.Tensor:
        out = tensor.new_full((*tensor.shape[:-2], batch, new_length), fill)
        out[..., row, column] = tensor.flatten(-2)[..., source]
        return out

    rebuilt = [None if tensor is None else rebuild(tensor, fill) for tensor, fill in tensors]
    mask = None
    if attention_mask is not None or needs_padding:
        mask = torch.zeros((batch, new_length), dtype=torch.long, device=counts.device)
        mask[row, column] = 1
        if attention_mask is not None:
            mask = mask.to(attention_mask.dtype)
    return rebuilt, mask


def run_counts(
    input_ids: torch.Tensor, token_id: int, old_lengths: Sequence[int], new_lengths: Sequence[int]
) -> torch.Tensor | None:
    """Per-token counts that turn each run of `token_id` (lengths `old_lengths`, in batch-major order
    of appearance, i.e. image order) into a run of `new_lengths`; None if the batch does not hold
    exactly those runs (e.g. it was rewritten already)."""
    is_placeholder = input_ids == token_id
    if int(is_placeholder.sum()) != sum(old_lengths):
        return None
    device = input_ids.device
    old = torch.as_tensor(list(old_lengths), device=device)
    new = torch.as_tensor(list(new_lengths), device=device)
    run = torch.repeat_interleave(torch.arange(len(old), device=device), old)  # run of each placeholder
    rank = torch.arange(run.numel(), device=device) - (torch.cumsum(old, 0) - old)[run]
    grow = (new - old).clamp(min=0)[run] * (rank == old[run] - 1)
    placeholder_counts = (rank < new[run]).long() + grow
    counts = torch.ones_like(input_ids, dtype=torch.long)
    counts[is_placeholder] = placeholder_counts
    return counts
