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

In-LLM methods (FastV, PDrop, SparseVLM) see every token of the layout (the stock one, or with
`layout="paper"` the 5 x 576 crop tokens without newlines, as the paper's 2880) and keep
`visual_token_num` per image inside the language model: the paper's FastV at 640 is
`visual_token_num=640`, where VisPruner's 640 is 128 per crop.

The instance's `get_image_features` does the pruning (tower to the feature layer, [CLS] rows of
that layer beside SDPA, projector on kept tokens only); `forward`/`generate` rewrite each image's
placeholder run from the processor's count to the kept count.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import TokenPruner, VisionFeatures
from ..trace import Tracer
from . import clip, inside
from .anyres import TileGrid, full_grid_order, image_map, split_total, tile_grid, with_newlines
from .common import Host, KeepAll, has_select, prune
from .runs import rewrite_placeholders

HOST = "LLaVA-NeXT"
LAYOUTS = ("native", "paper")
PAPER_TILES = 2  # the paper pins every image to 2 x 2 tiles


def attach(model, pruner: TokenPruner, patch: InstancePatch, tracer: Tracer | None = None, *, layout: str = "native"):
    host = Host(model, pruner, patch, tracer, HOST, clip.SIGNALS)
    if attach_inside(host, layout):
        return
    host.patch_encoder("get_image_features", lambda stock: image_features(host, layout))
    host.rewrite_prompts(image_rewrite(host, layout))


def attach_inside(host: Host, layout: str) -> bool:
    """Check the method and `layout` for this family's images; for an in-LLM method attach it (images
    stay stock) and return True."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))} for {host.name}, got {layout!r}")
    host.check_signals()
    if host.inside:
        images = dataclasses.replace(host, pruner=KeepAll(), tracer=None)
        if layout == "paper":  # the paper's crops, every token kept, then pruned inside the language model
            host.patch_encoder("get_image_features", lambda stock: image_features(images, layout))
        host.rewrite_prompts(image_rewrite(images, layout))  # native: the stock placeholders, their count checked
        placeholders = {host.config.image_token_id: "image"}
        video = getattr(host.config, "video_token_id", None)
        if video is not None:
            placeholders[video] = "video"
        inside.attach(host, inside.Placeholders(placeholders))
        return True
    if layout == "native" and not has_select(host.pruner):
        raise ValueError(
            f"method {host.pruner.name!r} merges tokens, but layout='native' places newline tokens by the kept "
            "tokens' positions; use layout='paper' or a method that selects tokens"
        )
    vision = host.config.vision_config
    side = vision.image_size // vision.patch_size
    host.check_merge_schedule(
        side * side, clip.feature_depth_of(vision.num_hidden_layers, host.config.vision_feature_layer)
    )
    return False


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


def placeholder_counts(config, pruner, grid: TileGrid | None, layout: str) -> tuple[int, int]:
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


def image_features(host: Host, layout: str):
    inner, config = host.inner, host.config

    def get_image_features(
        pixel_values, image_sizes, vision_feature_layer=None, vision_feature_select_strategy=None, **kwargs
    ):
        host.check_strategy(vision_feature_select_strategy)
        grids = [image_grid(config, size, layout) for size in image_sizes]
        crops = gather_crops(pixel_values, [1 + grid.rows * grid.cols for grid in grids])
        if layout == "paper" and bool((crops.flatten(1).abs().amax(dim=1) == 0).any()):
            raise ValueError(
                "layout='paper' got all-zero crops (the processor's padding for images with fewer than "
                f"{1 + PAPER_TILES**2} crops); pin the processor with pin_paper_resolution(processor)"
            )
        vision = clip.encode(inner.vision_tower, crops, host.layer(vision_feature_layer), host.asked, host.merger)
        host.project(vision, inner.multi_modal_projector)
        if layout == "paper":
            tokens = paper_tokens(host, vision, grids, inner.multi_modal_projector)
        else:
            tokens = native_tokens(host, vision, grids, inner.multi_modal_projector, inner.image_newline)
        return BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=tokens)

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


def paper_tokens(host: Host, vision: VisionFeatures, grids: list[TileGrid], projector) -> list[torch.Tensor]:
    """Every crop pruned to T on its own; base first, then the tiles' tokens over the full tile map."""
    pruner = host.pruner
    pruned = prune(pruner, vision, pruner.kept_per_image(vision.grid[0] * vision.grid[1]), host.split)
    if host.tracer is not None:
        labels = []
        for item, grid in enumerate(grids):
            labels += [("base", item, 0)] + [("tile", item, tile) for tile in range(grid.rows * grid.cols)]
        host.tracer.add_rows("image", vision.grid, labels, pruned.indices, pruned.important)
    indices = pruned.indices
    projected = host.tokens(pruned, projector)
    tokens, start = [], 0
    for grid in grids:
        count = 1 + grid.rows * grid.cols
        base, tiles = projected[start], projected[start + 1 : start + count].flatten(0, 1)
        if indices is not None:
            tiles = tiles[torch.argsort(full_grid_order(indices[start + 1 : start + count], grid).flatten())]
        tokens.append(torch.cat([base, tiles]))
        start += count
    return tokens


