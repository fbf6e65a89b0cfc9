"""Latency, memory and throughput of pruned LLaVA prefill and decoding, with random weights of a real shape.

    python -m efficiency.latency --shape cpu-small --output results/efficiency/cpu-small.json
    python -m efficiency.latency --shape llava-1.5-7b --device cuda --output results/efficiency/llava-1.5-7b-h100.json
    python -m efficiency.latency --smoke --output /tmp/smoke.json          # seconds, tiny model
    python -m efficiency.latency --report results/efficiency/cpu-small.json   # re-render table and plot

For each method (none, the oracle, vispruner, fastv, visionzip, random) and budget T (visual tokens
per image, or per crop for LLaVA-NeXT) it measures, on one prompt of the POPE shape (image + about
64 text tokens):
* time to first token: one forward with the KV cache and the last position's logits (vision tower,
  scoring, selection, projector, prefill, LM head, argmax), and of its parts: the image features
  (`get_image_features`) and, for methods that prune before the language model, scoring (the tower
  with the method's signals minus the tower without) and selection (`reduce`/`select` alone);
* decode ms/token: (generate 1 + D tokens - generate 1 token) / D, greedy, length forced;
* end to end: `generate` of a POPE-style answer (--answer-tokens, "Yes" + end of sequence);
* KV cache bytes held after the prefill (read off the cache) and, on a GPU, peak allocated memory
  during the end-to-end run;
* batched prefill throughput (prompts/s at each --batch, without cache, last-position logits).
The oracle is the model fed the very tokens VisPruner keeps for the same images (recorded before the
case is timed) with no selection cost: the tower runs to the feature layer as in every pruned path,
without the [CLS] row, and the recorded indices go on. `first_tokens` (not run by default) is the
cruder floor: the first T patch tokens, chosen without computation. The targets compare VisPruner's
time to first token with the oracle's and say "met" only when the whole quartile spread is within
the target ("within noise" when it straddles it).
Timing (`efficiency.timing`): torch.utils.benchmark's Timer, which synchronises the GPU before reading
the clock; --warmup untimed calls, then at least --repeats timed runs and --min-run-time seconds;
medians and quartiles. Weights do not change speed; they are random (N(0, 0.02)), built on the device.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from . import report, timing
from .command import AUTO_DEVICE, DEVICE_HELP, add_precision_arguments, model_precision, resolve_device
from .hardware import describe, load_average
from .shapes import POPE_PROMPT, SHAPES, PromptLayout, Shape, shape
from .timing import measure, use_device

METHODS = ("none", "oracle", "vispruner", "fastv", "visionzip", "random")
SMOKE_DEFAULTS = dict(tokens=[16, 8], batch=[1, 2], repeats=1, warmup=0, decode_tokens=2, min_run_time=0.0)
RUN_DEFAULTS = dict(tokens=[128, 64, 32], batch=[1, 8, 32], repeats=20, warmup=3, decode_tokens=16)


def cases(preset: Shape, methods, budgets) -> list[tuple[str, int]]:
    full = preset.patches_per_image
    planned = [("none", full)] if "none" in methods else []
    return planned + [(m, t) for m in methods if m != "none" for t in budgets if t < full]


def run(args) -> dict:
    import torch  # here, not at the top: `--help` answers without loading torch
    from tqdm import tqdm

    from .cases import measure_case
    from .shapes import build_model

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = shape(args.shape)
    attention = args.attn
    saved = json.loads(args.output.read_text()) if args.resume and args.output.exists() else None
    settings = {
        "shape": preset.name,
        "description": preset.description,
        "images_per_prompt": preset.images,
        "patches_per_image": preset.patches_per_image,
        "dtype": args.dtype,
        "attn_implementation": attention,
        "prompt": {"before": args.prompt.before, "after": args.prompt.after},
        "answer_tokens": args.answer_tokens,
        "decode_tokens": args.decode_tokens,
        "batch": args.batch,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "min_run_time_s": args.min_run_time,
    }
    if saved is not None and saved["settings"] != settings:
        raise SystemExit(f"--resume: {args.output} was measured with other settings: {saved['settings']}")
    hardware = describe(device)
    if saved is not None and any(saved["hardware"][k] != hardware[k] for k in ("device", "cpu", "cpu_threads")):
        raise SystemExit(f"--resume: {args.output} was measured on other hardware: {saved['hardware']}")
    result = saved or {
        "benchmark": "llava efficiency: time to first token, decode, end to end, memory, batched prefill",
        "settings": settings,
        "config": preset.config.to_dict(),
        "hardware": hardware,
        "load_average_1_5_15_min": {"before": load_average()},
        "cases": [],
    }
    done = {(c["method"], c["tokens_per_image"]) for c in result["cases"]}
    todo = [c for c in cases(preset, args.methods, args.tokens) if c not in done]
    model = build_model(preset.config, device, dtype, attention)
    use_device(device)

    def timed(fn) -> dict:
        return measure(fn, **timing.options(args)).as_dict()

    with tqdm(todo, desc=f"{preset.name} on {device.type}", unit="case") as progress:
        for method, tokens in progress:
            step = partial(_show_step, progress, f"{method} T={tokens}")
            case = measure_case(model, preset, method, tokens, args, device, dtype, timed, step)
            result["cases"].append({**case, "load_average_after": load_average()})
            result["load_average_1_5_15_min"]["after"] = load_average()
            _write(args.output, result)
    result["targets"] = report.targets(result)
    _write(args.output, result)
    return result


def _show_step(progress, case: str, step: str) -> None:
    progress.set_postfix_str(f"{case}: {step}")


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    temporary.replace(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="cpu-small", choices=SHAPES)
    parser.add_argument("--device", default=AUTO_DEVICE, help=DEVICE_HELP)
    add_precision_arguments(parser)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument(
        "--tokens", type=int, nargs="+", default=RUN_DEFAULTS["tokens"], help="visual tokens per image (crop)"
    )
    parser.add_argument(
        "--batch", type=int, nargs="+", default=RUN_DEFAULTS["batch"], help="batch sizes for prefill throughput"
    )
    timing.add_arguments(parser, repeats=RUN_DEFAULTS["repeats"], warmup=RUN_DEFAULTS["warmup"])
    parser.add_argument(
        "--decode-tokens", type=int, default=RUN_DEFAULTS["decode_tokens"], help="decoded tokens for ms/token"
    )
    parser.add_argument(
        "--answer-tokens", type=int, default=2, help="tokens of a POPE answer ('Yes' + end of sequence)"
    )
    parser.add_argument("--text-before", type=int, default=POPE_PROMPT.before)
    parser.add_argument("--text-after", type=int, default=POPE_PROMPT.after)
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own choice); recorded")
    smoke = " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in SMOKE_DEFAULTS.items()
    )
    parser.add_argument("--smoke", action="store_true", help=f"the tiny shape, in seconds; defaults {smoke}")
    parser.add_argument("--output", type=Path, help="JSON results (with .md and .png beside it); refuses to overwrite")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted --output with the same settings")
    parser.add_argument("--report", type=Path, metavar="JSON", help="only render the table and plot of a results file")
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.smoke:  # parse again with the smoke run's defaults: options given on the command line still win
        parser.set_defaults(**SMOKE_DEFAULTS, shape="tiny")
        args = parser.parse_args(argv)
    if args.report:
        if not args.report.exists():
            parser.error(f"--report: {args.report} does not exist")
        try:
            result = json.loads(args.report.read_text())
        except json.JSONDecodeError as error:
            parser.error(f"--report: {args.report} is not a results file (JSON): {error}")
        report.render(result, args.report)
        return
    if args.output is None:
        parser.error("--output is required (where the JSON results go)")
    if args.output.exists() and not args.resume:
        parser.error(f"--output: {args.output} exists; choose another path or pass --resume")
    timing.check_arguments(parser, args)
    for name in ("decode_tokens", "answer_tokens", "tokens", "batch", "threads"):
        values = getattr(args, name)
        if values is not None and any(v < 1 for v in (values if isinstance(values, list) else [values])):
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {values}")
    import torch  # after parsing: `--help` and argument errors answer without loading torch

    from llava.pruning import list_methods

    args.device = resolve_device(args.device)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA device")
    args.dtype, args.attn = model_precision(args)
    allowed = ["none", "oracle", "first_tokens", *list_methods()]
    unknown = sorted(set(args.methods) - set(allowed))
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    args.prompt = PromptLayout(args.text_before, args.text_after)
    result = run(args)
    print(report.markdown(result))
    report.render(result, args.output)


if __name__ == "__main__":
    main()
