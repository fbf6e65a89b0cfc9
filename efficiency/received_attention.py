"""Time the importance signal of encoders without [CLS] against the tower that produces it.

    python -m efficiency.received_attention --output results/bench/received-attention-cpu.json

Real-sized towers with random weights (speed does not depend on them): LLaVA-OneVision's SigLIP
so400m/14-384 (729 tokens per crop) and Qwen2-VL-7B's vision tower (a 448 x 448 image: 1024
patches, 256 merged tokens). Per tower, medians over --repeats runs: the stock forward, the pruning
path's forward with the mean received attention of the feature layer (query chunks beside SDPA),
and that signal alone (from captured projections; its share of the stock forward is the robust
figure on a busy machine, where the two forwards' difference drowns in noise).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import Qwen2VLConfig, SiglipVisionConfig, SiglipVisionModel
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

from llava.attention import capture_projections, mean_received_attention, split_heads
from efficiency.hardware import describe
from efficiency.selection import timer
from llava.models import qwen_vision, siglip

SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
                     image_size=384, patch_size=14, vision_use_head=False)
QWEN2_VL_7B_VISION = dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, mlp_ratio=4, patch_size=14,
                          spatial_merge_size=2, temporal_patch_size=2)


def bench_siglip(measure, crops: int) -> dict:
    tower = SiglipVisionModel._from_config(SiglipVisionConfig(**SIGLIP_SO400M)).eval()
    pixels = torch.randn(crops, 3, 384, 384)
    last = tower.encoder.layers[-1].self_attn
    with torch.inference_mode():
        with capture_projections(last, slice(None)) as projected:
            tower(pixels)
        query, key = split_heads(projected["query"], last.num_heads), split_heads(projected["key"], last.num_heads)
        return {
            "tower": "siglip-so400m-384 (LLaVA-OneVision), 729 tokens per crop",
            "crops": crops,
            "stock_forward_ms": measure(lambda: tower(pixels)),
            "pruning_path_with_signal_ms": measure(lambda: siglip.encode(tower, pixels, -1, with_attention=True)),
            "signal_alone_ms": measure(lambda: mean_received_attention(query, key, last.scale)),
        }


def bench_qwen(measure) -> dict:
    config = Qwen2VLConfig(vision_config=QWEN2_VL_7B_VISION).vision_config
    visual = Qwen2VisionTransformerPretrainedModel._from_config(config).eval()
    grid = torch.tensor([[1, 32, 32]])  # a 448 x 448 image
    pixels = torch.randn(1024, 3 * 2 * 14 * 14)
    last = visual.blocks[-1].attn
    store: dict = {}
    with torch.inference_mode():
        handles = [
            last.register_forward_pre_hook(lambda _m, _a, kwargs: store.update(kwargs), with_kwargs=True),
            last.qkv.register_forward_hook(lambda _m, _i, out: store.__setitem__("qkv", out)),
        ]
        visual(pixels, grid_thw=grid)
        for handle in handles:
            handle.remove()
        return {
            "tower": "Qwen2-VL-7B vision, 448 x 448 image: 1024 patches, 256 merged tokens",
            "crops": 1,
            "stock_forward_ms": measure(lambda: visual(pixels, grid_thw=grid)),
            "pruning_path_with_signal_ms": measure(lambda: qwen_vision.encode(visual, pixels, grid, with_attention=True)),
            "signal_alone_ms": measure(lambda: qwen_vision.received_attention(last, store)),
        }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--crops", type=int, default=1, help="SigLIP crops per forward (an anyres image has up to 10)")
    parser.add_argument("--output", type=Path, help="write the results here as JSON (refuses to overwrite)")
    args = parser.parse_args(argv)
    if args.output is not None and args.output.exists():
        parser.error(f"{args.output} exists; choose another --output or delete it")
    torch.manual_seed(0)
    measure = timer(torch.device("cpu"), args.repeats, args.warmup)
    rows = [bench_siglip(measure, args.crops), bench_qwen(measure)]
    for row in rows:
        row["signal_share_of_stock_forward"] = round(row["signal_alone_ms"] / row["stock_forward_ms"], 4)
        print(json.dumps(row))
    result = {"hardware": describe(torch.device("cpu")), "repeats": args.repeats, "results": rows}
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
