"""The image side of a prefill's FLOPs for any family, from one small description of how it encodes an image.

A family's `VisionCost` (built from its config by `flops_families.describe`) says what one image
costs: the crops (tiles, base crop, thumbnail) its tower encodes, each layer's FLOPs per crop, how
deep the pruning path runs, what runs after the layers on every token (Qwen's patch mergers), what
the importance signal costs, the parts a method prunes (with their grids and whether they share one
budget) and the projector per token. `add_vision` turns it into FLOPs by part for the stock path or a
vision-side method, as this package runs them; the language model's part is shared (`flops.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llava.pruning.base import TokenPruner

    from .flops import PrefillCost

# Signals that cost no extra matrix multiply: read off projections or tokens the tower computes anyway.
CAPTURED_SIGNALS = frozenset({"projections", "cls_token", "projected", "token_merging"})


def linear(tokens: int, fan_in: int, fan_out: int) -> int:
    """A dense layer over `tokens` tokens, 2 FLOPs per multiply-add (a bias adds none for FLOP counters)."""
    return 2 * tokens * fan_in * fan_out


def attention_flops(queries: int, keys: int, width: int) -> int:
    """Scores and weighted sum of one attention over all heads (`width` = heads x head dim)."""
    return 4 * queries * keys * width


def vision_layer_flops(tokens: int, width: int, intermediate: int, mlp_tokens: int | None = None) -> int:
    """One ViT encoder layer (CLIP, SigLIP, InternViT): q, k, v, o projections and attention over
    `tokens`, a two-matrix MLP over `mlp_tokens` (fewer when tokens merge between attention and MLP)."""
    mlp_tokens = tokens if mlp_tokens is None else mlp_tokens
    return (
        4 * linear(tokens, width, width)
        + attention_flops(tokens, tokens, width)
        + 2 * linear(mlp_tokens, width, intermediate)
    )


@dataclass(frozen=True)
class UniformTower:
    """Every layer alike (tokens per crop incl. [CLS], width, MLP width): what in-tower merging (ToMe) re-counts."""

    tokens: int
    width: int
    intermediate: int


@dataclass(frozen=True)
class VisionCost:
    """How one image is encoded, per crop and per image.

    crops: tower passes per image. embedding, layers[i], after_layers, signal: FLOPs per crop of the
    patch embedding, of layer i, of what runs after the layers on every token in both paths (Qwen's
    mergers), of the importance signal at the feature layer. stock_depth / feature_depth: layers the
    stock path and the pruning path run. parts: tokens a method prunes, part by part, per image, with
    `grids`; shared_budget: the parts share one budget per image (split in proportion to their sizes)
    rather than each keeping `visual_token_num`. projector: FLOPs per token the projector acts on (0
    where it runs inside the tower); stock_projected: tokens it acts on per image in the stock path;
    also_projected: tokens the pruning path projects besides the kept ones (a map resized after the
    projector). newlines: visual tokens per image the layout adds (anyres row ends); markers: text
    tokens the processor writes around each image; items: placeholder runs per image (each one item
    with its own budget for in-LLM methods). selection_width / heads: what a method's own scoring sees;
    projected_width: the projector's output width. uniform: set where in-tower merging can be counted."""

    family: str
    crops: int
    embedding: int
    layers: tuple[int, ...]
    stock_depth: int
    feature_depth: int
    parts: tuple[int, ...]
    grids: tuple[tuple[int, int], ...]
    projector: int
    stock_projected: int
    selection_width: int
    heads: int
    projected_width: int
    signal: int = 0
    after_layers: int = 0
    shared_budget: bool = False
    also_projected: int = 0
    newlines: int = 0
    markers: int = 0
    items: int = 1
    next_projections: int | None = None  # CLIP: the next layer's [CLS] query and every key, per crop
    uniform: UniformTower | None = None
    stock_tokens: int | None = None  # stock visual tokens per image where the layout differs (paper: pinned stock)
    inside_keeps_all: bool = False  # in-LLM methods see every crop's tokens through the pruning path (paper)
    projects_kept: tuple[bool, ...] = ()  # per part: its kept tokens are projected (all, by default)

    @property
    def stock_visual(self) -> int:
        """Visual tokens one image gives the language model in the stock path."""
        return sum(self.parts) + self.newlines if self.stock_tokens is None else self.stock_tokens

    def stock_tower(self) -> int:
        return self.crops * (self.embedding + sum(self.layers[: self.stock_depth]) + self.after_layers)


