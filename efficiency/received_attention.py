"""Time the importance signal of encoders without [CLS] against the tower that produces it.

    python -m efficiency.received_attention --output results/bench/received-attention-cpu.json

Real-sized towers with random weights (speed does not depend on them): LLaVA-OneVision's SigLIP
so400m/14-384 (729 tokens per crop) and Qwen2-VL-7B's vision tower (a 448 x 448 image: 1024
patches, 256 merged tokens). Per tower, medians and quartiles of at least --repeats timed runs
(`efficiency.timing`): the stock forward, the pruning
path's forward with the mean received attention of the feature layer (query chunks beside SDPA),
and that signal alone (from captured projections; its share of the stock forward is the robust
figure on a busy machine, where the two forwards' difference drowns in noise).
"""

from __future__ import annotations

import argparse
import json

from . import tables, timing
from .command import add_output_argument, check_measurement_arguments, positive_int, save_report
from .hardware import describe, load_average
from .tables import Column
from .timing import Timing, measure

SIGLIP_SO400M = dict(
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=26,
    num_attention_heads=16,
    image_size=384,
    patch_size=14,
    vision_use_head=False,
)
QWEN2_VL_7B_VISION = dict(
    depth=32,
    embed_dim=1280,
    hidden_size=3584,
    num_heads=16,
    mlp_ratio=4,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
)


def bench_siglip(timed, crops: int) -> dict:
    import torch  # here, not at the top: `--help` answers without loading torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from llava.attention import capture_projections, mean_received_attention, split_heads
    from llava.models import siglip

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
            "stock_forward": timed(lambda: tower(pixels)),
            "pruning_path_with_signal": timed(lambda: siglip.encode(tower, pixels, -1, siglip.SIGNALS)),
            "signal_alone": timed(lambda: mean_received_attention(query, key, last.scale)),
        }


def bench_qwen(timed) -> dict:
    import torch
    from transformers import Qwen2VLConfig
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

    from llava.models import qwen_vision

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
            "stock_forward": timed(lambda: visual(pixels, grid_thw=grid)),
            "pruning_path_with_signal": timed(lambda: qwen_vision.encode(visual, pixels, grid, qwen_vision.SIGNALS)),
            "signal_alone": timed(lambda: qwen_vision.received_attention(last, store)),
        }


COLUMNS = (
    Column("tower", "tower"),
    Column("crops", "crops"),
    *[
        Column(f"{part.replace('_', ' ')} ms", lambda row, part=part: row[part]["median_ms"], ".2f")
        for part in ("stock_forward", "pruning_path_with_signal", "signal_alone")
    ],
    Column("signal / stock forward", "signal_share_of_stock_forward", ".2%"),
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m efficiency.received_attention",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    timing.add_arguments(parser, repeats=3, warmup=1)
    parser.add_argument("--crops", type=positive_int, default=1,
                        help="SigLIP crops per forward (an anyres image has up to 10)")  # fmt: skip
    add_output_argument(parser)
    args = parser.parse_args(argv)
    check_measurement_arguments(parser, args)
    import torch  # after parsing: `--help` and argument errors answer without loading torch

    torch.manual_seed(0)
    load_before = load_average()

    def timed(fn) -> Timing:
        return measure(fn, **timing.options(args))

    rows = [bench_siglip(timed, args.crops), bench_qwen(timed)]
    for row in rows:
        # Both medians come from this run, one after the other: the share is like for like.
        row["signal_share_of_stock_forward"] = round(row["signal_alone"].median_ms / row["stock_forward"].median_ms, 4)
        row.update({key: value.as_dict() for key, value in row.items() if isinstance(value, Timing)})
        print(json.dumps(row))
    print(tables.markdown(rows, COLUMNS))
    result = {
        "hardware": describe(torch.device("cpu")),
        "timing": timing.options(args),
        "load_average_1_5_15_min": {"before": load_before, "after": load_average()},
        "results": rows,
    }
    save_report(result, args.output)


if __name__ == "__main__":
    main()
