"""Geometry of anyres images (LLaVA-NeXT, LLaVA-NeXT-Video, LLaVA-OneVision), shared by their hosts.

An anyres image arrives as a base crop (the whole image at the tower's resolution) followed by
rows x cols tiles of the image resized and padded to the best grid pinpoint. The stock layout puts
the tiles side by side into one feature map, cuts the padding off (`unpad`), optionally shrinks
large maps (OneVision's `anyres_max_N`) and ends every row with a learned newline token. These
helpers reproduce that geometry on any per-token tensor (features, attention), so a pruner can see
the same map the language model would and the kept tokens can be laid out the stock way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.image_processing_utils import select_best_resolution
from transformers.models.llava_next.modeling_llava_next import unpad_image


@dataclass(frozen=True)
class TileGrid:
    """Where one image's tiles go. rows x cols tiles of side x side tokens; the unpadded window
    [top:bottom, left:right] of the (rows*side) x (cols*side) map; `resized` = the (h, w) a large
    map is interpolated to (None when it is not)."""

    rows: int
    cols: int
    side: int
    top: int
    bottom: int
    left: int
    right: int
    resized: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the map the language model sees, newlines excluded."""
        return self.resized or (self.bottom - self.top, self.right - self.left)

    @property
    def num_tokens(self) -> int:
        return math.prod(self.shape)


def tile_grid(
    image_size, pinpoints: Sequence, tile: int, side: int, unpad: bool = True, max_area: int | None = None
) -> TileGrid:
    """The tile layout for an image of `image_size` (height, width), as the stock model computes it.

    tile: crop size in pixels; side: tokens per crop side. max_area: OneVision's `anyres_max_N`
    limit N (the map is interpolated down when it exceeds N base crops by more than 10 %).
    """
    size = image_size.tolist() if isinstance(image_size, torch.Tensor) else list(image_size)
    height, width = select_best_resolution(size, pinpoints)
    rows, cols = height // tile, width // tile
    full_h, full_w = rows * side, cols * side
    top, bottom, left, right = 0, full_h, 0, full_w
    if unpad:
        index = torch.arange(full_h * full_w).view(1, full_h, full_w)
        window = unpad_image(index, size)[0]
        top, left = divmod(int(window[0, 0]), full_w)
        bottom, right = top + window.shape[0], left + window.shape[1]
    resized = None
    if max_area is not None:
        cur_h, cur_w = bottom - top, right - left
        ratio = math.sqrt(cur_h * cur_w / (max_area * side**2))
        if ratio > 1.1:
            resized = (int(cur_h // ratio), int(cur_w // ratio))
    return TileGrid(rows, cols, side, top, bottom, left, right, resized)


def tile_map(per_tile: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """[rows*cols, side*side, *rest] per-tile tokens -> [rows*side, cols*side, *rest], tiles side by side."""
    rest = per_tile.shape[2:]
    tiles = per_tile.reshape(grid.rows, grid.cols, grid.side, grid.side, *rest)
    return tiles.transpose(1, 2).reshape(grid.rows * grid.side, grid.cols * grid.side, *rest)


def image_map(per_tile: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """The stock map of `per_tile` tokens [rows*cols, side*side, C]: tiled, unpadded and (if the grid
    says so) bilinearly resized, flattened to [h * w, C] in raster order."""
    full = tile_map(per_tile, grid)[grid.top : grid.bottom, grid.left : grid.right]
    if grid.resized is not None:
        resized = F.interpolate(full.permute(2, 0, 1)[None], list(grid.resized), mode="bilinear")[0]
        return resized.flatten(1).transpose(0, 1)
    return full.flatten(0, 1)


def full_grid_order(positions: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """Raster rank over the whole (rows*side) x (cols*side) map of token `positions` [rows*cols, K]
    given per tile (tile-local raster indices); used to order kept tile tokens the way the paper's
    no-unpad layout does."""
    tile = torch.arange(grid.rows * grid.cols, device=positions.device)[:, None]
    row = (tile // grid.cols) * grid.side + positions // grid.side
    col = (tile % grid.cols) * grid.side + positions % grid.side
    return row * (grid.cols * grid.side) + col


def with_newlines(
    tokens: torch.Tensor, positions: torch.Tensor, shape: tuple[int, int], newline: torch.Tensor
) -> torch.Tensor:
    """Kept map tokens [K, D] at raster `positions` [K] (ascending) of a `shape` map, with the newline
    token [D] after every row of the map, as the stock layout has it (rows keep their newline even
    when none of their tokens is kept)."""
    height, width = shape
    row_end = torch.arange(height, device=positions.device) * (width + 1) + width
    keys = torch.cat([positions // width * (width + 1) + positions % width, row_end])
    order = torch.argsort(keys)
    lines = newline.to(tokens.dtype)[None].expand(height, -1)
    return torch.cat([tokens, lines])[order]


def split_total(total: int, sizes: Sequence[int]) -> list[int]:
    """Split a budget of `total` tokens over parts of `sizes` tokens in proportion to their sizes
    (largest remainders get the leftover tokens, earlier parts first on ties); never above a size."""
    whole = sum(sizes)
    total = min(total, whole)
    shares = [total * size / whole for size in sizes]
    counts = [int(share) for share in shares]
    leftover = total - sum(counts)
    for index in sorted(range(len(sizes)), key=lambda i: (counts[i] - shares[i], i))[:leftover]:
        counts[index] += 1
    return counts
