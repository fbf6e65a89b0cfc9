"""How far half precision moves VisPruner's kept set, measured on Scenette images.

    python -m efficiency.half_precision --threads 1 --output results/efficiency/half-precision-scenette.json

The shipped Scenette-LLaVA tower runs in float16 on `--images` rendered Scenette scenes; VisPruner then
keeps T tokens per image three ways: the default (similarities in float16, as the published code
computes them), `float32_similarity=True`, and the default rounds with the opposite tie rule (exactly
equal best matches ranked later position first instead of earlier first). The published code sorts
with an unstable argsort, so where two best matches are exactly equal its order is whatever the sort
kernel gives: the opposite rule bounds how much that can move the kept set. Reported per T: the mean
and smallest overlap (tokens in common, of T) with the default, and how many matching rounds held an
exact tie among their even tokens' best matches.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from .command import add_device_arguments, add_output_argument, measure_and_report
from .hardware import describe

ROUND_SIZE = 8


def reversed_ties_select(features, cls_attention, visual_token_num: int, important_ratio: float):
    """The default selection with exact ties in a round's best matches ranked later position first;
    also the number of rounds whose best matches held an exact tie. One image ([1, N, C])."""
    import torch
    import torch.nn.functional as F

    from llava.pruning.vispruner import attention_order, split_budget

    num_important, num_diverse = split_budget(visual_token_num, important_ratio)
    order = attention_order(cls_attention)[0]
    pool = order[num_important:]
    unit = F.normalize(features[0], dim=-1)[pool]
    similarity = unit @ unit.T
    position, remaining, tied_rounds = torch.arange(pool.numel()), pool.numel(), 0
    while (drop := min(ROUND_SIZE, remaining - num_diverse)) > 0:
        even, odd = position[0::2], position[1::2]
        drop = min(drop, even.numel())
        best = similarity[even][:, odd].amax(dim=1)
        tied_rounds += int(best.unique().numel() < best.numel())
        flipped = torch.argsort(best.flip(0), descending=True, stable=True)  # stable on the reversed list
        by_redundancy = even.numel() - 1 - flipped
        position = torch.cat([even[by_redundancy[drop:]], odd])
        remaining -= drop
    kept = torch.cat([order[:num_important], pool[position]])
    return kept.sort().values[None], tied_rounds


def run(args: argparse.Namespace) -> dict:
    import torch

    import llava
    from llava.models import clip
    from llava.pruning.vispruner import select
    from scenette.scene import render, sample_scene
    from scenette.vision_training import to_pixels

    model, _ = llava.load_pretrained_model(str(args.checkpoint), dtype=torch.float16, device_map="cpu")
    tower, layer = model.model.vision_tower, model.config.vision_feature_layer
    rows = []
    for tokens in args.tokens:
        default_vs = {"float32_similarity": [], "reversed_ties": []}
        tied, rounds_total = 0, 0
        for seed in range(args.images):
            pixels = to_pixels([render(sample_scene(seed))[0]]).to(torch.float16)
            with torch.inference_mode():
                vision = clip.encode(tower, pixels, layer, {"cls_attention"})
            features, attention = vision.features, vision.cls_attention
            default = set(select(features, attention, tokens, args.ratio)[0].tolist())
            widened = set(select(features, attention, tokens, args.ratio, float32_similarity=True)[0].tolist())
            flipped, tied_rounds = reversed_ties_select(features, attention, tokens, args.ratio)
            default_vs["float32_similarity"].append(len(default & widened))
            default_vs["reversed_ties"].append(len(default & set(flipped[0].tolist())))
            tied += tied_rounds
            rounds_total += max(0, -(-(features.shape[1] - tokens) // ROUND_SIZE))
        rows.append({
            "tokens": tokens,
            **{f"overlap_{name}": {"mean": statistics.mean(v), "min": min(v)} for name, v in default_vs.items()},
            "rounds_with_a_tie": tied,
            "rounds_about": rounds_total,
        })  # fmt: skip
        print(rows[-1], flush=True)
    return {
        "benchmark": "vispruner kept sets in float16 on Scenette images (overlap with the default, of T)",
        "checkpoint": str(args.checkpoint),
        "images": args.images,
        "important_ratio": args.ratio,
        "hardware": describe(torch.device("cpu")),
        "results": rows,
    }


def markdown(report: dict) -> str:
    lines = ["| T | float32 similarity: mean (min) overlap | opposite tie rule: mean (min) | rounds with a tie |",
             "|---|---|---|---|"]  # fmt: skip
    for row in report["results"]:
        widened, flipped = row["overlap_float32_similarity"], row["overlap_reversed_ties"]
        lines.append(
            f"| {row['tokens']} | {widened['mean']:.1f} ({widened['min']}) | {flipped['mean']:.1f} ({flipped['min']}) "
            f"| {row['rounds_with_a_tie']} of ~{row['rounds_about']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arguments(parser)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/scenette-llava"))
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--tokens", type=int, nargs="+", default=[64, 128, 32])
    parser.add_argument("--ratio", type=float, default=0.5)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if not (args.checkpoint / "config.json").is_file():
        parser.error(f"--checkpoint: {args.checkpoint} holds no config.json")
    if args.images < 1:
        parser.error(f"--images must be >= 1, got {args.images}")
    args.device = "cpu"
    args.warmup, args.repeats, args.min_run_time = 0, 1, 0.0  # nothing is timed
    measure_and_report(parser, args, run, markdown)


if __name__ == "__main__":
    main()
