"""Spatial average pooling of the patch grid: the downsampling baseline.

VTC-Bench (Liao et al., arXiv 2510.07143) finds plain downsampling ahead of many compression
methods. Where: before the language model, on the pre-projector patch features (the projector then
maps each pooled feature, as LLaVA-NeXT-Video's pooling resampler does). Signal: none.
Budget: the rows x cols grid is average-pooled to an r x c grid with r * c <= T, as square as the
grid allows: r = floor(sqrt(T * rows / cols)) (at most rows), c = min(cols, floor(T / r)). For a
24 x 24 grid: T = 64 -> 8 x 8 = 64, T = 128 -> 11 x 11 = 121, T = 192 -> 13 x 14 = 182,
T = 32 -> 5 x 6 = 30 tokens. Pooling windows follow `adaptive_avg_pool2d` (uneven sizes when the
grid does not divide evenly). The pooled tokens reach the language model in raster order; T >= N
leaves the grid as it is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import VisionFeatures, VisionTokenPruner, check_token_num


def pooled_grid(grid: tuple[int, int], visual_token_num: int) -> tuple[int, int]:
    """The (rows, cols) the grid is pooled to for a budget of T tokens."""
    visual_token_num = check_token_num(visual_token_num)
    rows, cols = grid
    if visual_token_num >= rows * cols:
        return rows, cols
    out_rows = min(rows, max(1, math.isqrt(visual_token_num * rows // cols)))
    return out_rows, min(cols, max(1, visual_token_num // out_rows))


def pool(features: torch.Tensor, grid: tuple[int, int], visual_token_num: int) -> torch.Tensor:
    """Average-pool features [B, rows * cols, C] (raster order) to [B, r * c, C]."""
    rows, cols = grid
    batch, num_tokens, channels = features.shape
    if rows * cols != num_tokens:
        raise ValueError(f"grid {grid} does not hold the {num_tokens} tokens given")
    target = pooled_grid(grid, visual_token_num)
    if target == (rows, cols):
        return features
    image = features.transpose(1, 2).reshape(batch, channels, rows, cols)
    return F.adaptive_avg_pool2d(image, target).flatten(2).transpose(1, 2)


class Pool(VisionTokenPruner):
    """`pool`: average pooling of the patch grid to at most T tokens."""

    name = "pool"

    def kept_per_image(self, num_tokens: int, grid: tuple[int, int] | None = None) -> int:
        if grid is None:
            side = math.isqrt(num_tokens)
            grid = (side, num_tokens // side)
        return math.prod(pooled_grid(grid, self.visual_token_num))

    def reduce(self, vision: VisionFeatures) -> torch.Tensor:
        return pool(vision.features, vision.grid, self.visual_token_num)
