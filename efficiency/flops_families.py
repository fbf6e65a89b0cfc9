"""Each family's `VisionCost` (flops_vision.py) from its transformers config, chosen by the config's class.

`describe(config, image_size=..., tiles=..., layout=...)`: what one image costs at the resolution
asked. Counted as FlopCounterMode counts: matrix multiplies only (patch embeddings as convolutions,
attention as the full query x key rectangle of each attention segment); position embeddings,
interpolation, pooling, pixel shuffles, norms and softmax are free.
"""

from __future__ import annotations

import math

from .flops_vision import UniformTower, VisionCost, attention_flops, linear, vision_layer_flops

QWEN_MERGE_UNIT = 4  # Qwen's patch mergers join 2x2 patches (spatial_merge_size 2) into one token
INTERNVL_MARKERS = 2  # <img> and </img> around an image's tiles
GEMMA3_MARKERS = 4  # the blank line, <start_of_image>, <end_of_image>, the blank line
IDEFICS3_TILE_MARKERS = 2  # <fake_token_around_image> and <row_i_col_j> (or <global-img>) before each crop


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _feature_depth(layers: int, feature_layer) -> int:
    from llava.models.clip import feature_depth_of

    return feature_depth_of(layers, feature_layer)


def _vit(vision, patches: int, with_cls: bool, feature_layer) -> dict:
    """The ViT part shared by CLIP, SigLIP and InternViT towers: uniform layers over patches (+ [CLS])."""
    width, layers = vision.hidden_size, vision.num_hidden_layers
    tokens = patches + with_cls
    patch = _pair(vision.patch_size)[0]
    return dict(
        embedding=2 * patches * width * vision.num_channels * patch * patch,
        layers=(vision_layer_flops(tokens, width, vision.intermediate_size),) * layers,
        stock_depth=layers,
        feature_depth=layers if feature_layer is None else _feature_depth(layers, feature_layer),
        heads=vision.num_attention_heads,
        selection_width=width,
        uniform=UniformTower(tokens, width, vision.intermediate_size),
    )


def _mlp_projector(fan_in: int, hidden: int) -> int:
    return linear(1, fan_in, hidden) + linear(1, hidden, hidden)


def _clip_signals(tokens: int, width: int) -> dict:
    """The [CLS] query row against every key; the next layer's [CLS] query and every key."""
    return dict(signal=2 * tokens * width, next_projections=linear(1, width, width) + linear(tokens, width, width))


def _received(tokens: int, width: int) -> int:
    """Mean attention each token receives: every query row against every key (all heads), beside SDPA."""
    return 2 * tokens * tokens * width


def llava(config, **_) -> VisionCost:
    vision, hidden = config.vision_config, config.text_config.hidden_size
    side = vision.image_size // vision.patch_size
    patches = side * side
    return VisionCost(
        "LLaVA", 1, parts=(patches,), grids=((side, side),), projector=_mlp_projector(vision.hidden_size, hidden),
        stock_projected=patches, projected_width=hidden, **_clip_signals(patches + 1, vision.hidden_size),
        **_vit(vision, patches, True, config.vision_feature_layer),
    )  # fmt: skip


def llava_next(config, image_size=None, layout: str = "native", **_) -> VisionCost:
    """Base crop + rows x cols tiles (`image_size` = the image's (height, width)); "native": base and
    unpadded map share the budget, newline per map row; "paper": 2x2 tiles, each crop pruned to T."""
    from llava.models.anyres import tile_grid
    from llava.models.llava_next import LAYOUTS, PAPER_TILES

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    vision, hidden = config.vision_config, config.text_config.hidden_size
    tile, side = vision.image_size, vision.image_size // vision.patch_size
    per_crop = side * side
    paper = layout == "paper"
    pinpoints = [[PAPER_TILES * tile] * 2] if paper else config.image_grid_pinpoints
    size = image_size or (PAPER_TILES * tile,) * 2
    grid = tile_grid(size, pinpoints, tile, side)
    crops = 1 + grid.rows * grid.cols
    stock_visual = per_crop + grid.num_tokens + grid.shape[0]
    common = dict(
        projector=_mlp_projector(vision.hidden_size, hidden), stock_projected=crops * per_crop, projected_width=hidden,
        stock_tokens=stock_visual, **_clip_signals(per_crop + 1, vision.hidden_size),
        **_vit(vision, per_crop, True, config.vision_feature_layer),
    )  # fmt: skip
    if paper:
        return VisionCost("LLaVA-NeXT (paper layout)", crops, parts=(per_crop,) * crops,
                          grids=((side, side),) * crops, inside_keeps_all=True, **common)  # fmt: skip
    return VisionCost("LLaVA-NeXT", crops, parts=(per_crop, grid.num_tokens), grids=((side, side), grid.shape),
                      shared_budget=True, newlines=grid.shape[0], **common)  # fmt: skip


