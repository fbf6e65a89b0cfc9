"""Time every baseline where it does its work, at LLaVA-1.5 shapes with random weights.

    python -m efficiency.baselines --output results/bench/baselines-cpu.json
    python -m efficiency.baselines --device cuda --dtype float16

Two tables, medians over --repeats runs at batch 1:
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
import os
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

import llava
from efficiency.hardware import describe
from efficiency.selection import SHAPES, timer
from llava.models.decoder import IMAGE_INDEX_KWARG
from llava.pruning.sparsevlm import SCHEDULES

VISION_METHODS = ["vispruner", "fastervlm", "random", "pool", "divprune", "visionzip", "prumerge_plus", "tome"]
LANGUAGE_METHODS = {
    "fastv": {"layer": 2},
    "pdrop": {"layers": (2, 4, 6), "ratio": 0.5},
    "sparsevlm": {"layers": (1, 3, 5)},
}
TEXT_TOKENS = 64


def build(device, dtype) -> LlavaForConditionalGeneration:
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**SHAPES["clip-l-336"]),
        text_config=LlamaConfig(vocab_size=320, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                                num_attention_heads=16, max_position_embeddings=4096),
        projector_hidden_act="gelu", image_token_id=5, vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    return LlavaForConditionalGeneration._from_config(config, dtype=dtype).to(device).eval()


def run(args: argparse.Namespace) -> dict:
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    load_before = os.getloadavg()  # a shared machine's load makes CPU timings noisy; it is recorded
    model = build(device, dtype)
    measure = timer(device, args.repeats, args.warmup)
    pixels = torch.randn(1, 3, 336, 336, device=device, dtype=dtype)
    encoding = {"unpruned (576)": None}
    language = {"unpruned (576)": None}
    with torch.inference_mode():
        encoding["unpruned (576)"] = measure(lambda: model.model.get_image_features(pixels))
        for method in VISION_METHODS:
            for tokens in args.tokens:
                llava.apply_pruning(model, method=method, visual_token_num=tokens)
                encoding[f"{method} T={tokens}"] = measure(lambda: model.model.get_image_features(pixels))
                llava.remove_pruning(model)
                print(json.dumps({"encoding": method, "T": tokens}))
        lm = model.model.language_model
        length = 576 + TEXT_TOKENS
        embeds = torch.randn(1, length, 1024, device=device, dtype=dtype)
        image = torch.full((1, length), -1, device=device)
        image[:, 16:592] = 0  # system prompt, 576 image tokens, then the question
        language["unpruned (576)"] = measure(lambda: lm(inputs_embeds=embeds, use_cache=True))
        for method, options in LANGUAGE_METHODS.items():
            for tokens in args.tokens:
                if method == "sparsevlm" and tokens not in SCHEDULES:
                    continue
                llava.apply_pruning(model, method=method, visual_token_num=tokens, **options)
                language[f"{method} T={tokens}"] = measure(
                    lambda: lm(inputs_embeds=embeds, use_cache=True, **{IMAGE_INDEX_KWARG: image})
                )
                llava.remove_pruning(model)
                print(json.dumps({"prefill": method, "T": tokens}))
    return {
        "benchmark": "baselines: image encoding and language-model prefill, batch 1",
        "dtype": args.dtype,
        "hardware": describe(device),
        "repeats": args.repeats,
        "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "image_encoding_ms": encoding,
        "language_model_prefill_ms": language,
    }


def markdown(report: dict) -> str:
    lines = ["| where | method | median ms |", "|---|---|---|"]
    for key, where in (("image_encoding_ms", "image encoding"), ("language_model_prefill_ms", "LM prefill (8 layers)")):
        lines += [f"| {where} | {name} | {ms:.1f} |" for name, ms in report[key].items()]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--tokens", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, help="write the report as JSON here (refuses to overwrite)")
    args = parser.parse_args(argv)
    if args.output and args.output.exists():
        parser.error(f"--output: {args.output} exists; choose another path")
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run(args)
    print(markdown(report))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