def add_stock_vision(vision: VisionCost, images: int, cost: PrefillCost) -> int:
    """The stock encoding of `images` images added to `cost`; returns the visual tokens per image."""
    cost.vision += images * vision.stock_tower()
    cost.projector += images * vision.stock_projected * vision.projector
    return vision.stock_visual


def part_budgets(vision: VisionCost, pruner) -> list[int]:
    """Tokens kept of each part of one image, as the hosts split them."""
    if not vision.shared_budget:
        return [pruner.kept_per_image(tokens, grid) for tokens, grid in zip(vision.parts, vision.grids)]
    from llava.models.anyres import split_total

    total = pruner.kept_per_image(sum(vision.parts), vision.grids[0] if len(vision.parts) == 1 else None)
    return split_total(total, list(vision.parts))


def add_pruned_vision(vision: VisionCost, pruner: TokenPruner, images: int, cost: PrefillCost) -> int:
    """A vision-side method's encoding of `images` images added to `cost`; returns the visual tokens per image."""
    from llava.pruning.base import IMPORTANCE, IMPORTANCE_SIGNALS

    # the importance signal under its names: [CLS] attention, or the mean attention received where there is no [CLS]
    attention_signals = {IMPORTANCE, *IMPORTANCE_SIGNALS}
    requires = frozenset(pruner.requires)
    unknown = requires - CAPTURED_SIGNALS - attention_signals - {"next_projections"}
    if unknown:
        raise ValueError(f"no FLOPs accounting for the signal(s) {', '.join(sorted(unknown))} of {pruner.name!r}")
    tower = vision.embedding + vision.after_layers
    if "token_merging" in requires:
        tower += _merged_tower(vision, pruner, cost, images)
    else:
        tower += sum(vision.layers[: vision.feature_depth])
    signal = vision.signal if requires & attention_signals else 0
    if "next_projections" in requires:
        if vision.next_projections is None:
            raise ValueError(f"{vision.family} has no next-layer projections for {pruner.name!r}")
        signal += vision.next_projections
    budgets = part_budgets(vision, pruner)
    projected = "projected" in requires
    width = vision.projected_width if projected else vision.selection_width
    shared = vision.shared_budget
    selection = sum(_selection(pruner, n, kept, width, vision.heads, shared) for n, kept in zip(vision.parts, budgets))
    cost.vision += images * vision.crops * tower
    cost.signals += images * vision.crops * signal
    cost.selection += images * selection
    flags = vision.projects_kept or (True,) * len(budgets)
    kept_projected = sum(kept for kept, flag in zip(budgets, flags) if flag)
    projected_tokens = vision.stock_projected if projected else kept_projected + vision.also_projected
    cost.projector += images * projected_tokens * vision.projector
    return sum(budgets) + vision.newlines


def _selection(pruner, tokens: int, kept: int, width: int, heads: int, shared: bool) -> int:
    """A method's own FLOPs on one part. A shared budget runs the method at the part's share, and not at
    all where the host keeps all or nothing of the part (`common.prune`)."""
    if not shared:
        return pruner.selection_flops(tokens, width, heads)
    if kept <= 0 or kept >= tokens:
        return 0
    return pruner.with_budget(kept).selection_flops(tokens, width, heads)


def _merged_tower(vision: VisionCost, pruner, cost: PrefillCost, images: int) -> int:
    """Layers up to the feature layer with ToMe's merges between attention and MLP (CLIP towers)."""
    shape = vision.uniform
    if shape is None:
        raise ValueError(f"{pruner.name!r} merges tokens inside the tower; no accounting for {vision.family}'s tower")
    tower, count = 0, shape.tokens
    for merged in pruner.schedule(shape.tokens - 1, vision.feature_depth):
        tower += vision_layer_flops(count, shape.width, shape.intermediate, count - merged)
        if merged:
            cost.selection += images * vision.crops * pruner.matching_flops(count, shape.width, vision.heads)
        count -= merged
    return tower
