"""The attention signals of Figures 2 and 3, read beside SDPA (the model never switches to eager).

One prefill of the unpruned model per batch gives, for every language-model layer, the attention the
last prompt token (and, averaged, every question token after the image) pays each visual token, and
the vision tower's [CLS] attention at its feature layer. A second pass of the language model alone
(on the same input embeddings) gives the last token's attention with the position decay removed:
every visual token gets the position id of the image's last token, so RoPE puts all of them at
the same distance from the question; every other token keeps its position. The rows come from the
projections each layer computes anyway (`llava.attention.capture_projections`), turned into causal
softmax rows by `llava.attention.causal_rows_softmax` and `row_softmax`.

Values are head means of the softmax over the whole prompt, restricted to the visual tokens and not
renormalised (as the paper's scripts read them); the [CLS] row drops its [CLS] -> [CLS] entry.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm
from transformers import CLIPVisionModel, LlavaForConditionalGeneration

import llava
from llava.attention import capture_projections, causal_rows_softmax, row_softmax
from llava.models import clip, decoder

from .data import Sample
from .subjects import Subject


@dataclass
class Signals:
    """Attention signals of S samples over N visual tokens and L language-model layers (float32).

    last:     [S, L, N] attention of the last prompt token (the one predicting the answer's first token).
    question: [S, L, N] the same averaged over the question tokens (every token after the image).
    equal:    [S, L, N] last-token attention when all visual tokens share one position id.
    cls:      [S, N] [CLS] attention of the vision tower's feature layer.
    grid:     (rows, cols) of the patch grid, rows * cols == N, raster order.
    """

    ids: list[str]
    last: np.ndarray
    question: np.ndarray
    equal: np.ndarray
    cls: np.ndarray
    grid: tuple[int, int]
    meta: dict = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return self.last.shape[1]

    @property
    def num_tokens(self) -> int:
        return self.last.shape[2]

    def save(self, path) -> None:
        np.savez(
            path,
            ids=np.array(self.ids),
            last=self.last,
            question=self.question,
            equal=self.equal,
            cls=self.cls,
            grid=np.array(self.grid),
        )

    @classmethod
    def load(cls, path) -> Signals:
        with np.load(path) as f:
            return cls(
                [str(i) for i in f["ids"]],
                f["last"],
                f["question"],
                f["equal"],
                f["cls"],
                tuple(int(v) for v in f["grid"]),
            )

    @classmethod
    def concatenate(cls, parts: list[Signals]) -> Signals:
        return cls(
            [i for p in parts for i in p.ids],
            *(np.concatenate([getattr(p, name) for p in parts]) for name in ("last", "question", "equal", "cls")),
            parts[0].grid,
        )


def check_model(model) -> None:
    """Raise ValueError unless `model` is a LLaVA-style model whose signals can be read here."""
    if not isinstance(model, LlavaForConditionalGeneration):
        raise ValueError(f"the analyses support LlavaForConditionalGeneration models, got {type(model).__name__}")
    if not isinstance(model.model.vision_tower, CLIPVisionModel):
        raise ValueError(
            f"the analyses need a CLIP vision tower ([CLS] attention), got {type(model.model.vision_tower).__name__}"
        )
    decoder.check_supported(model.model.language_model)


def attention_signals(subject: Subject, samples: list[Sample], batch_size: int = 8, progress: bool = True) -> Signals:
    """`Signals` of `samples` under `subject`'s unpruned model (pruning is removed first)."""
    check_model(subject.model)
    llava.remove_pruning(subject.model)
    parts = []
    batches = range(0, len(samples), batch_size)
    for start in tqdm(batches, desc="attention", disable=not progress, dynamic_ncols=True):
        chunk = samples[start : start + batch_size]
        parts.append(batch_signals(subject.model, subject.encode(chunk), [s.id for s in chunk]))
    return Signals.concatenate(parts)


@torch.no_grad()
def batch_signals(model, inputs, ids: list[str]) -> Signals:
    """`Signals` of one left-padded batch with exactly one image per prompt."""
    mask = inputs["attention_mask"].bool()
    visual = visual_positions(model, inputs["input_ids"])  # [B, N]
    positions = prompt_positions(mask)
    last_visual = visual[:, -1]
    start = int(last_visual.min()) + 1
    length = mask.shape[1]
    query_index = torch.arange(start, length, device=mask.device).expand(mask.shape[0], -1)
    is_question = query_index > last_visual[:, None]

    lm = model.model.language_model
    tower = model.model.vision_tower
    depth = clip.feature_depth(tower, model.config.vision_feature_layer)
    cls_attention = tower.encoder.layers[depth - 1].self_attn
    with ExitStack() as stack:
        rope = stack.enter_context(_rotary_tables(lm))
        embeds = stack.enter_context(_language_model_input(lm))
        cls_store = stack.enter_context(capture_projections(cls_attention, clip.CLS_ROW))
        layer_stores = [
            stack.enter_context(capture_projections(layer.self_attn, slice(start, None))) for layer in lm.layers
        ]
        model.model(**inputs, position_ids=positions, use_cache=False)
    rows = _visual_rows(lm, layer_stores, rope, query_index, mask, visual)  # [B, L_layers, Q, N]
    last = rows[:, :, -1]
    weights = is_question[:, None, :, None].float()
    question = (rows * weights).sum(2) / weights.sum(2)

    cls = row_softmax(cls_store["query"], cls_store["key"], cls_attention.num_heads, cls_attention.scale)
    cls = cls[:, :, 0, 1:].mean(1)

    equal_positions = equal_visual_positions(positions, visual)
    with ExitStack() as stack:
        rope = stack.enter_context(_rotary_tables(lm))
        layer_stores = [
            stack.enter_context(capture_projections(layer.self_attn, slice(length - 1, None))) for layer in lm.layers
        ]
        lm(
            inputs_embeds=embeds["inputs_embeds"],
            attention_mask=inputs["attention_mask"],
            position_ids=equal_positions,
            use_cache=False,
        )
    equal = _visual_rows(lm, layer_stores, rope, query_index[:, -1:], mask, visual)[:, :, -1]

    grid = clip.patch_grid(inputs["pixel_values"], tower)
    return Signals(list(ids), *(t.float().cpu().numpy() for t in (last, question, equal, cls)), grid)


def visual_positions(model, input_ids: torch.Tensor) -> torch.Tensor:
    """[B, N] sequence positions of each prompt's visual tokens (one image per prompt)."""
    visual = input_ids == model.config.image_token_id
    counts = visual.sum(dim=1)
    vision = model.config.vision_config
    expected = (vision.image_size // vision.patch_size) ** 2
    if not bool((counts == expected).all()):
        raise ValueError(f"every prompt must hold exactly one image ({expected} visual tokens); got {counts.tolist()}")
    return visual.nonzero()[:, 1].view(input_ids.shape[0], expected)


def prompt_positions(mask: torch.Tensor) -> torch.Tensor:
    """Rotary positions of a left-padded batch as `generate` assigns them: 0, 1, ... over real tokens."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def equal_visual_positions(positions: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
    """`positions` with every visual token moved to the position of the image's last token."""
    anchor = positions.gather(1, visual[:, -1:])
    return positions.scatter(1, visual, anchor.expand_as(visual))


def _visual_rows(lm, stores, rope, query_index, mask, visual) -> torch.Tensor:
    """[B, layers, Q, N] head-mean attention of the query rows to the visual tokens, per layer."""
    cos, sin = rope["tables"]
    per_layer = []
    for layer, store in zip(lm.layers, stores):
        attention = layer.self_attn
        num_heads = attention.q_proj.out_features // attention.head_dim
        num_kv_heads = attention.k_proj.out_features // attention.head_dim
        query = store["query"][:, -query_index.shape[1] :]
        rows = causal_rows_softmax(
            query, store["key"], cos, sin, query_index, mask, num_heads, num_kv_heads, attention.scaling
        )
        rows = rows.mean(dim=1)  # [B, Q, L]
        per_layer.append(rows.gather(2, visual[:, None, :].expand(-1, rows.shape[1], -1)))
    return torch.stack(per_layer, dim=1)


@contextmanager
def _rotary_tables(lm):
    """Keeps the (cos, sin) tables the language model computes for its layers in this forward."""
    store = {}
    handle = lm.rotary_emb.register_forward_hook(lambda _m, _i, out: store.__setitem__("tables", out))
    try:
        yield store
    finally:
        handle.remove()


@contextmanager
def _language_model_input(lm):
    """Keeps the input embeddings (text and projected image tokens) the language model receives."""
    store = {}

    def keep(_module, _args, kwargs):
        store["inputs_embeds"] = kwargs["inputs_embeds"]

    handle = lm.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        yield store
    finally:
        handle.remove()
