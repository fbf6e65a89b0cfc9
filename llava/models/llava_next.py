"""Pruning for `LlavaNextForConditionalGeneration` (LLaVA-1.6 / LLaVA-NeXT), patched per instance.

Two layouts, chosen with `apply_pruning(..., layout=...)`:

* `"native"` (default): the stock layout. The base crop comes first, then the tiles side by side
  with their padding cut off (unpad) and a newline token after every row. `visual_token_num` is the
  budget for the whole image (newlines not counted; they all stay). It is split between the base
  crop and the unpadded tile map in proportion to their token counts (largest remainder), and each
  part is pruned on its own: the base crop with its [CLS] attention, the tile map as one map whose
  tokens carry the [CLS] attention of their own tile. Kept tokens stay in raster order and every
  row keeps its newline. Needs a method that reports kept positions (`select`).
* `"paper"`: how VisPruner's LLaVA-NeXT numbers were made. The image is pinned to 2x2 tiles (672 x
  672 for 336-px towers): the processor must be pinned too, `pin_paper_resolution(processor)`. Base +
  4 tiles = 5 crops, each pruned independently to `visual_token_num` (5 T tokens per image, e.g.
  640/320/160 for T = 128/64/32), no unpadding, no newline tokens; the base crop's kept tokens come
  first, then the tiles' kept tokens in raster order over the whole 2x2 tile map.

The instance's `get_image_features` does the pruning (tower to the feature layer, [CLS] rows of
that layer beside SDPA, projector on kept tokens only); `forward`/`generate` rewrite each image's
placeholder run from the processor's count to the kept count.
"""

from __future__ import annotations

import functools

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import VisionFeatures, VisionTokenPruner, check_signals
from ..trace import Tracer
from . import clip
from .anyres import TileGrid, full_grid_order, image_map, split_total, tile_grid, with_newlines
from .common import CLS_ATTENTION, has_select, patch_forward, patch_generate, prune
from .runs import retile, run_counts

LAYOUTS = ("native", "paper")
PAPER_TILES = 2  # the paper pins every image to 2 x 2 tiles


def attach(
    model, pruner: VisionTokenPruner, patch: InstancePatch, tracer: Tracer | None = None, *, layout: str = "native"
) -> None:
    check_image_options(pruner, layout, "LLaVA-NeXT")
    patch.set(model.model, "get_image_features", pruned_image_features(model.model, pruner, layout, tracer))
    rewrite = image_rewrite(model, pruner, layout)
    patch_forward(model, patch, rewrite)
    patch_generate(model, patch, rewrite)


def check_image_options(pruner: VisionTokenPruner, layout: str, host: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))} for {host}, got {layout!r}")
    check_signals(pruner, {CLS_ATTENTION}, host)
    if layout == "native" and not has_select(pruner):
        raise ValueError(
            f"method {pruner.name!r} merges tokens, but layout='native' places newline tokens by the kept "
            "tokens' positions; use layout='paper' or a method that selects tokens"
        )


def pin_paper_resolution(processor):
    """Pin a LLaVA-NeXT processor (or its image processor) to 2x2 tiles, the paper's 672 x 672 for
    336-px towers, as `layout="paper"` expects; returns the same object."""
    image_processor = getattr(processor, "image_processor", processor)
    tile = image_processor.crop_size["height"] if image_processor.crop_size else image_processor.size["shortest_edge"]
    image_processor.image_grid_pinpoints = [[PAPER_TILES * tile, PAPER_TILES * tile]]
    return processor


def _geometry(config) -> tuple[int, int]:
    """(crop size in pixels, tokens per crop side)."""
    vision = config.vision_config
    return vision.image_size, vision.image_size // vision.patch_size


def image_grid(config, image_size, layout: str) -> TileGrid:
    """Where the tiles of one image go: the stock grid, or the paper's pinned 2x2 (unpadding is only
    used there to count the placeholders the pinned processor writes)."""
    tile, side = _geometry(config)
    pinpoints = [[PAPER_TILES * tile, PAPER_TILES * tile]] if layout == "paper" else config.image_grid_pinpoints
    return tile_grid(image_size, pinpoints, tile, side)


