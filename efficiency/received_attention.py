"""Time the importance signal of encoders without [CLS] against the tower that produces it.

    python -m efficiency.received_attention --output results/bench/received-attention-cpu.json

Each family's tower at its real width, heads and token count (random weights: speed does not depend on
them), one image (or `--crops` SigLIP crops) per forward, fp32. A whole 896-px Gemma 3 tower takes
minutes per forward on a CPU, so each tower is built with its feature layer only: per tower, medians
and quartiles of at least --repeats timed runs (`efficiency.timing`) of that one block's stock forward
and of the signal alone (the mean attention each token receives, from the block's captured
projections, in query chunks beside SDPA), both from this run, one after the other. The tower's
forward is taken as `depth` such blocks (every block of these towers has the same shape; patch
embedding and the merger are left out, so the share is an upper bound), and the signal's share of it
is the figure to read.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from . import tables, timing
from .command import add_output_argument, check_measurement_arguments, positive_int, save_report
from .hardware import describe, load_average
from .tables import Column
from .timing import Timing, measure

SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_attention_heads=16, patch_size=14)
# name -> (label, SigLIP config at real shape, depth to the feature layer)
SIGLIP_TOWERS = {
    "onevision": ("SigLIP so400m/14-384 (LLaVA-OneVision-7B), 729 tokens", {**SIGLIP_SO400M, "image_size": 384}, 26),
    "gemma3": ("SigLIP so400m/14-896 (Gemma 3 4B/12B/27B), 4096 tokens", {**SIGLIP_SO400M, "image_size": 896}, 27),
    "smolvlm": ("SigLIP so400m/14-384 (SmolVLM-Instruct), 729 tokens", {**SIGLIP_SO400M, "image_size": 384}, 27),
    "smolvlm-256m": (
        "SigLIP base/16-512 (SmolVLM-256M/500M), 1024 tokens",
        dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, patch_size=16, image_size=512),
        12,
    ),
}  # fmt: skip
QWEN_VISION = dict(
    embed_dim=1280, num_heads=16, mlp_ratio=4, patch_size=14, spatial_merge_size=2, temporal_patch_size=2
)
QWEN_TOWERS = {
    "qwen2-vl": ("Qwen2-VL-7B vision, 448 x 448: 1024 patches -> 256 merged", "2", 32),
    "qwen2.5-vl": ("Qwen2.5-VL-7B vision (last block full attention), 448 x 448: 1024 patches -> 256 merged", "2.5", 32),
    "qwen3-vl": ("Qwen3-VL-8B vision (patch 16), 448 x 448: 784 patches -> 196 merged", "3", 27),
}  # fmt: skip
TOWERS = (*SIGLIP_TOWERS, *QWEN_TOWERS)


def bench_tower(name: str, timed: Callable, crops: int) -> dict:
    """One row: `name`'s feature block and its signal, timed."""
    if name in SIGLIP_TOWERS:
        label, config, depth = SIGLIP_TOWERS[name]
        block, signal, tokens = _siglip(config, crops)
    else:
        label, version, depth = QWEN_TOWERS[name]
        block, signal, tokens = _qwen(version)
        crops = 1
    block_time, signal_time = timed(block), timed(signal)
    return {
        "tower": name,
        "description": label,
        "crops": crops,
        "tokens": tokens,
        "depth": depth,
        "feature_block": block_time.as_dict(),
        "signal_alone": signal_time.as_dict(),
        "signal_share_of_tower": round(signal_time.median_ms / (depth * block_time.median_ms), 4),
    }


def _siglip(config: dict, crops: int):
    import torch  # here, not at the top: `--help` answers without loading torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from llava.attention import capture_projections, mean_received_attention, split_heads

    tower = SiglipVisionModel._from_config(SiglipVisionConfig(**config, num_hidden_layers=1)).eval()
    layer = tower.encoder.layers[0]
    with torch.inference_mode():
        hidden = tower.embeddings(torch.randn(crops, 3, config["image_size"], config["image_size"]))
        with capture_projections(layer.self_attn, slice(None)) as projected:
            layer(hidden, None)
    heads = layer.self_attn.num_heads
    query, key = split_heads(projected["query"], heads), split_heads(projected["key"], heads)

    def block():
        with torch.inference_mode():
            return layer(hidden, None)

    def signal():
        with torch.inference_mode():
            return mean_received_attention(query, key, layer.self_attn.scale)

    return block, signal, hidden.shape[1]


