"""The language model's token sequence as in-LLM pruning methods see it, and pure operations on it.

A `Sequence` is one batch of hidden states between two decoder layers together with what a method
needs to shorten it: rotary positions, the padding mask, which tokens are visual (and from which
image of their row), and where each token came from in the prefill input.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import torch


class AttentionRows(Protocol):
    def __call__(self, query_index: torch.Tensor) -> torch.Tensor:
        """Softmax attention [B, H, Q, L] (float32) of the tokens at `query_index` [B, Q] over the sequence,
        causal and padding-masked, as the layer computes it."""


@dataclass
class Sequence:
    """hidden [B, L, C]; positions [B, L] rotary positions, or [B, L, S] for M-RoPE (Qwen2-VL's
    temporal, height and width sections, last so that every [B, L, ...] field is gathered alike);
    mask [B, L] bool (False = padding);
    image [B, L] long: index of the image a visual token belongs to within its row, -1 for text and
    padding; origin [B, L] long: the token's index in the prefill input, -1 for tokens made by merging."""

    hidden: torch.Tensor
    positions: torch.Tensor
    mask: torch.Tensor
    image: torch.Tensor
    origin: torch.Tensor

    @property
    def visual(self) -> torch.Tensor:
        return self.image >= 0

    def images_per_row(self) -> torch.Tensor:
        return self.image.amax(dim=1).clamp(min=-1) + 1

    def visual_per_row(self) -> torch.Tensor:
        return self.visual.sum(dim=1)


def last_real_index(mask: torch.Tensor) -> torch.Tensor:
    """Index [B] of the last non-padding token of each row (the last prompt token)."""
    length = mask.shape[1]
    return length - 1 - mask.flip(1).to(torch.int8).argmax(dim=1)


def right_padded(mask: torch.Tensor) -> bool:
    return bool((~mask[:, -1]).any())


def top_visual(scores: torch.Tensor, visual: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mask [B, L] of the `counts[b]` visual tokens with the highest `scores` in each row; ties go to
    the earlier token."""
    masked = scores.float().masked_fill(~visual, float("-inf"))
    order = torch.argsort(masked, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(order.shape[1], device=order.device).expand_as(order)
    )
    return visual & (rank < counts[:, None])


def keep_tokens(
    sequence: Sequence,
    keep: torch.Tensor,
    inserted: Sequence | None = None,
    insert_after: torch.Tensor | None = None,
) -> Sequence:
    """The tokens where `keep` [B, L] is True, in their order, plus the valid tokens of `inserted`
    placed right after token `insert_after[b]` of each row.

    Rows that end up shorter than the longest are padded (mask False) on the side the batch is
    padded on: at the start for left-padded or unpadded batches (so the last prompt token stays
    last, as generation needs), at the end for right-padded ones.
    """
    batch, length = keep.shape
    columns = torch.arange(length, device=keep.device)
    kept_slot = keep.long().cumsum(dim=1) - 1
    count = keep.sum(dim=1)
    if inserted is not None:
        valid = inserted.mask
        num_inserted = valid.sum(dim=1)
        after = columns[None, :] > insert_after[:, None]
        kept_slot = kept_slot + after.long() * num_inserted[:, None]
        before = (keep & ~after).sum(dim=1)
        inserted_slot = before[:, None] + valid.long().cumsum(dim=1) - 1
        count = count + num_inserted
    new_length = int(count.max())
    offset = torch.zeros_like(count) if right_padded(sequence.mask) else new_length - count

    def place(fill, source, source_inserted):
        out = source.new_full((batch, new_length, *source.shape[2:]), fill)
        rows = torch.arange(batch, device=keep.device)[:, None].expand(batch, length)
        out[rows[keep], (offset[:, None] + kept_slot)[keep]] = source[keep]
        if inserted is not None:
            rows_i = torch.arange(batch, device=keep.device)[:, None].expand_as(valid)
            out[rows_i[valid], (offset[:, None] + inserted_slot)[valid]] = source_inserted[valid]
        return out

    def field(name, fill):
        return place(fill, getattr(sequence, name), None if inserted is None else getattr(inserted, name))

    return Sequence(
        hidden=field("hidden", 0),
        positions=field("positions", 0),
        mask=field("mask", False),
        image=field("image", -1),
        origin=field("origin", -1),
    )


def compact_positions(sequence: Sequence) -> Sequence:
    """The same tokens with their rotary positions renumbered as if the dropped tokens had never been there.

    1-D positions: 0, 1, 2, ... (from the row's first position) over the non-padding tokens.

    M-RoPE positions [B, L, S] (an image's tokens share a temporal position and span a height x width
    square, so "the next number" is not defined): walking a row's kept tokens in order, each token's
    shift (subtracted from all its sections alike, so the 3-D layout inside an image or video stays)
    grows by max(0, min over sections of its old positions - max over sections and over the kept
    tokens before it of their old positions - 1): the gap dropped tokens left closes, nothing moves
    closer than it was. A token made by merging (origin -1) is placed at 1 + the highest new position
    so far, in every section, and moves the tokens after it one further (their shift shrinks by 1), as
    a kept token would. For 1-D positions that increase along the row this is exactly the renumbering
    above (tests check it); the row's first token keeps its position."""
    if sequence.positions.dim() == 2:
        first = sequence.mask.to(torch.int8).argmax(dim=1, keepdim=True)
        start = sequence.positions.gather(1, first)
        positions = (start + sequence.mask.long().cumsum(dim=1) - 1).clamp(min=0)
        return replace(sequence, positions=positions.masked_fill(~sequence.mask, 0))
    return replace(sequence, positions=_close_gaps(sequence.positions, sequence.mask, sequence.origin))


def _close_gaps(positions: torch.Tensor, mask: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """`compact_positions`' M-RoPE rule, vectorised over the row: cumulative maxima replace the walk."""
    kept = mask & (origin >= 0)
    merged = (mask & (origin < 0)).long()
    low, high = positions.amin(dim=-1), positions.amax(dim=-1)  # [B, L]
    floor = low.gather(1, kept.to(torch.int8).argmax(dim=1, keepdim=True)) - 1  # the first kept token stays

    def before(values: torch.Tensor) -> torch.Tensor:
        """Running maximum over the kept tokens strictly before each token (`floor` before the first)."""
        running = torch.where(kept, values, floor).cummax(dim=1).values
        return torch.cat([floor, running[:, :-1]], dim=1)

    gap = torch.where(kept, (low - before(high) - 1).clamp(min=0), 0)
    shift = (gap - merged).cumsum(dim=1)
    renumbered = positions - shift[..., None]
    merged_before = merged.cumsum(dim=1) - merged
    # The highest new position before a merged token: the kept tokens' highest (each counted with the
    # merged tokens before it taken off), plus the merged tokens placed so far.
    top = merged_before + before(renumbered.amax(dim=-1) - merged_before)
    placed = torch.where(merged.bool()[..., None], (top + 1)[..., None].expand_as(positions), renumbered)
    return placed.masked_fill(~mask[..., None], 0)
