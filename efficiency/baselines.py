"""Time every baseline where it does its work, at LLaVA-1.5 shapes with random weights.

    python -m efficiency.baselines --output results/bench/baselines-cpu.json
    python -m efficiency.baselines --device cuda --dtype float16

Two tables at batch 1, medians and interquartile ranges of at least --repeats timed runs (`efficiency.timing`):
* image encoding (`get_image_features`: CLIP ViT-L/14-336 to the feature layer, the method's signals
  and reduction, the projector to 4096 channels) for each vision-side method at --tokens, and for
  the unpruned stock path;
* language-model prefill (a scaled-down LLaMA: hidden 1024, 8 layers, 16 heads; 576 visual + 64
  text tokens, `logits` not computed) for each in-LLM method at --tokens, and unpruned. The in-LLM
  methods' layer settings are scaled to 8 layers (FastV K = 2; PDrop layers 2, 4, 6; SparseVLM
  layers 1, 3, 5 with its published schedule for --tokens when there is one).
Speed does not depend on the weights; accuracy is not measured here.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from . import tables, timing
from .command import add_device_arguments, add_output_argument, measure_and_report, positive_int
from .hardware import describe, load_average
from .selection import SHAPES
from .tables import Column
from .timing import measure, use_device

if TYPE_CHECKING:  # torch, transformers and llava are imported where used: `--help` answers at once
    from transformers import LlavaForConditionalGeneration

VISION_METHODS = ["vispruner", "fastervlm", "random", "pool", "divprune", "visionzip", "prumerge_plus", "tome"]
LANGUAGE_METHODS = {
    "fastv": {"layer": 2},
    "pdrop": {"layers": (2, 4, 6), "ratio": 0.5},
    "sparsevlm": {"layers": (1, 3, 5)},
}
TEXT_TOKENS = 64
PATCHES = 576  # CLIP ViT-L/14 at 336 px
UNPRUNED = f"unpruned ({PATCHES})"


def build(device, dtype) -> LlavaForConditionalGeneration:
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**SHAPES["clip-l-336"]),
        text_config=LlamaConfig(
            vocab_size=320,
            hidden_size=1024,
            intermediate_size=2816,
            num_hidden_layers=8,
            num_attention_heads=16,
            max_position_embeddings=4096,
        ),
        projector_hidden_act="gelu",
        image_token_id=5,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    return LlavaForConditionalGeneration._from_config(config, dtype=dtype).to(device).eval()


def run(args: argparse.Namespace) -> dict:
    import torch

    import llava
    from llava.models.decoder import IMAGE_INDEX_KWARG
    from llava.pruning.sparsevlm import SCHEDULES

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    use_device(device)
    load_before = load_average()
    model = build(device, dtype)

    def timed(fn) -> dict:
        return measure(fn, **timing.options(args)).as_dict()

    pixels = torch.randn(1, 3, 336, 336, device=device, dtype=dtype)
    with torch.inference_mode():
        encoding = {UNPRUNED: timed(lambda: model.model.get_image_features(pixels))}
        for method in VISION_METHODS:
            for tokens in args.tokens:
                llava.apply_pruning(model, method=method, visual_token_num=tokens)
                encoding[f"{method} T={tokens}"] = timed(lambda: model.model.get_image_features(pixels))
                llava.remove_pruning(model)
                print(json.dumps({"encoding": method, "T": tokens}))
        lm = model.model.language_model
        length = 576 + TEXT_TOKENS
        embeds = torch.randn(1, length, 1024, device=device, dtype=dtype)
        image = torch.full((1, length), -1, device=device)
        image[:, 16:592] = 0  # system prompt, 576 image tokens, then the question
        language = {UNPRUNED: timed(lambda: lm(inputs_embeds=embeds, use_cache=True))}
        for method, options in LANGUAGE_METHODS.items():
            for tokens in args.tokens:
                if method == "sparsevlm" and tokens not in SCHEDULES:
                    continue
                llava.apply_pruning(model, method=method, visual_token_num=tokens, **options)
                language[f"{method} T={tokens}"] = timed(
                    lambda: lm(inputs_embeds=embeds, use_cache=True, **{IMAGE_INDEX_KWARG: image})
                )
                llava.remove_pruning(model)
                print(json.dumps({"prefill": method, "T": tokens}))
    return {
        "benchmark": "baselines: image encoding and language-model prefill, batch 1",
        "dtype": args.dtype,
        "hardware": describe(device),
        "timing": timing.options(args),
        "load_average_1_5_15_min": {"before": load_before, "after": load_average()},
        "image_encoding": encoding,
        "language_model_prefill": language,
    }


COLUMNS = (
    Column("where", "where"),
    Column("method", "method"),
    Column("median ms", "median_ms", ".1f"),
    Column("IQR ms", lambda row: row["q3_ms"] - row["q1_ms"], ".1f"),
    Column("share of unpruned", "share_of_unpruned", ".1%"),
)


def markdown(report: dict) -> str:
    """One row per (where, method); the share of the unpruned median comes from the same run."""
    rows = []
    for key, where in (("image_encoding", "image encoding"), ("language_model_prefill", "LM prefill (8 layers)")):
        unpruned = report[key][UNPRUNED]["median_ms"]
        rows += [
            {"where": where, "method": name, **t, "share_of_unpruned": t["median_ms"] / unpruned}
            for name, t in report[key].items()
        ]
    return tables.markdown(rows, COLUMNS)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m efficiency.baselines", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_device_arguments(parser)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--tokens", type=positive_int, nargs="+", default=[64],
                        help=f"visual tokens kept, below the {PATCHES} of the unpruned image (default 64)")  # fmt: skip
    timing.add_arguments(parser, repeats=3, warmup=1)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    too_many = [t for t in args.tokens if t >= PATCHES]
    if too_many:
        parser.error(f"--tokens {' '.join(map(str, too_many))}: allowed 1 to {PATCHES - 1} (the unpruned image has "
                     f"{PATCHES} tokens)")  # fmt: skip
    measure_and_report(parser, args, run, markdown)


if __name__ == "__main__":
    main()
