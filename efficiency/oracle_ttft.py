"""VisPruner's time to first token against the same-token oracle, timed side by side.

    python -m efficiency.oracle_ttft --shape cpu-small --threads 1
    python -m efficiency.oracle_ttft --checkpoint checkpoints/scenette-llava --threads 1
    python -m efficiency.oracle_ttft --shape llava-1.5-7b --device cuda --batch 1 8   # fp16 on a GPU

The oracle feeds the language model the very tokens VisPruner keeps for the same image (recorded
first), with no [CLS] row and no selection: the difference is what scoring and selection cost end
to end. With `--compile` (the default) VisPruner(compile=True) runs too: on the CPU its rounds run in
the fused C++ loop (built once, before any timing), on CUDA they are traced on the first call and
recorded as one CUDA graph on the second (`--warmup 2`, the default, covers that). Each setting makes
one untimed call first (its seconds are recorded as `first_call_s`). All are then timed in
alternating blocks (`--rounds` blocks of each, `efficiency.timing` inside a block), so a slow spell
of a shared machine hits all; the report gives the medians over all runs, the excess (VisPruner /
oracle - 1) of each round's adjacent pair of blocks, its median and quartiles over the rounds, and a
verdict that says "met" only when the upper quartile is within the target. Prompts of the POPE shape (image + ~64 text
tokens), random pixels; `--batch 1` times the time to first token, a larger batch the batched
prefill (one forward with the cache, last position's logits). A `--shape` builds random weights
(float16 on a GPU, float32 on a CPU unless `--dtype` says otherwise), a `--checkpoint` loads real ones.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from . import timing
from .command import (
    add_device_arguments,
    add_output_argument,
    add_precision_arguments,
    measure_and_report,
    model_precision,
)
from .hardware import describe, machine_name
from .shapes import POPE_PROMPT, SHAPES

TARGETS = {"cpu-small": 0.05, "scenette-llava": 0.15}  # issue 19: at most +5 % / +15 % at T = 64
DEFAULT_TARGET = 0.05


def run(args: argparse.Namespace) -> dict:
    import torch

    from llava.models import remove_pruning
    from llava.pruning import create_pruner

    from .cases import SameTokens, first_token, prompt_batch, vispruner_kept
    from .shapes import Shape, build_model, shape

    device = torch.device(args.device)
    timing.use_device(device)
    dtype_name, attention = model_precision(args)
    dtype = getattr(torch, dtype_name)
    if args.checkpoint is not None:
        import llava

        model, _ = llava.load_pretrained_model(str(args.checkpoint), dtype=dtype, device_map=str(device))
        preset = Shape(args.checkpoint.name, model.config, 1, f"checkpoint {args.checkpoint}")
    else:
        preset = shape(args.shape)
        model = build_model(preset.config, device, dtype, attention)
    model.eval()
    target = TARGETS.get(preset.name, DEFAULT_TARGET)
    rows = []
    for batch in args.batch:
        inputs = prompt_batch(preset, batch, device, dtype, POPE_PROMPT)
        for tokens in args.tokens:
            with torch.inference_mode():
                kept = vispruner_kept(model, tokens, inputs["pixel_values"])
            pruners = {name: create_pruner("vispruner", tokens, important_ratio=args.ratio, **options)
                       for name, options in arms(args).items()}  # fmt: skip
            pruners["oracle"] = SameTokens(tokens, kept)
            call = partial(first_token, model, inputs)
            first = partial(timing.first_call, call, device)  # untimed: compilation and graph capture
            first_call_s = {name: _attached(model, pruner, first)[1] for name, pruner in pruners.items()}
            timed = partial(timing.measure, call, **timing.options(args))
            runs: dict[str, list] = {name: [] for name in pruners}
            for _ in range(args.rounds):
                for name, pruner in pruners.items():
                    runs[name].append(_attached(model, pruner, timed))
            remove_pruning(model)
            row = {"tokens": tokens, "batch": batch, "target": target, "first_call_s": first_call_s,
                   "ttft": {name: timing.pooled(measured) for name, measured in runs.items()}}  # fmt: skip
            row.update({name: paired_excess(runs[name], runs["oracle"], target) for name in arms(args)})
            rows.append(row)
            print(summary(row), flush=True)
    return {
        "benchmark": "vispruner time to first token vs the same-token oracle (POPE prompt)",
        "model": preset.name,
        "description": preset.description,
        "dtype": dtype_name,
        "attn_implementation": attention,
        "important_ratio": args.ratio,
        "rounds": args.rounds,
        "hardware": describe(device),
        "timing": timing.options(args),
        "results": rows,
    }


def _attached(model, pruner, measure):
    """`measure()` with `pruner` (alone) attached to `model`, in inference mode."""
    import torch

    from llava.models import attach_pruner, remove_pruning

    remove_pruning(model)
    attach_pruner(model, pruner)
    with torch.inference_mode():
        return measure()


def arms(args: argparse.Namespace) -> dict[str, dict]:
    """The VisPruner settings timed against the oracle: name -> options."""
    return {"vispruner": {}, **({"vispruner_compile": {"compile": True}} if args.compile else {})}


def paired_excess(pruned: list, oracle: list, target: float) -> dict:
    """VisPruner / oracle - 1 from each round's pair of adjacent blocks: the median over rounds, the
    quartiles as the spread, and the verdict against `target` (`efficiency.timing.verdict`)."""
    ratio = timing.paired_ratio(pruned, oracle)
    best, worst = ratio["best"] - 1, ratio["worst"] - 1
    verdict = timing.verdict(best, worst, target)
    return {"excess": ratio["median"] - 1, "best": best, "worst": worst, "verdict": verdict,
            "met": verdict == "met", "per_round": [r - 1 for r in ratio["per_round"]]}  # fmt: skip


LABELS = {"vispruner": "VisPruner", "vispruner_compile": "VisPruner(compile=True)"}


def summary(row: dict) -> str:
    ttft = row["ttft"]
    what = "TTFT" if row.get("batch", 1) == 1 else f"prefill of {row['batch']} prompts"
    lines = []
    for name, label in LABELS.items():
        if name in row:
            arm = row[name]
            lines.append(
                f"T={row['tokens']}, {what}: {label} {ttft[name]['median_ms']:.2f} ms, oracle "
                f"{ttft['oracle']['median_ms']:.2f} ms: {arm['excess']:+.1%} (quartiles over rounds "
                f"{arm['best']:+.1%} .. {arm['worst']:+.1%}); target <= +{row['target']:.0%}: {arm['verdict']}"
            )
    return "\n".join(lines)


def markdown(report: dict) -> str:
    hardware = report["hardware"]
    machine = machine_name(hardware)
    precision = f"{report.get('dtype', 'float32')}, {report.get('attn_implementation', 'sdpa')}"
    head = f"{report['model']} ({report['description']}); {precision}; {machine}, {hardware['date']}"
    lines = [line for row in report["results"] for line in summary(row).splitlines()]
    return "\n".join([head, "", *(f"* {line}" for line in lines)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arguments(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--shape", default="cpu-small", choices=SHAPES, help="random weights of this shape")
    source.add_argument("--checkpoint", type=Path, help="a LLaVA-1.5-style checkpoint folder")
    add_precision_arguments(parser)
    parser.add_argument("--tokens", type=int, nargs="+", default=[64])
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[1],
        help="prompts per forward: 1 times the time to first token, more a batched prefill (default 1)",
    )  # fmt: skip
    parser.add_argument("--ratio", type=float, default=0.5, help="important_ratio")
    parser.add_argument("--rounds", type=int, default=7, help="alternating blocks of each (default %(default)s)")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=True,
        help="also time VisPruner(compile=True) (on the CPU: the fused C++ rounds, built once)",
    )  # fmt: skip
    timing.add_arguments(parser, repeats=5, warmup=2)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if args.checkpoint is not None and not (args.checkpoint / "config.json").is_file():
        parser.error(f"--checkpoint: {args.checkpoint} holds no config.json")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    measure_and_report(parser, args, run, markdown)


if __name__ == "__main__":
    main()
