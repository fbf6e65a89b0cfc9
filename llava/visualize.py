"""Pictures of which patches a pruning method kept."""

from __future__ import annotations

import numbers

import torch
from PIL import Image, ImageDraw

IMPORTANT_COLOUR = (255, 140, 0)  # orange
DIVERSE_COLOUR = (0, 170, 255)  # sky blue
DIM = 0.3  # brightness left to dropped patches


def pixels_to_image(pixel_values: torch.Tensor, mean, std) -> Image.Image:
    """Undo the processor's normalisation of one [3, H, W] image."""
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 3 or pixel_values.shape[0] != 3:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(
            f"pixel_values must be one image as a [3, H, W] tensor (e.g. inputs.pixel_values[0]), got {shape}"
        )
    mean, std = _channels(mean, "mean"), _channels(std, "std")
    if bool((std == 0).any()):
        raise ValueError(f"std must be non-zero for every channel, got {std.flatten().tolist()}")
    array = ((pixel_values.float().cpu() * std + mean).clamp(0, 1) * 255).round().byte()
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def _channels(values, name: str) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(values, dtype=torch.float32).flatten()
    except (TypeError, ValueError, RuntimeError):
        tensor = None
    if tensor is None or tensor.numel() != 3 or not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be 3 finite numbers (one per colour channel), got {values!r}")
    return tensor.view(3, 1, 1)


def _grid(grid) -> tuple[int, int]:
    if (
        not isinstance(grid, (tuple, list))
        or len(grid) != 2
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in grid)
    ):
        raise ValueError(f"grid must be (rows, cols), two integers >= 1, got {grid!r}")
    return int(grid[0]), int(grid[1])


def _indices(values, name: str, count: int) -> list[int]:
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    try:
        values = list(values)
    except TypeError:
        raise ValueError(f"{name} must be a list of patch indices, got {values!r}") from None
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v < count]
    if bad:
        raise ValueError(
            f"{name} must hold patch indices in 0..{count - 1} (raster order over the grid), got {bad[:5]!r}"
        )
    return [int(v) for v in values]


def draw_kept_patches(
    image: Image.Image,
    grid: tuple[int, int],
    important: list[int],
    diverse: list[int],
    colours: tuple[tuple[int, int, int], tuple[int, int, int]] = (IMPORTANT_COLOUR, DIVERSE_COLOUR),
) -> Image.Image:
    """`image` with dropped patches dimmed and kept ones outlined: important vs diverse in two colours
    (`colours`, orange and blue by default). `grid` is (rows, cols) of the patch grid over `image`;
    indices count patches in raster order and must lie inside it."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL image, got {type(image).__name__}")
    rows, cols = _grid(grid)
    important, diverse = _indices(important, "important", rows * cols), _indices(diverse, "diverse", rows * cols)
    cell_w, cell_h = image.width / cols, image.height / rows
    kept = set(important) | set(diverse)
    dimmed = Image.eval(image, lambda v: int(v * DIM))
    mask = Image.new("L", image.size, 0)
    paint = ImageDraw.Draw(mask)
    for index in kept:
        r, c = divmod(index, cols)
        paint.rectangle([c * cell_w, r * cell_h, (c + 1) * cell_w - 1, (r + 1) * cell_h - 1], fill=255)
    out = Image.composite(image, dimmed, mask)
    draw = ImageDraw.Draw(out)
    width = max(1, round(min(cell_w, cell_h) / 8))
    for indices, colour in zip((important, diverse), colours):
        for index in indices:
            r, c = divmod(index, cols)
            box = [c * cell_w, r * cell_h, (c + 1) * cell_w - 1, (r + 1) * cell_h - 1]
            draw.rectangle(box, outline=colour, width=width)
    return out


def side_by_side(panels: list[tuple[str, Image.Image]], footer: str = "") -> Image.Image:
    """Panels in a row, each with a caption above, and an optional footer line."""
    panels = list(panels)
    if not panels or not all(
        isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[1], Image.Image) for p in panels
    ):
        raise ValueError("panels must be a non-empty list of (caption, PIL image) pairs")
    pad, caption_h = 8, 18
    footer_h = 18 if footer else 0
    width = sum(p.width for _, p in panels) + pad * (len(panels) + 1)
    height = max(p.height for _, p in panels) + caption_h + footer_h + 2 * pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = pad
    for caption, panel in panels:
        draw.text((x, pad // 2), caption, fill="black")
        canvas.paste(panel, (x, pad + caption_h))
        x += panel.width + pad
    if footer:
        draw.text((pad, height - footer_h), footer, fill="black")
    return canvas
