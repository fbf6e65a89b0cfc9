"""A layer loop for Llama-style decoders in which an in-LLM pruning method shortens the sequence.

`attach` replaces one language model's `forward` (per instance) with a loop over the same layers.
During prefill, before each of the method's stage layers it hands the current sequence and an
attention-row reader to `pruner.reduce`, and the layers after that run on the shortened sequence:

* attention rows are computed beside SDPA, never by switching to eager attention: for the layer
  that just ran, from the query/key projections it computed anyway (captured by forward hooks);
  for the layer about to run, by projecting the rows asked for and the keys (one extra k_proj);
* each run of layers between stages is a "group" whose KV-cache layers hold that group's tokens:
  the mask for a group is built against its own cache layer, so layers before the first stage keep
  the full prompt and later ones the pruned prompt;
* decoding continues consistently: the kept prompt's padding mask per group is remembered with
  the cache (a weak reference, so it is dropped with the cache), each new token's mask is appended
  to it, and rotary positions continue either from the original positions (methods that keep
  positions, e.g. FastV) or shifted by the number of tokens dropped before the group (methods that
  renumber positions, e.g. PDrop).

Positions: 1-D rotary models carry [B, L] positions, used for rotary tables, masks and layers alike.
M-RoPE models (Qwen2-VL / Qwen2.5-VL: `rotary_emb.mrope_section`) take [B, L], [3, B, L] or [4, B, L]
`position_ids` (row 0 of the last: the text positions the stock model builds masks with and hands its
layers); the loop keeps the sections as [B, L, 3] (last, so pruning gathers them like any per-token
field) and gives masks and layers the text positions as the stock model does before the first stage,
none after it (a pruned sequence always has an explicit mask: they would only feed packed-sequence
detection, and it is never packed).

Layer types (Gemma 3's `config.layer_types`): each group builds one mask and one rotary table per
type, each mask sized against that type's first cache layer in the group. A "sliding_attention" layer
lets a token see the earlier tokens whose *position* is within `config.sliding_window` of its own: on an
unpruned sequence that is the stock rule (which counts sequence indices, equal to position distances
there), and after a stage it keeps the window the model was trained with over the kept tokens' positions
(for methods that renumber positions, e.g. PDrop, position and index distances agree again). The
sliding cache layers keep the last `sliding_window - 1` kept tokens, a superset of what the window
shows. Attention rows read at a sliding layer are restricted to the window the same way. Where the
stock model lets an image's tokens attend to each other both ways (Gemma 3 with `token_type_ids`), the
prefill masks do so for each item's tokens that are still there (decode steps are text, as in the
stock model). Query/key norms (`self_attn.q_norm` / `k_norm`: Gemma 3, Qwen3) are applied to the rows
read as the layer applies them (per head, or over the full width, as the norm is sized). DeepStack
additions (Qwen3-VL) follow the kept tokens (`deepstack.py`).

The host passes, as keywords that the stock multimodal model forwards to its language model: which
prompt tokens are visual (`IMAGE_INDEX_KWARG`: [B, L] long, image number within the row or -1); the
2-D padding mask (`PADDING_MASK_KWARG`, for models whose stock forward hands the language model masks
it built already, e.g. Gemma 3's per-layer-type dict); and whether items attend to themselves both
ways (`BIDIRECTIONAL_KWARG`).
"""

from __future__ import annotations

import functools
import inspect
import types
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
from transformers import DynamicCache
from transformers.masking_utils import blockwise_overlay, create_causal_mask, sliding_window_overlay
from transformers.modeling_outputs import BaseModelOutputWithPast, MoeModelOutputWithPast
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from ..attention import capture_projections, causal_rows_softmax
from ..patching import InstancePatch
from ..pruning.base import LanguageModelPruner
from ..pruning.sequence import Sequence, last_real_index
from .deepstack import DeepStack