def llava_onevision(config, image_size=None, **_) -> VisionCost:
    """SigLIP (no [CLS]) crops of the anyres_max_N layout; a map the stock model shrinks is shrunk after
    the projector, so the pruning path projects all its tiles' tokens and picks the kept ones."""
    from llava.models.llava_onevision import image_grids

    vision, hidden = config.vision_config, config.text_config.hidden_size
    side = vision.image_size // vision.patch_size
    per_crop = side * side
    (grid,) = image_grids(config, [image_size or (vision.image_size, vision.image_size)])
    tiles = grid.rows * grid.cols
    return VisionCost(
        "LLaVA-OneVision", 1 + tiles, parts=(per_crop, grid.num_tokens), grids=((side, side), grid.shape),
        shared_budget=True, newlines=grid.shape[0], projector=_mlp_projector(vision.hidden_size, hidden),
        stock_projected=(1 + tiles) * per_crop, projected_width=hidden, signal=_received(per_crop, vision.hidden_size),
        projects_kept=(True, grid.resized is None), also_projected=tiles * per_crop if grid.resized else 0,
        **_vit(vision, per_crop, False, config.vision_feature_layer),
    )  # fmt: skip


def _qwen_windows(rows: int, cols: int, window: int) -> list[int]:
    """Tokens (patches) of each attention window of a windowed Qwen2.5-VL block, for a grid of
    rows x cols merged tokens and windows of `window` merged tokens a side."""
    heights = [min(window, rows - top) for top in range(0, rows, window)]
    widths = [min(window, cols - left) for left in range(0, cols, window)]
    return [QWEN_MERGE_UNIT * h * w for h in heights for w in widths]


