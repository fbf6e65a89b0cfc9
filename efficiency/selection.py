"""Time VisPruner's scoring and selection against the vision tower that feeds it.

    python -m efficiency.selection                 # LLaVA-1.5 shapes: CLIP ViT-L/14-336, N=576, C=1024
    python -m efficiency.selection --device cuda --dtype float16 --batch 1 8
    python -m efficiency.selection --compile --threads 1   # also `compiled_select` (torch.compile)

Random weights (speed does not depend on them). Reported per batch, medians over --repeats runs:
the stock tower forward (all layers, SDPA), the pruning path's tower forward (up to the feature
layer, with the [CLS] row captured), the [CLS] row itself, and `select` for each budget.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from llava.attention import row_softmax
from efficiency.hardware import describe
from llava.models import clip
from llava.pruning.vispruner import compiled_select, select

SHAPES = {
    "clip-l-336": dict(  # LLaVA-1.5's tower: N = 576, C = 1024
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336, patch_size=14
    ),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, image_size=112, patch_size=14),
}


def timer(device: torch.device, repeats: int, warmup: int):
    def measure(fn) -> float:
        """Median milliseconds of `fn()`."""
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(repeats):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                samples.append(start.elapsed_time(end))
            else:
                begin = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - begin) * 1e3)
        return statistics.median(samples)

    return measure


def run(args: argparse.Namespace) -> dict:
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    shape = SHAPES[args.shape]
    tower = CLIPVisionModel._from_config(CLIPVisionConfig(**shape), dtype=dtype).to(device).eval()
    size, width = shape["image_size"], shape["hidden_size"]
    tokens = (size // shape["patch_size"]) ** 2
    attention = tower.encoder.layers[args.feature_layer].self_attn
    measure = timer(device, args.repeats, args.warmup)
    rows = []
    for batch in args.batch:
        pixels = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
        with torch.inference_mode():
            vision = clip.encode(tower, pixels, args.feature_layer, with_cls_attention=True)
            hidden = torch.randn(batch, tokens + 1, width, device=device, dtype=dtype)
            query, key = attention.q_proj(hidden[:, :1]), attention.k_proj(hidden)
            row = {
                "batch": batch,
                "tower_all_layers_ms": measure(lambda: tower(pixels)),
                "tower_to_feature_layer_with_cls_row_ms": measure(
                    lambda: clip.encode(tower, pixels, args.feature_layer, with_cls_attention=True)
                ),
                "cls_row_ms": measure(lambda: row_softmax(query, key, attention.num_heads, attention.scale)),
            }
            for t in args.tokens:
                row[f"select_T{t}_ms"] = measure(
                    lambda t=t: select(vision.features, vision.cls_attention, t, args.ratio)
                )
                if args.compile:  # the warm-up call compiles; only replays are timed
                    row[f"compiled_select_T{t}_ms"] = measure(
                        lambda t=t: compiled_select(vision.features, vision.cls_attention, t, args.ratio)
                    )
        rows.append(row)
        print(json.dumps(row))
    return {
        "benchmark": "vispruner selection vs vision tower",
        "shape": {"name": args.shape, "N": tokens, "C": width, **shape},
        "important_ratio": args.ratio,
        "dtype": args.dtype,
        "hardware": describe(device),
        "repeats": args.repeats,
        "results": rows,
    }


def markdown(report: dict) -> str:
    tokens = [k for k in report["results"][0] if "select_" in k]
    head = ["batch", "tower, all layers", "tower to feature layer + [CLS] row", "[CLS] row", *[k[:-3] for k in tokens]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["results"]:
        cells = [str(row["batch"])] + [f"{row[k]:.2f}" for k in list(row)[1:4] + tokens]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", default="clip-l-336", choices=sorted(SHAPES), help="vision tower shape")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 64, 32])
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--feature-layer", type=int, default=-2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time `compiled_select` (torch.compile)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, help="write the report as JSON here (refuses to overwrite)")
    args = parser.parse_args(argv)
    if args.compile and args.warmup < 1:
        parser.error("--compile needs --warmup >= 1 (the first call compiles)")
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run(args)
    print(markdown(report))
    if args.output:
        if args.output.exists():
            parser.error(f"--output: {args.output} exists; choose another path")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
