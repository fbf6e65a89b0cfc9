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
    given: dict,
    token_id: int,
    written: Sequence[int],
    fed: Sequence[int],
    pad_token_id: int,
    hint: str = "",
    kind: str = "item",
    per_token: Sequence[tuple[str, int]] = (),
) -> dict | None:
    """`input_ids`, `attention_mask` and `labels` of the call arguments `given` with each run of
    `token_id` (lengths `written`, one per item in batch-major order) turned into a run of `fed`
    tokens; None when there is nothing to rewrite (no input_ids, nothing pruned, or a prompt already
    holding the fed counts). A prompt holding neither count, or holding the written count in runs that
    do not split into whole items (also when nothing is pruned), raises ValueError naming the counts
    (`kind`: what an item is, e.g. "image"; `hint` is appended). `per_token`: (name, padding value) of
    further [B, L] arguments rewritten alongside when the call has them (e.g. Gemma 3's token_type_ids)."""
    input_ids = given.get("input_ids")
    if input_ids is None:
        return None
    if list(written) == list(fed):  # nothing to rewrite; the prompt must still hold the items' runs
        check_placeholders(given, token_id, written, hint, kind)
        return None
    counts = run_counts(input_ids, token_id, written, fed)
    if counts is None:
        found = int((input_ids == token_id).sum())
        if found == sum(fed):
            return None
        raise ValueError(
            f"pruning: the prompt holds {found} placeholders of token {token_id}; the {len(written)} {kind}(s) "
            f"passed need {sum(written)} ({_listed(written)}) as the processor writes them, or {sum(fed)} "
            f"({_listed(fed)}) once pruned{hint}"
        )
    _check_runs(given, token_id, written, hint, kind)
    further = [(given.get(name), fill) for name, fill in per_token]
    (ids, labels, *rebuilt), mask = retile(
        counts, [(input_ids, pad_token_id), (given.get("labels"), -100), *further], given.get("attention_mask")
    )
    extra = {name: tensor for (name, _), tensor in zip(per_token, rebuilt) if tensor is not None}
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, **extra}


def check_placeholders(given: dict, token_id: int, written: Sequence[int], hint: str = "", kind: str = "item") -> None:
    """Raise ValueError unless the call's `input_ids` hold the runs of `token_id` the items need (lengths
    `written`, as the processor writes them): for pruning that leaves the placeholders as they are."""
    input_ids = given.get("input_ids")
    if input_ids is None:
        return
    found = int((input_ids == token_id).sum())
    if found != sum(written):
        raise ValueError(
            f"pruning: the prompt holds {found} placeholders of token {token_id}; the {len(written)} {kind}(s) "
            f"passed need {sum(written)} ({_listed(written)}) as the processor writes them{hint}"
        )
    _check_runs(given, token_id, written, hint, kind)


def _check_runs(given: dict, token_id: int, written: Sequence[int], hint: str, kind: str) -> None:
    runs = placeholder_runs(given["input_ids"], token_id, given.get("attention_mask"))
    if not splits_into(runs, written):
        raise ValueError(
            f"pruning: the prompt's runs of placeholder token {token_id} are {_listed(runs)} long; the "
            f"{len(written)} {kind}(s) passed need one run each of {_listed(written)} placeholders, in order "
            f"(adjacent {kind}s may share a run){hint}"
        )


def _listed(counts: Sequence[int], limit: int = 8) -> str:
    counts = [int(c) for c in counts]
    if len(set(counts)) == 1 and len(counts) > 1:
        return f"{counts[0]} each"
    shown = ", ".join(map(str, counts[:limit]))
    return shown + (f", ... ({len(counts)} in all)" if len(counts) > limit else "")


def placeholder_runs(input_ids: torch.Tensor, token_id: int, attention_mask: torch.Tensor | None = None) -> list[int]:
    """Lengths of the maximal runs of `token_id` within each row, rows in order (padding ignored)."""
    is_placeholder = input_ids == token_id
    if attention_mask is not None and attention_mask.shape == input_ids.shape:
        is_placeholder = is_placeholder & attention_mask.bool()
    runs = []
    for row in is_placeholder.tolist():
        length = 0
        for flag in row + [False]:
            if flag:
                length += 1
            elif length:
                runs.append(length)
                length = 0
    return runs


def splits_into(runs: Sequence[int], items: Sequence[int]) -> bool:
    """Whether consecutive `items` lengths add up to each of `runs` in turn (every run whole items)."""
    position, total = 0, 0
    for run in runs:
        total = 0
        while total < run and position < len(items):
            total += items[position]
            position += 1
        if total != run:
            return False
    return position == len(items)


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
