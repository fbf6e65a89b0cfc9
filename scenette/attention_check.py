"""How much of the vision tower's [CLS] attention falls on the patches that show something.

VisPruner ranks patches by the [CLS] -> patch attention of the feature layer; on Scenette that is
only a meaningful signal if [CLS] looks at the shapes and the sign rather than the background.

    python -m scenette.attention_check            # shipped model, 96 evaluation images
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .data import eval_rows
from .scene import BACKGROUND_LABEL, render, sample_scene


def content_share(model, processor, seeds: list[int], batch_size: int = 16) -> dict:
    """Mean share of [CLS] attention (head mean, feature layer) on patches that are mostly object or
    sign, next to the share of such patches in the image (what uniform attention would give)."""
    import torch  # here, not at the top: `--help` answers without loading torch

    from llava.models import clip

    tower = model.model.vision_tower
    patch = tower.config.patch_size
    shares, areas = [], []
    for start in range(0, len(seeds), batch_size):
        scenes = [sample_scene(s) for s in seeds[start : start + batch_size]]
        rendered = [render(scene) for scene in scenes]
        pixels = processor.image_processor([image for image, _ in rendered], return_tensors="pt").pixel_values
        with torch.inference_mode():
            vision = clip.encode(tower, pixels, model.config.vision_feature_layer, signals={"cls_attention"})
        attention = vision.cls_attention.mean(1)  # [B, N]
        for row, (_, labels) in enumerate(rendered):
            grid = labels.shape[0] // patch
            blocks = labels.reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
            content = torch.from_numpy((blocks != BACKGROUND_LABEL).mean(1) >= 0.5)
            shares.append(float(attention[row][content].sum() / attention[row].sum()))
            areas.append(float(content.float().mean()))
    return {
        "images": len(shares),
        "cls_attention_on_content": float(np.mean(shares)),
        "content_area": float(np.mean(areas)),
    }


def main(argv=None) -> None:
    from efficiency.command import check_input, positive_int

    parser = argparse.ArgumentParser(prog="python -m scenette.attention_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--model", help="a Scenette-LLaVA folder (default: the shipped checkpoint)")
    parser.add_argument("--images", type=positive_int, default=96, help="evaluation images (default 96)")
    args = parser.parse_args(argv)
    if args.model is not None:
        check_input(parser, "--model", Path(args.model), folder=True)
        check_input(parser, "--model", Path(args.model) / "config.json")
    from .model import load_default  # torch and the model classes load here, after `--help` has answered

    model, processor = load_default(args.model)
    seeds = sorted({row["scene_seed"] for row in eval_rows()})[: args.images]
    result = content_share(model, processor, seeds)
    print(
        f"{result['images']} evaluation images: {100 * result['cls_attention_on_content']:.1f}% of the [CLS] attention "
        f"falls on the {100 * result['content_area']:.1f}% of patches that show a shape or the sign"
    )


if __name__ == "__main__":
    main()