def placeholder_counts(config, pruner: VisionTokenPruner, grid: TileGrid | None, layout: str) -> tuple[int, int]:
    """(placeholders the processor wrote for the image, tokens the pruned model feeds for it)."""
    _, side = _geometry(config)
    per_crop = side * side
    if grid is None:  # a single crop and its newline
        return per_crop + 1, pruner.kept_per_image(per_crop) + 1
    height = grid.shape[0]
    written = per_crop + grid.num_tokens + height
    if layout == "paper":
        return written, (1 + grid.rows * grid.cols) * pruner.kept_per_image(per_crop)
    return written, pruner.kept_per_image(per_crop + grid.num_tokens) + height


def pruned_image_features(inner, pruner: VisionTokenPruner, layout: str, tracer: Tracer | None = None):
    stock = inner.get_image_features
    config = inner.config

    @functools.wraps(stock)
    def get_image_features(
        pixel_values, image_sizes, vision_feature_layer=None, vision_feature_select_strategy=None, **kwargs
    ):
        layer = config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        strategy = vision_feature_select_strategy or config.vision_feature_select_strategy
        if strategy != "default":
            raise ValueError(f"pruning LLaVA-NeXT supports vision_feature_select_strategy='default', got {strategy!r}")
        grids = [image_grid(config, size, layout) for size in image_sizes]
        crops = gather_crops(pixel_values, [1 + grid.rows * grid.cols for grid in grids])
        if layout == "paper" and bool((crops.flatten(1).abs().amax(dim=1) == 0).any()):
            raise ValueError(
                "layout='paper' got all-zero crops (the processor's padding for images with fewer than "
                f"{1 + PAPER_TILES**2} crops); pin the processor with pin_paper_resolution(processor)"
            )
        vision = clip.encode(inner.vision_tower, crops, layer, CLS_ATTENTION in pruner.requires)
        if layout == "paper":
            tokens = paper_tokens(pruner, vision, grids, inner.multi_modal_projector, tracer)
        else:
            tokens = native_tokens(pruner, vision, grids, inner.multi_modal_projector, inner.image_newline, tracer)
        output = BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=tokens)
        return output if kwargs.get("return_dict", True) else output.to_tuple()

    return get_image_features


def gather_crops(pixel_values: torch.Tensor, crops_per_image: list[int]) -> torch.Tensor:
    """[sum crops, 3, H, W] from the processor's padded [images, max crops, 3, H, W] (or already flat)."""
    if pixel_values.dim() == 4:
        if pixel_values.shape[0] != sum(crops_per_image):
            raise ValueError(
                f"pixel_values holds {pixel_values.shape[0]} crops; the images need {sum(crops_per_image)}"
            )
        return pixel_values
    if pixel_values.dim() != 5:
        raise ValueError(
            f"pixel_values must be [images, crops, 3, H, W] or [crops, 3, H, W], got {tuple(pixel_values.shape)}"
        )
    if pixel_values.shape[1] < max(crops_per_image):
        raise ValueError(
            f"pixel_values holds {pixel_values.shape[1]} crops per image, the layout needs {max(crops_per_image)}; "
            "for layout='paper' pin the processor with pin_paper_resolution(processor)"
        )
    return torch.cat([image[:count] for image, count in zip(pixel_values, crops_per_image)])


def per_image(vision: VisionFeatures, crops_per_image: list[int]):
    """Split a batch of crops into (features [P, N, C], attention [P, H, N] | None) per image."""
    features = vision.features.split(crops_per_image)
    attention = (
        vision.cls_attention.split(crops_per_image) if vision.cls_attention is not None else [None] * len(features)
    )
    return list(zip(features, attention))


def paper_tokens(pruner, vision: VisionFeatures, grids: list[TileGrid], projector, tracer=None) -> list[torch.Tensor]:
    """Every crop pruned to T on its own; base first, then the tiles' tokens over the full tile map."""
    pruned = prune(pruner, vision, pruner.kept_per_image(vision.features.shape[1]), split=tracer is not None)
    if tracer is not None:
        labels = []
        for item, grid in enumerate(grids):
            labels += [("base", item, 0)] + [("tile", item, tile) for tile in range(grid.rows * grid.cols)]
        tracer.add_rows("image", vision.grid, labels, pruned.indices, pruned.important)
    indices = pruned.indices
    projected = projector(pruned.features)
    tokens, start = [], 0
    for grid in grids:
        count = 1 + grid.rows * grid.cols
        base, tiles = projected[start], projected[start + 1 : start + count].flatten(0, 1)
        if indices is not None:
            tiles = tiles[torch.argsort(full_grid_order(indices[start + 1 : start + count], grid).flatten())]
        tokens.append(torch.cat([base, tiles]))
        start += count
    return tokens