IMAGE_INDEX_KWARG = "pruning_image_index"
PADDING_MASK_KWARG = "pruning_padding_mask"
BIDIRECTIONAL_KWARG = "pruning_bidirectional_items"
FULL, SLIDING = "full_attention", "sliding_attention"
StageHook = Callable[[int, torch.Tensor, Sequence], None]
_REQUIRED = ("embed_tokens", "layers", "norm", "rotary_emb")
MROPE_SECTIONS = 3  # temporal, height, width: the rows of an M-RoPE model's rotary position_ids


@dataclass
class _Group:
    first_layer: int
    prefix_mask: torch.Tensor  # [B, L_g] the kept prompt tokens' padding mask
    shift: torch.Tensor  # [B] ([B, S] for M-RoPE) original minus renumbered positions of the last prompt token
    positions: torch.Tensor | None = None  # [B, L_g] the kept prompt tokens' positions (sliding windows after a stage)


@dataclass
class _Plan:
    prefill_length: int
    groups: list[_Group]


def check_supported(language_model) -> None:
    missing = [name for name in _REQUIRED if not hasattr(language_model, name)]
    attention = getattr(language_model.layers[0], "self_attn", None) if hasattr(language_model, "layers") else None
    if missing or not all(hasattr(attention, p) for p in ("q_proj", "k_proj", "head_dim", "scaling")):
        raise ValueError(
            f"in-LLM pruning needs a Llama-style decoder (embed_tokens, layers with self_attn.q_proj/k_proj, "
            f"norm, rotary_emb); {type(language_model).__name__} is not one"
        )
    if SLIDING in _layer_types(language_model) and hasattr(language_model.rotary_emb, "mrope_section"):
        raise ValueError(
            "in-LLM pruning keeps sliding windows over 1-D positions; an M-RoPE language model with "
            "sliding-window layers is not supported"
        )


def attach(
    language_model, pruner: LanguageModelPruner, patch: InstancePatch, on_stage: StageHook | None = None
) -> None:
    """Replace `language_model.forward` on this instance by the pruning layer loop. `on_stage(layer,
    prefill_image, sequence)` (tracing) is told each sequence a stage before `layer` kept."""
    check_supported(language_model)
    pruner.check_depth(len(language_model.layers))
    plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    # a mixture-of-experts decoder (e.g. Qwen3-VL-MoE) returns its routers' logits too: its caller reads them
    records = getattr(type(language_model), "_can_record_outputs", None) or {}
    output_type = MoeModelOutputWithPast if "router_logits" in records else BaseModelOutputWithPast

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        inputs_embeds=None,
        use_cache=None,
        **kwargs,
    ):
        image_index = kwargs.pop(IMAGE_INDEX_KWARG, None)
        padding = kwargs.pop(PADDING_MASK_KWARG, None)
        bidirectional = kwargs.pop(BIDIRECTIONAL_KWARG, False)
        deepstack = DeepStack.of(kwargs)
        if isinstance(attention_mask, dict):  # masks the stock multimodal model built; the loop builds its own
            attention_mask = padding
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        seen = past_key_values.get_seq_length() if past_key_values is not None else 0
        batch, length = inputs_embeds.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(seen, seen + length, device=inputs_embeds.device)[None]
        positions, text = _split_positions(self, position_ids, batch)
        if seen == 0:
            hidden = _prefill(
                self,
                pruner,
                plans,
                inputs_embeds,
                attention_mask,
                (positions, text),
                past_key_values,
                use_cache,
                (image_index, bidirectional, deepstack),
                kwargs,
                on_stage,
            )
        else:
            hidden = _decode(
                self,
                plans.get(past_key_values),
                inputs_embeds,
                attention_mask,
                (positions, text),
                past_key_values,
                use_cache,
                kwargs,
            )
        return output_type(last_hidden_state=self.norm(hidden), past_key_values=past_key_values)

    decorated = capture_outputs(merge_with_config_defaults(forward))
    patch.set(language_model, "forward", types.MethodType(decorated, language_model))


