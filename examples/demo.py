"""Prune one image with VisPruner and save a picture of the kept patches.

    python -m llava.demo                       # the shipped Scenette-LLaVA, a Scenette evaluation question
    python -m llava.demo --image photo.jpg --model llava-hf/llava-1.5-7b-hf --question "What is shown?" --tokens 64
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image

import llava
import scenette
from llava.pruning import create_pruner
from llava.models import clip
from llava.pruning.vispruner import attention_order, select, split_budget
from llava.visualize import draw_kept_patches, pixels_to_image, side_by_side


DEMO_QUESTION = ("reading", 3)  # (type, index) of the Scenette evaluation row the demo asks by default


def demo_row() -> dict:
    """The fixed Scenette evaluation row the demo shows: small shapes, a small sign, a reading question."""
    qtype, index = DEMO_QUESTION
    return scenette.eval_rows(qtype)[index]


def load(model_path: str | None):
    if model_path is None:
        return scenette.load_default(), f"Scenette-LLaVA, the shipped checkpoint ({scenette.CHECKPOINT})"
    return llava.load_pretrained_model(model_path), model_path  # transformers-format or original LLaVA


def run(args: argparse.Namespace) -> Path:
    (model, processor), description = load(args.model)
    row = None if args.image else demo_row()
    image = Image.open(args.image).convert("RGB") if args.image else scenette.doc_image(row)
    question = args.question or (row["prompt"] if row else "What is shown in the image?")
    prompt = scenette.conversation(question)
    inputs = processor(text=prompt, images=image, return_tensors="pt")

    tower = model.model.vision_tower
    with torch.no_grad():
        vision = clip.encode(tower, inputs.pixel_values, model.config.vision_feature_layer, with_cls_attention=True)
        kept = select(vision.features, vision.cls_attention, args.tokens, args.ratio)[0]
        num_important, _ = split_budget(kept.numel(), args.ratio)
        important = attention_order(vision.cls_attention)[0, :num_important]

        llava.apply_pruning(model, method="vispruner", visual_token_num=args.tokens, important_ratio=args.ratio)
        start = time.perf_counter()
        output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
        seconds = time.perf_counter() - start
    answer = processor.batch_decode(output[:, inputs.input_ids.shape[1] :], skip_special_tokens=True)[0].strip()

    total = vision.features.shape[1]
    important_set = set(important.tolist())
    diverse = [i for i in kept.tolist() if i not in important_set]
    print(f"model: {description}")
    print(f"kept {kept.numel()}/{total} visual tokens ({len(important_set)} important + {len(diverse)} diverse)")
    print(f"question: {question!r}")
    print(f"answer ({seconds:.2f} s): {answer!r}" + (f" (reference: {row['answer']!r})" if row and not args.question else ""))

    mean, std = processor.image_processor.image_mean, processor.image_processor.image_std
    seen = pixels_to_image(inputs.pixel_values[0], mean, std)
    picture = side_by_side(
        [
            ("input (as the model sees it)", seen),
            (f"VisPruner: {kept.numel()}/{total} kept", draw_kept_patches(seen, vision.grid, sorted(important_set), diverse)),
        ],
        footer="orange: important ([CLS] attention)   blue: diverse (similarity)",
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.output)
    print(f"picture: {args.output}")
    return args.output


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a LLaVA checkpoint (local folder or hub id); default: the shipped Scenette-LLaVA")
    parser.add_argument("--image", type=Path, help="an image file; default: a Scenette evaluation image")
    parser.add_argument("--question", help="default: that image's Scenette question (or 'What is shown in the image?')")
    parser.add_argument("--tokens", type=int, default=64, help="visual tokens to keep (default 64)")
    parser.add_argument("--ratio", type=float, default=0.5, help="share of important tokens, in [0, 1] (default 0.5)")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--output", type=Path, default=Path("outputs/demo_vispruner.png"))
    args = parser.parse_args(argv)
    if args.image is not None and not args.image.is_file():
        parser.error(f"--image: no such file: {args.image}")
    try:
        create_pruner("vispruner", args.tokens, important_ratio=args.ratio)
    except ValueError as error:
        parser.error(f"--tokens/--ratio: {error}")
    return args


def main(argv=None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