def qwen_vl(config, image_size=None, **_) -> VisionCost:
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL: one image of `image_size` pixels (multiples of patch x merge,
    as the processor resizes them), 2x2 patch mergers inside the tower (Qwen3-VL: also its deepstack
    mergers), the whole tower run in both paths; the signal is read at the last block's segments."""
    vision, hidden = config.vision_config, config.text_config.hidden_size
    version = type(config).__name__
    width = getattr(vision, "embed_dim", None) if version == "Qwen2VLConfig" else vision.hidden_size
    out = vision.hidden_size if version == "Qwen2VLConfig" else vision.out_hidden_size
    merge, patch = vision.spatial_merge_size, vision.patch_size
    height, wide = image_size or (merge * patch * 8,) * 2
    if height % (merge * patch) or wide % (merge * patch):
        raise ValueError(
            f"image_size must be multiples of {merge * patch} px (the processor resizes so), got {image_size}"
        )
    rows, cols = height // patch, wide // patch
    tokens, merged = rows * cols, rows * cols // merge**2
    if version == "Qwen2VLConfig":
        mlp = 2 * linear(tokens, width, int(width * vision.mlp_ratio))
    else:
        mlp = (3 if version == "Qwen2_5_VLConfig" else 2) * linear(tokens, width, vision.intermediate_size)
    projections = linear(tokens, width, 3 * width) + linear(tokens, width, width) + mlp
    full = [tokens]
    windowed = getattr(vision, "fullatt_block_indexes", None)
    segments = []
    for block in range(vision.depth):
        if windowed is not None and block not in windowed:
            window = vision.window_size // merge // patch
            segments.append(_qwen_windows(rows // merge, cols // merge, window))
        else:
            segments.append(full)
    layers = tuple(projections + sum(attention_flops(s, s, width) for s in parts) for parts in segments)
    mergers = 1 + len(getattr(vision, "deepstack_visual_indexes", None) or ())
    after = mergers * (linear(merged, 4 * width, 4 * width) + linear(merged, 4 * width, out))
    temporal = vision.temporal_patch_size
    return VisionCost(
        version.removesuffix("Config").replace("_", "."), 1, embedding=2 * tokens * width * vision.in_channels * temporal * patch**2,
        layers=layers, stock_depth=vision.depth, feature_depth=vision.depth, after_layers=after, parts=(merged,),
        grids=((rows // merge, cols // merge),), projector=0, stock_projected=0, selection_width=merge**2 * width,
        heads=vision.num_heads, projected_width=hidden, signal=sum(_received(s, width) for s in segments[-1]),
        markers=2,  # <|vision_start|>, <|vision_end|>
    )  # fmt: skip


def internvl(config, tiles: int = 1, **_) -> VisionCost:
    """InternViT with [CLS], `tiles` tiles per image, each pixel-shuffled by `downsample_ratio` and
    pruned to T on its own; the projector (norm, two linears) acts per shuffled token."""
    from llava.models.internvl_vision import shuffled_grid

    vision, hidden = config.vision_config, config.text_config.hidden_size
    height, width = _pair(vision.image_size)
    patch = _pair(vision.patch_size)[0]
    patches = (height // patch) * (width // patch)
    shuffled = shuffled_grid(height, width, config)
    per_tile = shuffled[0] * shuffled[1]
    joined = vision.hidden_size * patches // per_tile  # the shuffle's concatenated width
    tower = _vit(vision, patches, True, config.vision_feature_layer)
    return VisionCost(
        "InternVL", tiles, parts=(per_tile,) * tiles, grids=(shuffled,) * tiles, projector=_mlp_projector(joined, hidden),
        stock_projected=tiles * per_tile, projected_width=hidden, signal=2 * (patches + 1) * vision.hidden_size,
        markers=INTERNVL_MARKERS, items=tiles, **{**tower, "selection_width": joined},
    )  # fmt: skip


def gemma3(config, **_) -> VisionCost:
    """SigLIP at the config's resolution (896 px: 4096 patches), the whole tower, average-pooled to
    `mm_tokens_per_image`; the projector (RMSNorm, one matrix) acts per pooled token."""
    from llava.models.gemma3_vision import pooled_grid

    vision, hidden = config.vision_config, config.text_config.hidden_size
    side = vision.image_size // vision.patch_size
    grid = pooled_grid(config)
    return VisionCost(
        "Gemma 3", 1, parts=(grid[0] * grid[1],), grids=(grid,), projector=linear(1, vision.hidden_size, hidden),
        stock_projected=grid[0] * grid[1], projected_width=hidden, signal=_received(side * side, vision.hidden_size),
        markers=GEMMA3_MARKERS, **_vit(vision, side * side, False, None),
    )  # fmt: skip


def idefics3(config, image_size=None, **_) -> VisionCost:
    """SmolVLM / Idefics3: the image (`image_size` = its size after the processor's resize) split into
    rows x cols crops of the tower's size plus a global crop, each pixel-shuffled by `scale_factor`,
    projected by one linear and pruned to T on its own (each crop is its own placeholder run)."""
    vision, hidden = config.vision_config, config.text_config.hidden_size
    tile = vision.image_size
    height, width = image_size or (tile, tile)
    rows, cols = math.ceil(height / tile), math.ceil(width / tile)
    crops = rows * cols + (rows * cols > 1)  # a split image also gets the global crop
    from llava.models.smolvlm_vision import tile_grid

    side = tile // vision.patch_size
    shuffled = tile_grid(tile, tile, config)
    per_crop = shuffled[0] * shuffled[1]
    joined = vision.hidden_size * config.scale_factor**2
    tower = _vit(vision, side * side, False, None)
    return VisionCost(
        type(config).__name__.removesuffix("Config"), crops, parts=(per_crop,) * crops, grids=(shuffled,) * crops,
        projector=linear(1, joined, hidden), stock_projected=crops * per_crop, projected_width=hidden,
        signal=_received(side * side, vision.hidden_size), markers=IDEFICS3_TILE_MARKERS * crops + 1 + rows,
        items=crops, **{**tower, "selection_width": joined},
    )  # fmt: skip


FAMILIES = {
    "LlavaConfig": llava,
    "LlavaNextConfig": llava_next,
    "LlavaNextVideoConfig": llava_next,  # its images take LLaVA-NeXT's path
    "LlavaOnevisionConfig": llava_onevision,
    "Qwen2VLConfig": qwen_vl,
    "Qwen2_5_VLConfig": qwen_vl,
    "Qwen3VLConfig": qwen_vl,
    "InternVLConfig": internvl,
    "Gemma3Config": gemma3,
    "Idefics3Config": idefics3,
    "SmolVLMConfig": idefics3,
}


def describe(config, *, image_size=None, tiles: int = 1, layout: str = "native") -> VisionCost:
    """The `VisionCost` of one image for `config` (a model config of a family in `FAMILIES`).

    image_size: (height, width) in pixels where the family's token count depends on it (LLaVA-NeXT /
    OneVision: the original image; Qwen: after the processor's resize; SmolVLM: after its resize);
    tiles: InternVL's tiles per image; layout: LLaVA-NeXT's "native" or "paper"."""
    build = FAMILIES.get(type(config).__name__)
    if build is None:
        raise ValueError(f"no FLOPs accounting for a {type(config).__name__}; supported: {', '.join(FAMILIES)}")
    if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
        raise ValueError(f"image_size must be (height, width) in pixels, got {image_size!r}")
    if not isinstance(tiles, int) or tiles < 1:
        raise ValueError(f"tiles must be a positive integer, got {tiles!r}")
    return build(config, image_size=image_size, tiles=tiles, layout=layout)
