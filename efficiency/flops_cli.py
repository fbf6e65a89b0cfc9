"""The command line of `python -m efficiency.flops`: the paper's table, or the exact accounting of a
LLaVA shape (`--shape`), a real-shaped config of another family (`--model`) or any config.json (`--config`)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from . import paper
from .command import atomic_write_json, check_input, check_output, non_negative_int, positive_int
from .flops import exact_table, markdown
from .flops_presets import PRESETS
from .shapes import POPE_PROMPT, SHAPES, PromptLayout, shape

FAMILY_NAMES = (
    "LLaVA, LLaVA-NeXT, LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL, Gemma 3, SmolVLM / Idefics3"
)


def main(argv=None, description: str | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m efficiency.flops", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("paper", help="the paper's efficiency table beside the reconstructed accounting")
    exact = commands.add_parser("exact", help="exact FLOPs of this package's prefill for a shape, model or config")
    source = exact.add_mutually_exclusive_group()
    source.add_argument("--shape", default="llava-1.5-7b", choices=SHAPES, help="a LLaVA shape")
    source.add_argument("--model", choices=PRESETS, help="a real-shaped config of another family (flops_presets.py)")
    source.add_argument("--config", type=Path, help=f"a model config.json of a supported family ({FAMILY_NAMES})")
    exact.add_argument("--images", type=positive_int, help="images per prompt; default: the shape's (LLaVA: crops)")
    exact.add_argument("--image-size", type=positive_int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                       help="one image's size in pixels (anyres families: as given; Qwen, SmolVLM: after the "
                            "processor's resize); default: the model's")  # fmt: skip
    exact.add_argument("--tiles", type=positive_int, help="InternVL: tiles per image (default: the model's, or 1)")
    exact.add_argument("--layout", choices=("native", "paper"), help="LLaVA-NeXT's layout (default: native)")
    exact.add_argument("--methods", nargs="+", default=["none", "vispruner", "fastv", "visionzip", "random"])
    exact.add_argument("--tokens", type=positive_int, nargs="+", default=[128, 64, 32],
                       help="visual tokens per image (per crop or tile where a family prunes those on their own)")  # fmt: skip
    exact.add_argument("--text-before", type=non_negative_int, default=POPE_PROMPT.before)
    exact.add_argument("--text-after", type=non_negative_int, default=POPE_PROMPT.after)
    exact.add_argument("--json", type=Path, help="also write the rows as JSON here (refuses to overwrite)")
    args = parser.parse_args(argv)
    if args.command == "paper":
        print(paper.markdown())
        return
    check_output(parser, "--json", args.json)
    geometry = {}
    if args.config:
        check_input(parser, "--config", args.config)
        config, images, source = _config(parser, args.config), args.images or 1, str(args.config)
    elif args.model:
        preset = PRESETS[args.model]
        config, images, source, geometry = preset.config, args.images or 1, args.model, dict(preset.geometry)
    else:
        preset = shape(args.shape)
        config, images, source = preset.config, args.images or preset.images, args.shape
    given = {"image_size": args.image_size and tuple(args.image_size), "tiles": args.tiles, "layout": args.layout}
    geometry.update({name: value for name, value in given.items() if value is not None})
    prompt = PromptLayout(args.text_before, args.text_after)
    try:
        rows = exact_table(config, args.methods, args.tokens, images=images, prompt=prompt, geometry=geometry)
    except ValueError as error:  # an unknown method, a budget a method cannot take, an unsupported config
        parser.error(str(error))
    print(markdown(rows))
    if args.json:
        report = {"model": source, "config": config.to_dict(), "images": images, "geometry": geometry,
                  "prompt": asdict(prompt), "rows": rows}  # fmt: skip
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")


def _config(parser: argparse.ArgumentParser, path: Path):
    """A supported family's config from a config.json: parser.error otherwise."""
    from transformers import AutoConfig

    from .flops_families import FAMILIES

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as error:
        parser.error(f"--config {path}: not a model config.json ({error})")
    missing = [name for name in ("vision_config", "text_config") if not hasattr(config, name)]
    if missing or type(config).__name__ not in FAMILIES:
        lacks = f"has no {' or '.join(missing)}" if missing else "is not a supported family's"
        parser.error(f"--config {path}: a {type(config).__name__} {lacks}; allowed: a config of {FAMILY_NAMES}")
    return config
