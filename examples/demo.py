"""Prune one image with VisPruner and save a picture of the kept patches.

    python examples/demo.py                       # the shipped Scenette-LLaVA, a Scenette evaluation question
    python examples/demo.py --image photo.jpg --model llava-hf/llava-1.5-7b-hf --question "What is shown?" --tokens 64

The picture is drawn from the pruning trace of the one `generate` call that produced the printed
answer (`apply_pruning(..., trace=True)`): the outlined patches are the tokens the language model
received, important ones (by [CLS] attention) in orange, diverse ones in blue.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

# torch, transformers, the models and the pictures are imported once the arguments are parsed, so
# that `--help` and argument errors answer at once.

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # owner/name, as the Hub spells model ids
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
    try:
        return llava.load_pretrained_model(model_path), model_path  # transformers-format or original LLaVA
    except (OSError, ValueError) as error:  # not found, offline, not a supported checkpoint
        raise SystemExit(f"demo: --model {model_path}: cannot load it: {error}") from None


def run(args: argparse.Namespace) -> Path:
    import torch
    from PIL import Image

    import llava
    import scenette
    from llava.visualize import draw_kept_patches, pixels_to_image, side_by_side

    (model, processor), description = load(args.model)
    model.to(args.device)
    row = None if args.image else demo_row()
    image = Image.open(args.image).convert("RGB") if args.image else scenette.doc_image(row)
    question = args.question or (row["prompt"] if row else "What is shown in the image?")
    inputs = processor(text=scenette.conversation(question), images=image, return_tensors="pt").to(args.device)

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
    """The arguments, each checked before any model loads: a bad one is a usage error naming it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", help="a LLaVA checkpoint (local folder or hub id); default: the shipped Scenette-LLaVA"
    )
    parser.add_argument("--image", type=Path, help="an image file; default: a Scenette evaluation image")
    parser.add_argument("--question", help="default: that image's Scenette question (or 'What is shown in the image?')")
    parser.add_argument("--tokens", type=int, default=64, help="visual tokens to keep (default 64)")
    parser.add_argument("--ratio", type=float, default=0.5, help="share of important tokens, in [0, 1] (default 0.5)")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda, cuda:N, mps")
    parser.add_argument("--output", type=Path, default=Path("outputs/demo_vispruner.png"))
    args = parser.parse_args(argv)
    if args.image is not None:
        problem = image_problem(args.image)
        if problem:
            parser.error(f"--image {args.image}: {problem}")
    if args.question is not None and not args.question.strip():
        parser.error("--question: empty; leave it out for the default question")
    if args.max_new_tokens < 1:
        parser.error(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    problem = output_problem(args.output)
    if problem:
        parser.error(f"--output {args.output}: {problem}")
    if args.model is not None:
        problem = model_problem(args.model)
        if problem:
            parser.error(f"--model {args.model}: {problem}")
    from llava.pruning import create_pruner  # after --help: it imports torch

    problem = device_problem(args.device)
    if problem:
        parser.error(f"--device {args.device}: {problem}")
    try:
        create_pruner("vispruner", args.tokens, important_ratio=args.ratio)
    except ValueError as error:
        parser.error(f"--tokens/--ratio: {error}")
    return args


def image_problem(path: Path) -> str | None:
    """Why `path` is not an image PIL can read in full (None: it is)."""
    from PIL import Image, ImageFile

    if path.is_dir():
        return "a folder, not an image file"
    if not path.is_file():
        return "no such file"
    # Some libraries (lmms-eval) let PIL accept truncated files process-wide; this check never does.
    lenient, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with Image.open(path) as image:
            image.load()  # decodes every byte: a truncated or corrupt file fails here, not after loading a model
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"not a readable image ({error})"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    return None


def output_problem(path: Path) -> str | None:
    """Why the picture cannot be saved at `path` (None: it can be, as far as can be told beforehand)."""
    from PIL import Image

    if path.is_dir():
        return "is a folder; give a file name such as outputs/demo.png"
    extensions = Image.registered_extensions()
    if path.suffix.lower() not in extensions:
        return f"unknown picture format {path.suffix or '(no suffix)'!r}; use e.g. .png or .jpg"
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        return f"{parent} is a file, not a folder"
    return None


def model_problem(model: str) -> str | None:
    """Why `--model` cannot be loaded, where that shows without loading it: an empty value, a local path
    that is missing or not a checkpoint folder, a config.json naming an unsupported class (None: a Hub id,
    or a folder whose config.json names a supported checkpoint)."""
    from llava.checkpoints import model_class_of, original

    if not model.strip():
        return "empty"
    path = Path(model).expanduser()
    if not path.exists():
        if HUB_ID.fullmatch(model):
            return None  # a Hub id: resolved (or refused, naming it) when loading
        return "no such folder (nor a Hub id of the form owner/name)"
    if not path.is_dir():
        return "not a folder (a checkpoint is a folder with config.json)"
    config_file = path / "config.json"
    if not config_file.is_file():
        return "no config.json in this folder: not a checkpoint"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"config.json is not valid JSON ({error})"
    if not isinstance(config, dict):
        return "config.json does not hold a JSON object"
    if not original.is_original_layout(config):
        try:
            model_class_of(config, str(path))
        except ValueError as error:
            return str(error)
    return None


def device_problem(device: str) -> str | None:
    """Why torch cannot run the demo on `device` here (None: it can)."""
    import torch

    allowed = "allowed: cpu, cuda, cuda:N, mps"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return f"not a device torch knows; {allowed}"
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            return f"this torch ({torch.__version__}) sees no CUDA device; use --device cpu"
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            return "MPS is not available here; use --device cpu"
    elif parsed.type != "cpu":
        return f"the demo does not run on {parsed.type}; {allowed}"
    return None


def main(argv=None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