def native_tokens(host: Host, vision: VisionFeatures, grids: list[TileGrid | None], projector, newline):
    """The stock unpad + newline layout of each image with `visual_token_num` kept in total."""
    tokens, start = [], 0
    for item, grid in enumerate(grids):
        count = 1 + grid.rows * grid.cols if grid is not None else 1
        record = None if host.tracer is None else functools.partial(host.tracer.add, "image", item)
        tokens.append(image_tokens(host, vision.take(slice(start, start + count)), grid, projector, newline, record))
        start += count
    return tokens


def image_tokens(host: Host, crops: VisionFeatures, grid: TileGrid | None, projector, newline, record=None):
    """One image (its crops' features and signals): base crop and tile map share the budget in
    proportion to their sizes (see module doc).

    A map the stock model resizes (OneVision's anyres_max) is resized after the projector there, so
    its tokens are projected and resized the stock way and the kept ones picked from the result.
    `record(part, grid, kept, important)` (tracing) is told what each part kept."""
    pruner, split = host.pruner, host.split
    per_crop = crops.features.shape[1]
    base = crops.take(slice(0, 1))
    if grid is None:  # a single crop: the whole budget goes to it, one newline after it
        kept = prune(pruner, base, pruner.kept_per_image(per_crop), split)
        if record is not None:
            record("image", crops.grid, *kept.row(0))
        return torch.cat([host.tokens(kept, projector)[0], newline[None].to(kept.features.dtype)])
    tiles = crops.take(slice(1, None))
    signal = tiles.importance_signal  # [CLS] attention (CLIP) or received attention (SigLIP), mapped alike
    tile_map = VisionFeatures(
        image_map(tiles.features, grid)[None],
        grid.shape,
        projected=None if tiles.projected is None else image_map(tiles.projected, grid)[None],
        **({} if signal is None else {signal: image_map(tiles.importance.transpose(1, 2), grid).T[None]}),
    )
    budgets = split_total(pruner.kept_per_image(per_crop + grid.num_tokens), [per_crop, grid.num_tokens])
    base_kept = prune(pruner, base, budgets[0], split)
    map_kept = prune(pruner, tile_map, budgets[1], split)
    if record is not None:
        record("base", crops.grid, *base_kept.row(0))
        record("tiles", grid.shape, *map_kept.row(0))
    map_positions = map_kept.indices[0]
    if grid.resized is not None and tiles.projected is None:
        map_tokens = image_map(projector(tiles.features), grid)[map_positions]
    else:
        map_tokens = host.tokens(map_kept, projector)[0]
    base_tokens = host.tokens(base_kept, projector)[0]
    return torch.cat([base_tokens, with_newlines(map_tokens, map_positions, grid.shape, newline)])


def image_rewrite(host: Host, layout: str, grids_for=None):
    """Rewrite each image's placeholder run from the processor's count to the pruned count.

    grids_for(given) -> per-image TileGrid (None for a single-crop image); defaults to LLaVA-NeXT's."""
    config = host.config
    hint = "; pin the processor with pin_paper_resolution(processor)" if layout == "paper" else ""
    hint = "" if grids_for else f" (layout={layout!r}){hint}"  # a family with its own grids has no layouts

    def rewrite(given):
        image_sizes = given.get("image_sizes")
        if given.get("pixel_values") is None or image_sizes is None:
            return None
        grids = grids_for(given) if grids_for else [image_grid(config, size, layout) for size in image_sizes]
        written, fed = zip(*(placeholder_counts(config, host.pruner, grid, layout) for grid in grids))
        return rewrite_placeholders(given, config.image_token_id, written, fed, host.pad_id, hint, kind="image")

    return rewrite
