"""Time VisPruner's scoring and selection against the vision tower that feeds it.

    python -m efficiency.selection                 # LLaVA-1.5 shapes: CLIP ViT-L/14-336, N=576, C=1024
    python -m efficiency.selection --device cuda --dtype float16 --batch 1 8
    python -m efficiency.selection --compile --threads 1   # also `compiled_select` (compile=True)

Random weights (speed does not depend on them). Reported per batch, medians of at least --repeats
timed runs (`efficiency.timing`; quartiles in the JSON): the stock tower forward (all layers, SDPA),
the pruning path's tower forward (up to the feature layer, with the [CLS] row captured), the [CLS]
row itself, and `select` for each budget; beside them `select` as a share of the stock forward and,
with --compile, the speed-up of the compiled selection, both from timings of the same run.
"""

from __future__ import annotations

import argparse
import json

from . import tables, timing
from .command import add_device_arguments, add_output_argument, measure_and_report
from .hardware import describe
from .shapes import CLIP_L_336
from .tables import Column
from .timing import measure, use_device

SHAPES = {
    "clip-l-336": CLIP_L_336,  # LLaVA-1.5's tower: N = 576, C = 1024
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, image_size=112, patch_size=14
    ),
}
MS = "_ms"  # the suffix of a median in a result row


def run(args: argparse.Namespace) -> dict:
    import torch  # here, not at the top: `--help` answers without loading torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    use_device(device)
    torch.manual_seed(0)
    shape = SHAPES[args.shape]
    tower = CLIPVisionModel._from_config(CLIPVisionConfig(**shape), dtype=dtype).to(device).eval()
    size, width = shape["image_size"], shape["hidden_size"]
    tokens = (size // shape["patch_size"]) ** 2
    rows = []
    for batch in args.batch:
        pixels = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
        with torch.inference_mode():
            timings = {name: measure(fn, **timing.options(args)) for name, fn in calls(tower, pixels, args).items()}
        rows.append(result_row(batch, timings, args.tokens))
        print(json.dumps(rows[-1]))
    return {
        "benchmark": "vispruner selection vs vision tower",
        "shape": {"name": args.shape, "N": tokens, "C": width, **shape},
        "important_ratio": args.ratio,
        "dtype": args.dtype,
        "hardware": describe(device),
        "timing": timing.options(args),
        "results": rows,
    }


def calls(tower, pixels, args: argparse.Namespace) -> dict:
    """The calls to time on one batch of images, by name."""
    import torch

    from llava.attention import row_softmax
    from llava.models import clip
    from llava.pruning.vispruner import compiled_select, select

    attention = tower.encoder.layers[args.feature_layer].self_attn
    vision = clip.encode(tower, pixels, args.feature_layer, signals={"cls_attention"})
    hidden = torch.randn(
        pixels.shape[0],
        vision.features.shape[1] + 1,
        tower.config.hidden_size,
        device=pixels.device,
        dtype=pixels.dtype,
    )
    query, key = attention.q_proj(hidden[:, :1]), attention.k_proj(hidden)
    found = {
        "tower_all_layers": lambda: tower(pixels),
        "tower_to_feature_layer_with_cls_row": lambda: clip.encode(
            tower, pixels, args.feature_layer, signals={"cls_attention"}
        ),
        "cls_row": lambda: row_softmax(query, key, attention.num_heads, attention.scale),
    }
    for t in args.tokens:
        found[f"select_T{t}"] = lambda t=t: select(vision.features, vision.cls_attention, t, args.ratio)
        if args.compile:  # the warm-up calls compile; only replays are timed
            found[f"compiled_select_T{t}"] = lambda t=t: compiled_select(
                vision.features, vision.cls_attention, t, args.ratio
            )
    return found


def result_row(batch: int, timings: dict, budgets: list[int]) -> dict:
    """Medians as `<name>_ms`, every timing in full under "timings", and ratios of medians of this run."""
    row = {"batch": batch, **{name + MS: measured.median_ms for name, measured in timings.items()}}
    tower = timings["tower_all_layers"].median_ms
    row["select_share_of_tower"] = {t: timings[f"select_T{t}"].median_ms / tower for t in budgets}
    if f"compiled_select_T{budgets[0]}" in timings:
        row["compiled_speedup"] = {
            t: timings[f"select_T{t}"].median_ms / timings[f"compiled_select_T{t}"].median_ms for t in budgets
        }
    row["timings"] = {name: measured.as_dict() for name, measured in timings.items()}
    return row


def markdown(report: dict) -> str:
    """Medians in ms per batch, then the ratios."""
    first = report["results"][0]
    selections = [key for key in first if key.endswith(MS) and "select_" in key]
    columns = [
        Column("batch", "batch"),
        Column("tower, all layers", "tower_all_layers_ms", ".2f"),
        Column("tower to feature layer + [CLS] row", "tower_to_feature_layer_with_cls_row_ms", ".2f"),
        Column("[CLS] row", "cls_row_ms", ".2f"),
        *[Column(key.removesuffix(MS), key, ".2f") for key in selections],
    ]
    budgets = list(first["select_share_of_tower"])
    ratios = [Column("batch", "batch")]
    ratios += [Column(f"select T={t} / tower", lambda r, t=t: r["select_share_of_tower"][t], ".2%") for t in budgets]
    if "compiled_speedup" in first:
        ratios += [Column(f"compiled speed-up T={t}", lambda r, t=t: r["compiled_speedup"][t], ".2f") for t in budgets]
    return "\n\n".join([tables.markdown(report["results"], columns), tables.markdown(report["results"], ratios)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arguments(parser)
    parser.add_argument("--shape", default="clip-l-336", choices=sorted(SHAPES), help="vision tower shape")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 64, 32])
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--feature-layer", type=int, default=-2)
    timing.add_arguments(parser, repeats=5, warmup=1)
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time `compiled_select` (compile=True: on the CPU the fused C++ rounds, on CUDA one CUDA graph)",
    )
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if args.compile and args.warmup < 1:
        parser.error("--compile needs --warmup >= 1 (the first call compiles)")
    measure_and_report(parser, args, run, markdown)


if __name__ == "__main__":
    main()