def _qwen(version: str):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

    from llava.models import qwen_vision

    if version == "2":
        config = Qwen2VLConfig(vision_config={**QWEN_VISION, "depth": 1, "hidden_size": 3584}).vision_config
        visual = Qwen2VisionTransformerPretrainedModel._from_config(config).eval()
    elif (
        version == "2.5"
    ):  # Qwen2.5-VL-7B: 3420 SwiGLU width, windows of 112 px; block 31 (the feature block) is full attention
        vision = {**QWEN_VISION, "depth": 1, "hidden_size": 1280, "out_hidden_size": 3584, "intermediate_size": 3420}
        config = Qwen2_5_VLConfig(
            vision_config={**vision, "fullatt_block_indexes": [0], "window_size": 112}
        ).vision_config
        visual = Qwen2_5_VisionTransformerPretrainedModel._from_config(config).eval()
    elif version == "3":  # the transformers defaults are Qwen3-VL-8B's tower; deepstack layers are not timed
        config = Qwen3VLConfig(vision_config={"depth": 1, "deepstack_visual_indexes": []}).vision_config
        visual = Qwen3VLVisionModel._from_config(config).eval()
    patch = config.patch_size
    side = 448 // patch
    grid = torch.tensor([[1, side, side]])  # a 448 x 448 image
    pixels = torch.randn(side * side, 3 * 2 * patch * patch)
    last = visual.blocks[-1].attn
    store: dict = {}
    arguments: dict = {}

    def keep(_module, args, kwargs):
        store.update(kwargs)
        arguments.update(args=args, kwargs=kwargs)

    with torch.inference_mode():
        handles = [
            last.register_forward_pre_hook(keep, with_kwargs=True),
            last.qkv.register_forward_hook(lambda _m, _i, out: store.__setitem__("qkv", out)),
            visual.blocks[-1].register_forward_pre_hook(
                lambda _m, args, kwargs: arguments.update(block=(args, kwargs)), with_kwargs=True
            ),
        ]
        visual(pixels, grid_thw=grid)
        for handle in handles:
            handle.remove()
    block_args, block_kwargs = arguments["block"]

    def block():
        with torch.inference_mode():
            return visual.blocks[-1](*block_args, **block_kwargs)

    def signal():
        with torch.inference_mode():
            return qwen_vision.received_attention(last, store)

    return block, signal, pixels.shape[0]


COLUMNS = (
    Column("tower", "description"),
    Column("tokens", "tokens"),
    Column("depth", "depth"),
    Column("feature block ms", lambda row: row["feature_block"]["median_ms"], ".2f"),
    Column("signal ms", lambda row: row["signal_alone"]["median_ms"], ".2f"),
    Column("signal / tower", "signal_share_of_tower", ".2%"),
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
    parser.add_argument("--towers", nargs="+", choices=TOWERS, default=list(TOWERS), help="towers to time")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    check_measurement_arguments(parser, args)
    import torch  # after parsing: `--help` and argument errors answer without loading torch

    torch.manual_seed(0)
    load_before = load_average()

    def timed(fn) -> Timing:
        return measure(fn, **timing.options(args))

    rows = []
    for name in args.towers:
        rows.append(bench_tower(name, timed, args.crops))
        print(json.dumps(rows[-1]), flush=True)
    print(tables.markdown(rows, COLUMNS))
    result = {
        "hardware": describe(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "timing": timing.options(args),
        "load_average_1_5_15_min": {"before": load_before, "after": load_average()},
        "results": rows,
    }
    save_report(result, args.output)


if __name__ == "__main__":
    main()
