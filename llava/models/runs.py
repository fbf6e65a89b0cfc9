"""Rewrite a tokenised batch token by token: drop, keep or repeat each token, then re-pad the rows.

The processor writes N placeholders per image (video); a pruned model fills only the kept count.
Every family's rewrite is one operation: give every token a count (0 = drop, 1 = keep, k = repeat
k times) and rebuild the rows (`retile`). `rewrite_placeholders` is the usual case: each item's run
of placeholders cut (or grown: LLaVA-NeXT's paper layout can hold more tokens than the processor
wrote for a wide image) to its kept count from the tail, so the text and its order stay intact and
the visual tokens keep contiguous positions. Qwen2-VL drops chosen placeholders instead of the
tail (its kept tokens keep their M-RoPE positions) and calls `retile` with its own counts.
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


def rewrite_placeholders(
    given: dict, token_id: int, written: Sequence[int], fed: Sequence[int], pad_token_id: int, hint: str = ""
) -> dict | None:
    """`input_ids`, `attention_mask` and `labels` of the call arguments `given` with each run of
    `token_id` (lengths `written`, one per item in batch-major order) turned into a run of `fed`
    tokens; None when there is nothing to rewrite (no input_ids, nothing pruned, or a prompt already
    holding the fed counts). A prompt holding neither count raises ValueError (`hint` is appended)."""
    input_ids = given.get("input_ids")
    if input_ids is None or list(written) == list(fed):
        return None
    counts = run_counts(input_ids, token_id, written, fed)
    if counts is None:
        found = int((input_ids == token_id).sum())
        if found == sum(fed):
            return None
        raise ValueError(
            f"the prompt holds {found} placeholders of token {token_id}; the {len(written)} item(s) passed "
            f"need {sum(written)} ({', '.join(map(str, written))}){hint}"
        )
    (ids, labels), mask = retile(
        counts, [(input_ids, pad_token_id), (given.get("labels"), -100)], given.get("attention_mask")
    )
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


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
