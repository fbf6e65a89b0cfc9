"""In-LLM methods (FastV, PDrop, SparseVLM) on any family whose language model is a Llama-style decoder.

The images and videos are encoded and placed the stock way; the language model's layer loop is
replaced (`decoder.py`) and `model.model.forward` tells that loop which prompt tokens are visual:
each run of placeholder tokens is one item (an image, or a whole video), split further where a
family writes a known number of placeholders per item (so two adjacent images stay two items).
`visual_token_num` is then a budget per item: an image keeps T tokens, a video T in total over its
frames (the paper's Video-LLaVA rows count a video's tokens that way; where a family writes each frame
as its own run, e.g. Qwen3-VL with a timestamp before each, `Placeholders.spans` joins the runs of one
video into one item). Anyres newline tokens are
placeholders too, so they are ranked with the image tokens, as in FastV's own code.
Logits cover the tokens the last layer kept, so `labels` are refused.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from . import decoder
from .common import Host


@dataclass(frozen=True)
class Placeholders:
    """How a family's prompts hold visual tokens.

    sources: placeholder token id -> "image" or "video";
    lengths: token id -> placeholders per item, where every item of that kind has the same count;
    grids:   token id -> (rows, cols) of one item's tokens, for tracing ((1, count) where not given);
    spans:   for items written as several runs, a function of the call's arguments giving, per token id,
             each item's placeholder count ([items] long, the batch's items in order): consecutive runs
             of that token join until they hold the item's count.
    bidirectional_with: the call argument whose presence makes the stock model let each item's tokens
             attend to each other both ways (Gemma 3: "token_type_ids"); None where attention is causal;
    prebuilt_masks: whether the stock model hands its language model masks it built (Gemma 3: one per
             layer type), so the pruning loop is given the call's 2-D padding mask to build its own.
    """

    sources: dict[int, str]
    lengths: dict[int, int] = field(default_factory=dict)
    grids: dict[int, tuple[int, int]] = field(default_factory=dict)
    spans: Callable[[dict], dict[int, torch.Tensor]] | None = None
    bidirectional_with: str | None = None
    prebuilt_masks: bool = False


def attach(host: Host, placeholders: Placeholders) -> None:
    """Prune inside `host`'s language model from now on (the host has checked the method's signals)."""
    items: dict[str, list] = {}  # the last prefill's items per row, for the trace
    on_stage = None if host.tracer is None else _stage_recorder(host, items)
    decoder.attach(language_model_of(host.inner), host.pruner, host.patch, on_stage)
    host.patch.set(host.inner, "forward", _marking_forward(host, placeholders, items))
    host.patch.set(host.model, "forward", _refusing_labels(host))


def language_model_of(inner):
    """The decoder of a multimodal model: `language_model`, or `text_model` as Idefics3 / SmolVLM name it."""
    return inner.text_model if hasattr(inner, "text_model") else inner.language_model


def item_index(
    input_ids: torch.Tensor, placeholders: Placeholders, spans: dict[int, torch.Tensor] | None = None
) -> torch.Tensor:
    """[B, L] item number (within its row) of each placeholder token, -1 for the other tokens. `spans`
    (token id -> placeholders per item, as `Placeholders.spans` gives them) joins consecutive runs into
    one item."""
    ids = torch.tensor(list(placeholders.sources), device=input_ids.device)
    visual = torch.isin(input_ids, ids)
    previous = torch.nn.functional.pad(input_ids[:, :-1], (1, 0), value=-1)
    starts = visual & (previous != input_ids)  # a run begins (a kind change begins one too)
    column = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    run_start = torch.where(starts, column, 0).cummax(dim=1).values
    length = torch.zeros_like(input_ids)
    for token_id, count in placeholders.lengths.items():
        length = torch.where(input_ids == token_id, count, length)
    splits = visual & (length > 0) & ((column - run_start) % length.clamp(min=1) == 0)
    starts = starts | splits
    for token_id, counts in (spans or {}).items():
        starts = starts & ~_continuing(input_ids == token_id, counts.to(input_ids.device))
    return torch.where(visual, starts.long().cumsum(dim=1) - 1, -1)


def _continuing(placeholder: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """[B, L]: the placeholders (`placeholder`, of one kind) that do not begin an item, the batch's items
    holding `counts` of them in turn (batch-major order)."""
    flat = placeholder.reshape(-1).long()
    before = (flat.cumsum(0) - flat).reshape(placeholder.shape)  # the kind's placeholders before each token
    return placeholder & ~torch.isin(before, counts.cumsum(0) - counts)


def _marking_forward(host: Host, placeholders: Placeholders, items: dict):
    inner = host.inner
    stock = inner.forward
    signature = inspect.signature(stock)

    @functools.wraps(stock)
    def forward(*args, **kwargs):
        call = signature.bind_partial(*args, **kwargs)
        given = call.arguments
        input_ids = given.get("input_ids")
        marks = {}
        if input_ids is not None:
            if placeholders.prebuilt_masks:
                marks[decoder.PADDING_MASK_KWARG] = given.get("attention_mask")
            if input_ids.shape[1] > 1:
                spans = placeholders.spans(given) if placeholders.spans is not None else None
                index = item_index(input_ids, placeholders, spans)
                marks[decoder.IMAGE_INDEX_KWARG] = index
                if placeholders.bidirectional_with and given.get(placeholders.bidirectional_with) is not None:
                    marks[decoder.BIDIRECTIONAL_KWARG] = True
                if host.tracer is not None:
                    items["rows"] = _describe_items(input_ids, index, placeholders)
        elif any(given.get(name) is not None for name in ("pixel_values", "pixel_values_videos", "mm_encoder_outputs")):
            raise ValueError(
                f"{host.pruner.name} prunes inside the language model and finds the visual tokens by their "
                "placeholders: pass input_ids, not inputs_embeds"
            )
        # by keyword only: the stock decorators fill config defaults (vision_feature_layer) by keyword too
        arguments = {name: value for name, value in given.items() if name != "kwargs"}
        return stock(**arguments, **given.get("kwargs", {}), **marks)

    return forward


def _describe_items(input_ids: torch.Tensor, index: torch.Tensor, placeholders: Placeholders) -> list:
    """Per row, (source, grid) of each item in order."""
    rows = []
    for ids, numbers in zip(input_ids.tolist(), index.tolist()):
        row: list = []
        for token, number in zip(ids, numbers):
            if number < 0:
                continue
            if number == len(row):
                row.append([token, 0])
            row[number][1] += 1
        rows.append([(placeholders.sources[t], placeholders.grids.get(t, (1, n))) for t, n in row])
    return rows


def _stage_recorder(host: Host, items: dict):
    """`on_stage` for the trace: one record per item and pruning layer, indices into the item's tokens."""
    from ..trace import ranks_within_image

    tracer = host.tracer

    def record(layer: int, prefill_image: torch.Tensor, sequence) -> None:
        ranks = ranks_within_image(prefill_image)
        counters = {"image": 0, "video": 0}
        for row, described in enumerate(items.get("rows", [])):
            origin, image = sequence.origin[row], sequence.image[row]
            for number, (source, grid) in enumerate(described):
                still_there = origin[(image == number) & (origin >= 0)]  # merged tokens have no origin
                kept = ranks[row, still_there].sort().values
                tracer.add(source, counters[source], source, grid, kept, layer=layer)
                counters[source] += 1

    return record


def _refusing_labels(host: Host):
    stock = host.model.forward
    signature = inspect.signature(stock)

    @functools.wraps(stock)
    def forward(*args, **kwargs):
        given = signature.bind_partial(*args, **kwargs).arguments
        if given.get("labels") is not None:
            raise ValueError(
                f"labels are not supported with {host.pruner.name}: it drops tokens inside the language "
                "model, so the logits cover the kept tokens only"
            )
        routers = given.get("output_router_logits")
        if routers is None:
            routers = getattr(host.config.get_text_config(), "output_router_logits", False)
        if routers:  # a mixture-of-experts model's load-balancing loss needs every layer at full length
            raise ValueError(
                f"output_router_logits is not supported with {host.pruner.name}: it drops tokens inside the "
                "language model, so layers after its pruning layer route fewer tokens than the attention mask holds"
            )
        return stock(*args, **kwargs)

    return forward