def _split_positions(model, position_ids: torch.Tensor, batch: int):
    """(rotary positions, text positions) of a call: [B, L] and the same tensor for 1-D rotary models;
    [B, L, 3] and row 0 of a [4, B, L] `position_ids` (None otherwise, as in the stock model) for M-RoPE."""
    if not hasattr(model.rotary_emb, "mrope_section"):
        positions = position_ids.expand(batch, -1)
        return positions, positions
    text = None
    if position_ids.dim() == 2:
        position_ids = position_ids[None].expand(MROPE_SECTIONS, -1, -1)
    elif position_ids.shape[0] == MROPE_SECTIONS + 1:
        text, position_ids = position_ids[0].expand(batch, -1), position_ids[1:]
    if position_ids.dim() != 3 or position_ids.shape[0] != MROPE_SECTIONS:
        raise ValueError(
            f"an M-RoPE language model takes position_ids [B, L], [3, B, L] or [4, B, L], got {tuple(position_ids.shape)}"
        )
    return position_ids.expand(-1, batch, -1).permute(1, 2, 0), text


def _text_after_stage(positions: torch.Tensor) -> torch.Tensor | None:
    """What masks and layers get as positions once a stage has pruned: the rotary positions for 1-D
    models (as before pruning), none for M-RoPE (see the module docstring)."""
    return positions if positions.dim() == 2 else None


