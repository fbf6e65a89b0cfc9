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

The host passes, as the keyword `IMAGE_INDEX_KWARG` that the stock multimodal model forwards to its
language model, which prompt tokens are visual ([B, L] long, image number within the row or -1).

DeepStack (Qwen3-VL): the stock multimodal model hands its language model `visual_pos_masks` [B, L] and
`deepstack_visual_embeds` (one [V, C] tensor per level: features of intermediate vision layers, one row per
visual token in mask order) and adds level i to the hidden states of the visual tokens after layer i. The
loop does the same on whatever sequence that layer ran on: each token finds its row through its `origin`
(its prefill column), so after a stage the additions follow the kept tokens; tokens made by merging
(SparseVLM's recycled clusters) stand for no single visual token and get none.

Decoders with q/k norms (Qwen3: `self_attn.q_norm` / `k_norm`) get them applied to the attention rows
computed beside SDPA as the layer applies them (per head, or over the full width, as the norm is sized).
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
from transformers import DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast, MoeModelOutputWithPast
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from ..attention import capture_projections, causal_rows_softmax
from ..patching import InstancePatch
from ..pruning.base import LanguageModelPruner
from ..pruning.sequence import Sequence, last_real_index

IMAGE_INDEX_KWARG = "pruning_image_index"
StageHook = Callable[[int, torch.Tensor, Sequence], None]
_REQUIRED = ("embed_tokens", "layers", "norm", "rotary_emb")
MROPE_SECTIONS = 3  # temporal, height, width: the rows of an M-RoPE model's rotary position_ids
DEEPSTACK_MASK_KWARG = "visual_pos_masks"  # Qwen3-VL's language-model keywords for DeepStack
DEEPSTACK_KWARG = "deepstack_visual_embeds"


@dataclass
class _Group:
    first_layer: int
    prefix_mask: torch.Tensor  # [B, L_g] the kept prompt tokens' padding mask
    shift: torch.Tensor  # [B] ([B, S] for M-RoPE) original minus renumbered positions of the last prompt token


@dataclass
class _Plan:
    prefill_length: int
    groups: list[_Group]


@dataclass
class _DeepStack:
    """A call's DeepStack inputs: level i [V, C] is added after layer i to the visual tokens, `rank` [B, L]
    being each prefill column's row in the levels (-1 for the other tokens)."""

    levels: list[torch.Tensor]
    rank: torch.Tensor

    @classmethod
    def of(cls, kwargs: dict) -> _DeepStack | None:
        """Taken out of a language-model call's keyword arguments (None when the call has none)."""
        mask, levels = kwargs.pop(DEEPSTACK_MASK_KWARG, None), kwargs.pop(DEEPSTACK_KWARG, None)
        if mask is None or levels is None:
            return None
        flat = mask.reshape(-1)
        rank = torch.where(flat, flat.long().cumsum(0) - 1, -1).reshape(mask.shape)
        return cls(list(levels), rank)

    def added(self, layer: int, hidden: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        """`hidden` [B, L', C] after `layer` with that layer's level added at the visual tokens it holds
        (`origin` [B, L']: their prefill columns); unchanged past the last level."""
        if layer >= len(self.levels) or self.levels[layer].shape[0] == 0:
            return hidden
        rank = self.rank.to(origin.device).gather(1, origin.clamp(min=0))
        visual = (origin >= 0) & (rank >= 0)
        level = self.levels[layer].to(hidden.device, hidden.dtype)
        return hidden + torch.where(visual[..., None], level[rank.clamp(min=0)], 0)


def check_supported(language_model) -> None:
    missing = [name for name in _REQUIRED if not hasattr(language_model, name)]
    attention = getattr(language_model.layers[0], "self_attn", None) if hasattr(language_model, "layers") else None
    if missing or not all(hasattr(attention, p) for p in ("q_proj", "k_proj", "head_dim", "scaling")):
        raise ValueError(
            f"in-LLM pruning needs a Llama-style decoder (embed_tokens, layers with self_attn.q_proj/k_proj, "
            f"norm, rotary_emb); {type(language_model).__name__} is not one"
        )
    if "sliding_attention" in (getattr(language_model.config, "layer_types", None) or ()):
        raise ValueError(
            "in-LLM pruning builds full causal masks; a language model with sliding-window layers is not supported"
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
        deepstack = _DeepStack.of(kwargs)
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
                image_index,
                deepstack,
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


def _layer_inputs(model, hidden, mask, positions, text, cache, first_layer):
    """The attention mask (sized against cache layer `first_layer`, from the text positions `text`) and
    rotary tables (from `positions`, sections last for M-RoPE) for a group."""
    causal = create_causal_mask(
        config=model.config,
        inputs_embeds=hidden,
        attention_mask=mask,
        past_key_values=cache,
        position_ids=text,
        layer_idx=first_layer,
    )
    rotary = positions.permute(2, 0, 1) if positions.dim() == 3 else positions
    return causal, model.rotary_emb(hidden, position_ids=rotary)


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


def _prefill(
    model, pruner, plans, embeds, attention_mask, given, cache, use_cache, image_index, deepstack, kwargs, on_stage
):
    positions, text = given
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
    causal, rope = _layer_inputs(model, embeds, attention_mask, positions, text, cache, 0)
    readers = {}
    hidden = embeds
    for index, layer in enumerate(model.layers[: model.config.num_hidden_layers]):
        if index in stages:
            sequence = replace(sequence, hidden=hidden)
            reader = readers.pop(index, None) or _ahead_reader(layer, sequence, rope)
            sequence = pruner.reduce(stages.index(index), sequence, reader, state)
            if on_stage is not None:
                on_stage(index, image, sequence)
            shift = original_last - _at(sequence.positions, last_real_index(sequence.mask))
            groups.append(_Group(index, sequence.mask, shift))
            hidden = sequence.hidden
            text = _text_after_stage(sequence.positions)
            causal, rope = _layer_inputs(model, hidden, sequence.mask, sequence.positions, text, cache, index)
        capture = capture_projections(layer.self_attn, slice(None)) if index in captured else nullcontext()
        with capture as projected:
            hidden = _run_layer(layer, hidden, causal, text, rope, cache, use_cache, kwargs)
        if deepstack is not None:
            hidden = deepstack.added(index, hidden, sequence.origin)
        if index in captured:
            readers[captured[index]] = _captured_reader(
                layer.self_attn, projected, replace(sequence, hidden=hidden), rope
            )
    if stages and cache is not None and use_cache:
        plans[cache] = _Plan(length, groups)
    return hidden


def _decode(model, plan, embeds, attention_mask, given, cache, use_cache, kwargs):
    positions, text = given
    if plan is None:  # a cache this loop did not prune: an unpruned decode
        causal, rope = _layer_inputs(model, embeds, attention_mask, positions, text, cache, 0)
        hidden = embeds
        for layer in model.layers[: model.config.num_hidden_layers]:
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
            causal, rope = _layer_inputs(model, hidden, mask, group_positions, group_text, cache, index)
        hidden = _run_layer(layer, hidden, causal, group_text, rope, cache, use_cache, kwargs)
    return hidden


def _heads(attention):
    return attention.q_proj.out_features // attention.head_dim, attention.k_proj.out_features // attention.head_dim


def _normed(attention, name: str, projected: torch.Tensor) -> torch.Tensor:
    """`projected` [B, N, heads * d] through the layer's `q_norm` / `k_norm` (`name`) where it has one: per
    head when the norm is sized to a head (Qwen3), over the full width otherwise."""
    norm = getattr(attention, name, None)
    if norm is None:
        return projected
    if norm.weight.shape[-1] == attention.head_dim:
        return norm(projected.unflatten(-1, (-1, attention.head_dim))).flatten(-2)
    return norm(projected)


def _captured_reader(attention, projected, sequence: Sequence, rope):
    """Rows of the attention the layer just computed, from the query/key projections it produced."""
    num_heads, num_kv_heads = _heads(attention)
    query_all, key = _normed(attention, "q_norm", projected["query"]), _normed(attention, "k_norm", projected["key"])

    def rows(query_index):
        query = query_all.gather(1, query_index[..., None].expand(-1, -1, query_all.shape[-1]))
        return causal_rows_softmax(
            query, key, *rope, query_index, sequence.mask, num_heads, num_kv_heads, attention.scaling
        )

    return rows


def _ahead_reader(layer, sequence: Sequence, rope):
    """Rows of the attention the next layer would compute on `sequence`: its normalised input, the
    queries of the asked rows and the keys of all tokens (one k_proj the layer will redo on the kept ones)."""
    attention = layer.self_attn
    num_heads, num_kv_heads = _heads(attention)

    def rows(query_index):
        normed = layer.input_layernorm(sequence.hidden)
        query = attention.q_proj(normed.gather(1, query_index[..., None].expand(-1, -1, normed.shape[-1])))
        query, key = _normed(attention, "q_norm", query), _normed(attention, "k_norm", attention.k_proj(normed))
        return causal_rows_softmax(
            query, key, *rope, query_index, sequence.mask, num_heads, num_kv_heads, attention.scaling
        )

    return rows
