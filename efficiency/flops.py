"""FLOPs of a prefill, exactly as this package runs it, for any supported family's config, method and budget.

    python -m efficiency.flops paper                                   # the paper's table, reproduced
    python -m efficiency.flops exact --shape llava-1.5-7b --tokens 128 64 32
    python -m efficiency.flops exact --model qwen2.5-vl-7b --methods none vispruner fastv
    python -m efficiency.flops exact --config config.json --image-size 480 640 --json out.json

Counted: every matrix multiply the prefill runs (2 FLOPs per multiply-add), the way
`torch.utils.flop_counter.FlopCounterMode` counts them: the patch embedding, the vision layers that
run (all of them in the stock path; up to the feature layer in the pruning path), the signals a
method asks the host for (the [CLS] attention row, the next layer's projections), the method's own
scoring and merging (`selection_flops` of the pruner), the projector over the tokens it projects,
every decoder layer at the length it actually sees (text included, grouped KV heads, attention as
the full query x key rectangle that SDPA kernels and FLOP counters count, attention rows read by
in-LLM methods) and the LM head (the last position only, as `generate` asks for, or all).
Not counted, as FLOP counters do not count them: norms, activations, softmax, rotary embeddings,
sorting, gathering, pooling. The token schedule comes from the pruner objects (`kept_per_image`,
`schedule`, `stages`, `kept_visual`), never from a table of method names; what one image costs in
each family (crops, tower, mergers, signal, projector) from `flops_families.describe` of its config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from . import paper, tables
from .flops_vision import add_pruned_vision, add_stock_vision
from .flops_vision import linear as _linear
from .shapes import POPE_PROMPT, PromptLayout
from .tables import Column

if TYPE_CHECKING:  # torch and llava are imported where used: `--help` answers without loading torch
    from torch.utils.flop_counter import FlopCounterMode

    from llava.pruning.base import LanguageModelPruner, TokenPruner


@dataclass
class PrefillCost:
    """FLOPs of one prefill (all `batch` prompts) by part, and the token counts behind them.

    layer_tokens / layer_visual: the sequence length and visual tokens of one prompt in each decoder layer.
    kv_values_per_token: K and V values one token stores in one layer."""

    vision: int = 0
    signals: int = 0
    selection: int = 0
    projector: int = 0
    language_model: int = 0
    lm_head: int = 0
    layer_tokens: list[int] = field(default_factory=list)
    layer_visual: list[int] = field(default_factory=list)
    kv_values_per_token: int = 0
    batch: int = 1

    @property
    def total(self) -> int:
        return self.vision + self.signals + self.selection + self.projector + self.language_model + self.lm_head

    def kv_cache_bytes(self, bytes_per_value: int = 2, visual_only: bool = False) -> int:
        tokens = sum(self.layer_visual if visual_only else self.layer_tokens)
        return tokens * self.kv_values_per_token * bytes_per_value * self.batch

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def decoder_layer_flops(tokens: int, keys: int, text_config) -> int:
    """One Llama layer for `tokens` queries attending to `keys` keys (grouped KV heads)."""
    d, m = text_config.hidden_size, text_config.intermediate_size
    head_dim = getattr(text_config, "head_dim", None) or d // text_config.num_attention_heads
    q_width = text_config.num_attention_heads * head_dim
    kv_width = text_config.num_key_value_heads * head_dim
    projections = _linear(tokens, d, q_width) + 2 * _linear(tokens, d, kv_width) + _linear(tokens, q_width, d)
    return projections + 4 * tokens * keys * q_width + 3 * _linear(tokens, d, m)


def prefill_flops(
    config,
    method: str | TokenPruner | None = None,
    visual_token_num: int | None = None,
    *,
    images: int = 1,
    prompt: PromptLayout = POPE_PROMPT,
    batch: int = 1,
    logits: str = "last",
    image_size: tuple[int, int] | None = None,
    tiles: int = 1,
    layout: str = "native",
    **options,
) -> PrefillCost:
    """FLOPs of a prefill of `batch` prompts, each with `images` images and `prompt`'s text, pruned by
    `method` (a registered name with its budget and options, a pruner object, or None / "none").

    `config` is the model's config, of any family `flops_families.FAMILIES` names; image_size, tiles
    and layout say what one image is for the families whose tokens depend on it (`describe`).
    logits="last" counts the LM head on the last position only (what `generate` computes), "all" on
    every position."""
    from llava.models.common import KeepAll
    from llava.pruning import create_pruner
    from llava.pruning.base import LanguageModelPruner, TokenPruner, VisionTokenPruner

    from .flops_families import describe

    if logits not in ("last", "all"):
        raise ValueError(f"logits must be 'last' or 'all', got {logits!r}")
    vision = describe(config, image_size=image_size, tiles=tiles, layout=layout)
    if method is None or method == "none":
        pruner = None
    elif isinstance(method, TokenPruner):
        pruner = method
    else:
        pruner = create_pruner(method, visual_token_num, **options)
    text = config.text_config
    cost = PrefillCost(batch=batch)
    inside = isinstance(pruner, LanguageModelPruner)
    if isinstance(pruner, VisionTokenPruner):
        per_image = add_pruned_vision(vision, pruner, images, cost)
    elif inside and vision.inside_keeps_all:
        per_image = add_pruned_vision(vision, KeepAll(), images, cost)
    else:
        per_image = add_stock_vision(vision, images, cost)
    visual = images * per_image
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    cost.kv_values_per_token = 2 * text.num_key_value_heads * head_dim

    text_tokens = prompt.text_tokens + images * vision.markers
    stages = pruner.stages() if inside else ()
    if inside:
        pruner.check_depth(text.num_hidden_layers)
        cost.selection += pruner.selection_flops(visual, prompt.after, text.hidden_size)
    for layer in range(text.num_hidden_layers):
        if layer in stages:
            cost.selection += _attention_rows(pruner, layer, text_tokens + visual, prompt.after, text)
            visual = pruner.kept_visual(stages.index(layer), visual, images * vision.items)
        length = text_tokens + visual
        cost.layer_tokens.append(length)
        cost.layer_visual.append(visual)
        cost.language_model += decoder_layer_flops(length, length, text)
    cost.lm_head = _linear(1 if logits == "last" else cost.layer_tokens[-1], text.hidden_size, text.vocab_size)
    for part in ("vision", "signals", "selection", "projector", "language_model", "lm_head"):
        setattr(cost, part, getattr(cost, part) * batch)
    return cost


def _attention_rows(pruner: LanguageModelPruner, layer: int, length: int, text_after: int, text) -> int:
    """The attention rows a stage reads: from the previous layer's projections, or computed for the
    layer about to run (its query projections of the rows and a key projection of every token)."""
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    q_width, kv_width = text.num_attention_heads * head_dim, text.num_key_value_heads * head_dim
    queries = pruner.attention_queries(text_after)
    rows = 2 * queries * length * q_width
    if pruner.attention_layer(layer) == layer:
        rows += _linear(queries, text.hidden_size, q_width) + _linear(length, text.hidden_size, kv_width)
    return rows


def decode_flops(config, cost: PrefillCost) -> int:
    """FLOPs of the first decoded token of each prompt, attending to the cache the prefill left."""
    text = config.text_config
    per_prompt = sum(decoder_layer_flops(1, length + 1, text) for length in cost.layer_tokens)
    return cost.batch * (per_prompt + _linear(1, text.hidden_size, text.vocab_size))


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    batch, heads, queries, head_dim = query_shape
    keys, value_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * queries * keys * (head_dim + value_dim)


def flop_counter(**kwargs) -> FlopCounterMode:
    """`FlopCounterMode` that also counts SDPA's CPU kernel (absent from torch's formula table), with
    grouped KV heads."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
    return FlopCounterMode(display=False, custom_mapping={**custom, **kwargs.pop("custom_mapping", {})}, **kwargs)


