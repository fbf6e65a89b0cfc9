"""Pictures of which patches a pruning method kept."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw

IMPORTANT_COLOUR = (255, 140, 0)  # orange
DIVERSE_COLOUR = (0, 170, 255)  # sky blue
DIM = 0.3  # brightness left to dropped patches


def pixels_to_image(pixel_values: torch.Tensor, mean, std) -> Image.Image:
    """Undo the processor's normalisation of one [3, H, W] image."""
    mean = torch.tensor(mean).view(3, 1, 1)
    std = torch.tensor(std).view(3, 1, 1)
    array = ((pixel_values.float().cpu() * std + mean).clamp(0, 1) * 255).round().byte()
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def draw_kept_patches(
    image: Image.Image,
    grid: tuple[int, int],
    important: list[int],
    diverse: list[int],
    colours: tuple[tuple[int, int, int], tuple[int, int, int]] = (IMPORTANT_COLOUR, DIVERSE_COLOUR),
) -> Image.Image:
    """`image` with dropped patches dimmed and kept ones outlined: important vs diverse in two colours
    (`colours`, orange and blue by default)."""
    rows, cols = grid
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
