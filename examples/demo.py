"""Prune one image with VisPruner and save a picture of the kept patches.

    python examples/demo.py                       # the shipped Scenette-LLaVA, a Scenette evaluation question
    python examples/demo.py --image photo.jpg --model llava-hf/llava-1.5-7b-hf --question "What is shown?" --tokens 64

The picture is drawn from the pruning trace of the one `generate` call that produced the printed
answer (`apply_pruning(..., trace=True)`): the outlined patches are the tokens the language model
received, important ones (by [CLS] attention) in orange, diverse ones in blue.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

# torch, transformers, the models and the pictures are imported once the arguments are parsed, so
# that `--help` and argument errors answer at once.

DEMO_QUESTION = ("reading", 3)  # (type, index) of the Scenette evaluation row the demo asks by default


def demo_row() -> dict:
    """The fixed Scenette evaluation row the demo shows: small shapes, a small sign, a reading question."""
    import scenette

    qtype, index = DEMO_QUESTION
    return scenette.eval_rows(qtype)[index]


def load(model_path: str | None):
    import llava
    import scenette

    if model_path is None:
        return scenette.load_default(), f"Scenette-LLaVA, the shipped checkpoint ({scenette.CHECKPOINT})"
    return llava.load_pretrained_model(model_path), model_path  # transformers-format or original LLaVA


def run(args: argparse.Namespace) -> Path:
    import torch
    from PIL import Image

    import llava
    import scenette
    from llava.visualize import draw_kept_patches, pixels_to_image, side_by_side

    (model, processor), description = load(args.model)
    row = None if args.image else demo_row()
    image = Image.open(args.image).convert("RGB") if args.image else scenette.doc_image(row)
    question = args.question or (row["prompt"] if row else "What is shown in the image?")
    inputs = processor(text=scenette.conversation(question), images=image, return_tensors="pt")

    llava.apply_pruning(model, method="vispruner", visual_token_num=args.tokens, important_ratio=args.ratio, trace=True)
    try:
        start = time.perf_counter()
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
        seconds = time.perf_counter() - start
        (call,) = model.pruning_trace  # the generate call above: its prefill pruned the image once
    finally:
        llava.remove_pruning(model)
    answer = processor.batch_decode(output[:, inputs.input_ids.shape[1] :], skip_special_tokens=True)[0].strip()

    shown = call.matching(source="image", item=0)[0]  # the image (for anyres models: its base crop)
    if shown.important is None:  # the budget covered the whole image: nothing was selected
        important, diverse = [], shown.kept.tolist()
    else:
        important, diverse = shown.important.tolist(), shown.diverse.tolist()
    kept = len(shown.kept)
    print(f"model: {description}")
    print(f"kept {kept}/{shown.num_tokens} visual tokens ({len(important)} important + {len(diverse)} diverse)")
    print(f"question: {question!r}")
    print(
        f"answer ({seconds:.2f} s): {answer!r}"
        + (f" (reference: {row['answer']!r})" if row and not args.question else "")
    )

    pixels = inputs.pixel_values[0]
    pixels = pixels[0] if pixels.dim() == 4 else pixels  # anyres: the base crop comes first
    mean, std = processor.image_processor.image_mean, processor.image_processor.image_std
    seen = pixels_to_image(pixels, mean, std)
    picture = side_by_side(
        [
            ("input (as the model sees it)", seen),
            (f"VisPruner: {kept}/{shown.num_tokens} kept", draw_kept_patches(seen, shown.grid, important, diverse)),
        ],
        footer="orange: important ([CLS] attention)   blue: diverse (similarity)",
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.output)
    print(f"picture: {args.output}")
    return args.output


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", help="a LLaVA checkpoint (local folder or hub id); default: the shipped Scenette-LLaVA"
    )
    parser.add_argument("--image", type=Path, help="an image file; default: a Scenette evaluation image")
    parser.add_argument("--question", help="default: that image's Scenette question (or 'What is shown in the image?')")
    parser.add_argument("--tokens", type=int, default=64, help="visual tokens to keep (default 64)")
    parser.add_argument("--ratio", type=float, default=0.5, help="share of important tokens, in [0, 1] (default 0.5)")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--output", type=Path, default=Path("outputs/demo_vispruner.png"))
    args = parser.parse_args(argv)
    if args.image is not None and not args.image.is_file():
        parser.error(f"--image: no such file: {args.image}")
    from llava.pruning import create_pruner  # after --help: it imports torch

    try:
        create_pruner("vispruner", args.tokens, important_ratio=args.ratio)
    except ValueError as error:
        parser.error(f"--tokens/--ratio: {error}")
    return args


def main(argv=None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