def exact_table(
    config,
    methods,
    budgets,
    images: int = 1,
    prompt: PromptLayout = POPE_PROMPT,
    geometry: dict | None = None,
    **options,
) -> list[dict]:
    """One row per method and budget ("none" once), with the FLOPs by part and the KV cache; `geometry`:
    what one image is (`image_size`, `tiles`, `layout` of `prefill_flops`)."""
    rows = []
    geometry = geometry or {}
    full = prefill_flops(config, None, images=images, prompt=prompt, **geometry)
    for method in methods:
        for tokens in [None] if method == "none" else budgets:
            cost = (
                full
                if method == "none"
                else prefill_flops(
                    config, method, tokens, images=images, prompt=prompt, **geometry, **options.get(method, {})
                )
            )
            rows.append(
                {
                    "method": method,
                    "visual_token_num": tokens,
                    **cost.as_dict(),
                    "reduction": 1 - cost.total / full.total,
                    "decode_first_token": decode_flops(config, cost),
                    "kv_visual_mib_fp16": cost.kv_cache_bytes(2, visual_only=True) / paper.MIB,
                }
            )
    return rows


GIGA = 1e9
EXACT_COLUMNS = (
    Column("method", "method"),
    Column("T", "visual_token_num"),
    Column("vision", lambda r: r["vision"] / GIGA, ".1f"),
    Column("signals + selection", lambda r: (r["signals"] + r["selection"]) / GIGA, ".3f"),
    Column("projector", lambda r: r["projector"] / GIGA, ".1f"),
    Column("LLM layers", lambda r: r["language_model"] / GIGA, ".1f"),
    Column("LM head", lambda r: r["lm_head"] / GIGA, ".2f"),
    Column("total (GFLOPs)", lambda r: r["total"] / GIGA, ".1f"),
    Column("reduction", "reduction", ".1%"),
    Column("visual KV fp16 (MiB)", "kv_visual_mib_fp16", ".1f"),
)


def markdown(rows: list[dict]) -> str:
    return tables.markdown(rows, EXACT_COLUMNS)


def main(argv=None) -> None:
    """The command line (`flops_cli.py`), run as `python -m efficiency.flops`."""
    from .flops_cli import main as run

    run(argv, __doc__)


if __name__ == "__main__":
    main()
