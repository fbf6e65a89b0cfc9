"""Shrink each image's run of placeholder tokens in a tokenised batch from N to the kept count T.

The processor writes N `<image>` tokens per image; a pruned model fills only T of them. Dropping
the tail of every run (not whole rows, not the text) keeps the prompt text and its order intact and
gives the visual tokens contiguous positions. Rows that lose different amounts (different numbers
of images) are re-padded on the side the batch was padded on (left when unpadded, as generation wants).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ShrunkBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    labels: torch.Tensor | None


def shrink_image_runs(
    input_ids: torch.Tensor,
    image_token_id: int,
    num_images: int,
    tokens_per_image: int,
    kept_per_image: int,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    pad_token_id: int = 0,
) -> ShrunkBatch | None:
    """Drop the last N - T placeholders of each image's run; None when the batch holds no full runs.

    A batch is left as it is (None) when its placeholder count is not `num_images * tokens_per_image`,
    e.g. one already shrunk, so the call is safe on every forward.
    """
    if kept_per_image >= tokens_per_image:
        return None
    is_image = input_ids == image_token_id
    if int(is_image.sum()) != num_images * tokens_per_image:
        return None
    rank_in_run = (is_image.cumsum(dim=-1) - 1) % tokens_per_image
    keep = ~(is_image & (rank_in_run >= kept_per_image))
    lengths = keep.sum(dim=-1)
    new_length = int(lengths.max())

    if bool((lengths == new_length).all()):

        def take(tensor):
            return None if tensor is None else tensor[keep].view(input_ids.shape[0], new_length)

        return ShrunkBatch(take(input_ids), take(attention_mask), take(labels))

    right_padded = attention_mask is not None and bool((attention_mask[:, -1] == 0).any())
    if attention_mask is not None:  # re-padding from scratch: old padding goes too
        keep &= attention_mask.bool()
        lengths = keep.sum(dim=-1)
        new_length = int(lengths.max())
    offset = torch.zeros_like(lengths) if right_padded else new_length - lengths
    column = (keep.cumsum(dim=-1) - 1 + offset[:, None])[keep]
    row = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(keep)[keep]

    def scatter(tensor, fill):
        if tensor is None:
            return None
        out = tensor.new_full((input_ids.shape[0], new_length), fill)
        out[row, column] = tensor[keep]
        return out

    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    return ShrunkBatch(scatter(input_ids, pad_token_id), scatter(mask, 0), scatter(labels, -100))