def _at(positions: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The positions [B] ([B, S] for M-RoPE) of token `index[b]` of each row."""
    return positions[torch.arange(positions.shape[0], device=positions.device), index]


def _layer_types(model) -> list[str]:
    """Each layer's attention type: the config's `layer_types`, or full attention throughout."""
    return list(getattr(model.config, "layer_types", None) or [FULL] * model.config.num_hidden_layers)


@dataclass
class _Inputs:
    """What a group's layers share, per layer type: masks and rotary tables; `types`: each layer's type."""

    masks: dict
    rope: dict
    types: list[str]

    def of(self, index: int):
        kind = self.types[index]
        return self.masks[kind], self.rope[kind]


@functools.cache
def _rotary_takes_type(rotary_class: type) -> bool:
    """Whether a rotary embedding computes per layer type (Gemma 3: local and global tables)."""
    return "layer_type" in inspect.signature(rotary_class.forward).parameters


def _layer_inputs(model, hidden, mask, positions, text, cache, first_layer, window=None, blocks=None):
    """The attention masks (each sized against the group's first cache layer of its type, from the text
    positions `text`) and rotary tables (from `positions`, sections last for M-RoPE) for a group starting
    at `first_layer`. window: [B, K] positions of the group's cache entries and the new tokens for
    sliding layers (None: the stock index rule, right on unpruned sequences); blocks: [B, L] item of each
    token (-1 for text) whose tokens attend to each other both ways (None: causal throughout)."""
    types = _layer_types(model)
    rotary = positions.permute(2, 0, 1) if positions.dim() == 3 else positions
    takes_type = _rotary_takes_type(type(model.rotary_emb))
    masks, rope = {}, {}
    for kind in dict.fromkeys(types[first_layer:]):
        sliding = kind == SLIDING
        masks[kind] = create_causal_mask(
            config=model.config,
            inputs_embeds=hidden,
            attention_mask=mask,
            past_key_values=cache,
            position_ids=text,
            layer_idx=types.index(kind, first_layer),
            or_mask_function=None if blocks is None else blockwise_overlay(blocks),
            and_mask_function=_window(model, window) if sliding else None,
        )
        by_type = {"layer_type": kind} if takes_type else {}
        rope[kind] = model.rotary_emb(hidden, position_ids=rotary, **by_type)
    return _Inputs(masks, rope, types)


def _window(model, positions: torch.Tensor | None):
    """The sliding-window rule: by sequence index (the stock rule) or by the given positions."""
    size = model.config.sliding_window
    if positions is None:
        return sliding_window_overlay(size)

    def within(batch_idx, head_idx, q_idx, kv_idx):
        return positions[batch_idx, kv_idx] > positions[batch_idx, q_idx] - size

    return within


def _run_layer(layer, hidden, causal, positions, rope, cache, use_cache, kwargs):
    return layer(
        hidden,
        attention_mask=causal,
        position_ids=positions,
        past_key_values=cache,
        use_cache=use_cache,
        position_embeddings=rope,
        **kwargs,
    )


def _prefill(model, pruner, plans, embeds, attention_mask, given, cache, use_cache, marks, kwargs, on_stage):
    positions, text = given
    image_index, bidirectional, deepstack = marks
    batch, length = embeds.shape[:2]
    device = embeds.device
    mask = (
        attention_mask.bool()
        if attention_mask is not None
        else torch.ones(batch, length, dtype=torch.bool, device=device)
    )
    image = image_index.to(device) if image_index is not None else torch.full((batch, length), -1, device=device)
    sequence = Sequence(embeds, positions, mask, image, torch.arange(length, device=device).expand(batch, -1))
    stages = pruner.stages() if bool((image >= 0).any()) else ()
    if stages and cache is not None and not isinstance(cache, DynamicCache):
        raise ValueError(
            f"{pruner.name} keeps different lengths in different cache layers and needs a DynamicCache "
            f"(generate's default), got {type(cache).__name__}"
        )
    state = pruner.start(sequence) if stages else None
    captured = {pruner.attention_layer(s): s for s in stages if pruner.attention_layer(s) == s - 1}

    original_last = _at(positions, last_real_index(mask))
    groups = [_Group(0, mask, torch.zeros_like(original_last))]
    blocks = image if bidirectional else None
    inputs = _layer_inputs(model, embeds, attention_mask, positions, text, cache, 0, blocks=blocks)
    window = None
    readers = {}
    hidden = embeds
    for index, layer in enumerate(model.layers[: model.config.num_hidden_layers]):
        if index in stages:
            sequence = replace(sequence, hidden=hidden)
            reader = readers.pop(index, None) or _ahead_reader(model, index, sequence, inputs, window)
            sequence = pruner.reduce(stages.index(index), sequence, reader, state)
            if on_stage is not None:
                on_stage(index, image, sequence)
            shift = original_last - _at(sequence.positions, last_real_index(sequence.mask))
            groups.append(_Group(index, sequence.mask, shift, sequence.positions))
            hidden = sequence.hidden
            text = _text_after_stage(sequence.positions)
            window = sequence.positions if SLIDING in _layer_types(model) else None
            blocks = sequence.image if bidirectional else None
            inputs = _layer_inputs(model, hidden, sequence.mask, sequence.positions, text, cache, index, window, blocks)
        capture = capture_projections(layer.self_attn, slice(None)) if index in captured else nullcontext()
        causal, rope = inputs.of(index)
        with capture as projected:
            hidden = _run_layer(layer, hidden, causal, text, rope, cache, use_cache, kwargs)
        if deepstack is not None:
            hidden = deepstack.added(index, hidden, sequence.origin)
        if index in captured:
            readers[captured[index]] = _captured_reader(
                model, index, projected, replace(sequence, hidden=hidden), inputs, window
            )
    if stages and cache is not None and use_cache:
        plans[cache] = _Plan(length, groups)
    return hidden


def _decode(model, plan, embeds, attention_mask, given, cache, use_cache, kwargs):
    positions, text = given
    if plan is None:  # a cache this loop did not prune: an unpruned decode
        inputs = _layer_inputs(model, embeds, attention_mask, positions, text, cache, 0)
        hidden = embeds
        for index, layer in enumerate(model.layers[: model.config.num_hidden_layers]):
            causal, rope = inputs.of(index)
            hidden = _run_layer(layer, hidden, causal, text, rope, cache, use_cache, kwargs)
        return hidden

    batch, length = embeds.shape[:2]
    seen = cache.get_seq_length(0)
    if attention_mask is None:
        attention_mask = torch.ones(batch, seen + length, dtype=torch.bool, device=embeds.device)
    appended = attention_mask[:, plan.prefill_length :].bool()
    starts = {group.first_layer: group for group in plan.groups}
    hidden = embeds
    for index, layer in enumerate(model.layers[: model.config.num_hidden_layers]):
        if index in starts:
            group = starts[index]
            mask = torch.cat([group.prefix_mask, appended], dim=1)
            group_positions = positions - group.shift[:, None]
            group_text = text if index == 0 else _text_after_stage(group_positions)
            window = _appended_positions(group, group_positions, appended) if _windowed(model, group) else None
            inputs = _layer_inputs(model, hidden, mask, group_positions, group_text, cache, index, window)
        causal, rope = inputs.of(index)
        hidden = _run_layer(layer, hidden, causal, group_text, rope, cache, use_cache, kwargs)
    return hidden


def _windowed(model, group: _Group) -> bool:
    """Whether a group's sliding layers need their window by positions (a group after a stage)."""
    return group.positions is not None and SLIDING in _layer_types(model)


def _appended_positions(group: _Group, new_positions: torch.Tensor, appended: torch.Tensor) -> torch.Tensor:
    """[B, L_g + A] positions of a group's cache entries and the new tokens: the kept prompt's, then the
    tokens appended since the prompt, consecutive up to the new ones (decoding adds one position a token)."""
    earlier = appended.shape[1] - new_positions.shape[1]
    steps = torch.arange(-earlier, 0, device=new_positions.device)
    return torch.cat([group.positions, new_positions[:, :1] + steps, new_positions], dim=1)


def _heads(attention):
    return attention.q_proj.out_features // attention.head_dim, attention.k_proj.out_features // attention.head_dim


def _normed(attention, name: str, projected: torch.Tensor) -> torch.Tensor:
    """`projected` [B, N, heads * d] through the layer's `q_norm` / `k_norm` (`name`) where it has one: per
    head when the norm is sized to a head (Gemma 3, Qwen3), over the full width otherwise."""
    norm = getattr(attention, name, None)
    if norm is None:
        return projected
    if norm.weight.shape[-1] == attention.head_dim:
        return norm(projected.unflatten(-1, (-1, attention.head_dim))).flatten(-2)
    return norm(projected)


def _rows(model, index: int, query, key, query_index, sequence: Sequence, inputs: _Inputs, window):
    """Softmax rows of layer `index` for the queries at `query_index` over the sequence's keys: causal,
    padding masked and, for a sliding layer, within its window (by positions after a stage)."""
    attention = model.layers[index].self_attn
    num_heads, num_kv_heads = _heads(attention)
    query, key = _normed(attention, "q_norm", query), _normed(attention, "k_norm", key)
    visible = sequence.mask
    if inputs.types[index] == SLIDING:
        at = window if window is not None else torch.arange(key.shape[1], device=key.device).expand_as(sequence.mask)
        near = at[:, None, :] > at.gather(1, query_index)[..., None] - model.config.sliding_window
        visible = visible[:, None, :] & near
    _, rope = inputs.of(index)
    return causal_rows_softmax(query, key, *rope, query_index, visible, num_heads, num_kv_heads, attention.scaling)


def _captured_reader(model, index: int, projected, sequence: Sequence, inputs: _Inputs, window):
    """Rows of the attention layer `index` just computed, from the query/key projections it produced."""
    query_all, key = projected["query"], projected["key"]

    def rows(query_index):
        query = query_all.gather(1, query_index[..., None].expand(-1, -1, query_all.shape[-1]))
        return _rows(model, index, query, key, query_index, sequence, inputs, window)

    return rows


def _ahead_reader(model, index: int, sequence: Sequence, inputs: _Inputs, window):
    """Rows of the attention layer `index` would compute on `sequence`: its normalised input, the
    queries of the asked rows and the keys of all tokens (one k_proj the layer will redo on the kept ones)."""
    layer = model.layers[index]
    attention = layer.self_attn

    def rows(query_index):
        normed = layer.input_layernorm(sequence.hidden)
        query = attention.q_proj(normed.gather(1, query_index[..., None].expand(-1, -1, normed.shape[-1])))
        key = attention.k_proj(normed)
        return _rows(model, index, query, key, query_index, sequence, inputs, window)

    return rows