def native_tokens(pruner, vision: VisionFeatures, grids: list[TileGrid | None], projector, newline, tracer=None):
    """The stock unpad + newline layout of each image with `visual_token_num` kept in total."""
    crops = [1 + grid.rows * grid.cols if grid is not None else 1 for grid in grids]
    return [
        image_tokens(
            pruner,
            features,
            attention,
            vision.grid,
            grid,
            projector,
            newline,
            None if tracer is None else functools.partial(tracer.add, "image", item),
        )
        for item, ((features, attention), grid) in enumerate(zip(per_image(vision, crops), grids))
    ]


def image_tokens(pruner, features, attention, crop_grid, grid: TileGrid | None, projector, newline, record=None):
    """One image: base crop and tile map share the budget in proportion to their sizes (see module doc).

    A map the stock model resizes (OneVision's anyres_max) is resized after the projector there, so
    its tokens are projected and resized the stock way and the kept ones picked from the result.
    `record(part, grid, kept, important)` (tracing) is told what each part kept."""
    split = record is not None
    base = VisionFeatures(features[:1], crop_grid, None if attention is None else attention[:1])
    if grid is None:  # a single crop: the whole budget goes to it, one newline after it
        kept = prune(pruner, base, pruner.kept_per_image(features.shape[1]), split)
        if record is not None:
            record("image", crop_grid, *kept.row(0))
        return torch.cat([projector(kept.features[0]), newline[None].to(kept.features.dtype)])
    tile_map = VisionFeatures(
        image_map(features[1:], grid)[None],
        grid.shape,
        None if attention is None else image_map(attention[1:].transpose(1, 2), grid).T[None],
    )
    budgets = split_total(
        pruner.kept_per_image(features.shape[1] + grid.num_tokens), [features.shape[1], grid.num_tokens]
    )
    base_kept = prune(pruner, base, budgets[0], split)
    map_kept = prune(pruner, tile_map, budgets[1], split)
    if record is not None:
        record("base", crop_grid, *base_kept.row(0))
        record("tiles", grid.shape, *map_kept.row(0))
    map_positions = map_kept.indices[0]
    if grid.resized is not None:
        map_tokens = image_map(projector(features[1:]), grid)[map_positions]
    else:
        map_tokens = projector(map_kept.features[0])
    return torch.cat([projector(base_kept.features[0]), with_newlines(map_tokens, map_positions, grid.shape, newline)])


def image_rewrite(model, pruner: VisionTokenPruner, layout: str, grids_for=None):
    """Rewrite each image's placeholder run from the processor's count to the pruned count.

    grids_for(given) -> per-image TileGrid (None for a single-crop image); defaults to LLaVA-NeXT's."""
    config = model.config
    pad = config.text_config.pad_token_id
    pad = 0 if pad is None else pad

    def rewrite(given):
        input_ids, image_sizes = given.get("input_ids"), given.get("image_sizes")
        if given.get("pixel_values") is None or input_ids is None or image_sizes is None:
            return None
        grids = grids_for(given) if grids_for else [image_grid(config, size, layout) for size in image_sizes]
        written, fed = zip(*(placeholder_counts(config, pruner, grid, layout) for grid in grids))
        counts = run_counts(input_ids, config.image_token_id, written, fed)
        if counts is None:
            found = int((input_ids == config.image_token_id).sum())
            if found == sum(fed):
                return None  # already rewritten
            hint = "; pin the processor with pin_paper_resolution(processor)" if layout == "paper" else ""
            raise ValueError(
                f"the prompt holds {found} image placeholders; layout={layout!r} expects {sum(written)} "
                f"for image sizes {[list(map(int, size)) for size in image_sizes]}{hint}"
            )
        (ids, labels), mask = retile(
            counts, [(input_ids, pad), (given.get("labels"), -100)], given.get("attention_mask")
        )
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return rewrite
