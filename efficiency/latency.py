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
The oracle is the model fed T visual tokens with no selection cost: the tower runs to the feature
layer as in every pruned path, and the first T patch tokens go on, chosen without any computation.
Timing: CUDA events on a GPU, wall clock on a CPU; --warmup runs, then the median of --repeats.
Weights do not change speed; they are random (N(0, 0.02)), built on the device directly.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from tqdm import tqdm

from .hardware import describe
from llava.models import attach_pruner, clip, remove_pruning
from llava.pruning import create_pruner, list_methods
from llava.pruning.base import VisionFeatures, VisionTokenPruner
from . import report
from .flops import prefill_flops
from .shapes import POPE_PROMPT, SHAPES, PromptLayout, Shape, build_model, shape

METHODS = ("none", "oracle", "vispruner", "fastv", "visionzip", "random")
FASTV_LAYER_FRACTION = 2 / 32  # FastV's published K = 2 of LLaVA-1.5's 32 decoder layers


class Oracle(VisionTokenPruner):
    """The first T patch tokens, chosen without computation: the floor for any before-LLM pruner."""

    name = "oracle"

    def select(self, vision: VisionFeatures) -> torch.Tensor:
        batch, num_tokens, _ = vision.features.shape
        kept = min(self.visual_token_num, num_tokens)
        return torch.arange(kept, device=vision.features.device).expand(batch, kept)


def make_pruner(method: str, tokens: int, config):
    if method == "none":
        return None
    if method == "oracle":
        return Oracle(tokens)
    if method == "fastv":
        layers = config.text_config.num_hidden_layers
        return create_pruner(method, tokens, layer=max(1, round(FASTV_LAYER_FRACTION * layers)))
    return create_pruner(method, tokens)


def prompt_batch(preset: Shape, batch: int, device, dtype, prompt: PromptLayout, seed: int = 0) -> dict:
    """`batch` prompts of random text ids around `preset.images` runs of image placeholders."""
    config = preset.config
    generator = torch.Generator().manual_seed(seed)
    run = preset.images * preset.patches_per_image
    ids = torch.randint(3, config.text_config.vocab_size, (batch, prompt.text_tokens + run), generator=generator)
    ids[ids == config.image_token_id] = 3
    ids[:, prompt.before : prompt.before + run] = config.image_token_id
    size = config.vision_config.image_size
    pixels = torch.randn(batch * preset.images, 3, size, size, generator=generator)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids, device=device),
        "pixel_values": pixels.to(device=device, dtype=dtype),
    }


class Timer:
    """Median milliseconds of a callable after warm-up: CUDA events on a GPU, wall clock on a CPU."""

    def __init__(self, device: torch.device, repeats: int, warmup: int):
        self.device, self.repeats, self.warmup = device, repeats, warmup

    def __call__(self, fn) -> dict:
        cuda = self.device.type == "cuda"
        for _ in range(self.warmup):
            fn()
        if cuda:
            torch.cuda.synchronize(self.device)
        samples = []
        for _ in range(self.repeats):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end))
            else:
                begin = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - begin) * 1e3)
        quartiles = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
        return {"median_ms": statistics.median(samples), "q1_ms": quartiles[0], "q3_ms": quartiles[2], "runs": len(samples)}


def first_token(model, inputs: dict) -> torch.Tensor:
    return model(**inputs, use_cache=True, logits_to_keep=1).logits[:, -1].argmax(dim=-1)


def generate(model, inputs: dict, new_tokens: int) -> torch.Tensor:
    return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)


def cache_bytes(model, inputs: dict, prompt: PromptLayout) -> dict:
    """Bytes the KV cache holds after the prefill, all tokens and the visual ones (all minus the text)."""
    cache = model(**inputs, use_cache=True, logits_to_keep=1).past_key_values
    total = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    per_token = sum((layer.keys.nbytes + layer.values.nbytes) // layer.keys.shape[-2] for layer in cache.layers)
    return {"kv_cache_bytes": total, "kv_visual_bytes": total - per_token * prompt.text_tokens}  # per_token spans the batch


def selection_times(model, pruner, pixel_values: torch.Tensor, timer: Timer) -> tuple[dict | None, dict | None]:
    """(scoring, selection) timings of a before-LLM pruner; None where they cannot be separated."""
    if not isinstance(pruner, VisionTokenPruner) or "token_merging" in pruner.requires:
        return None, None  # in-LLM methods select inside the layer loop; ToMe merges inside the tower
    inner = model.model
    tower, layer = inner.vision_tower, inner.config.vision_feature_layer
    if pruner.requires - {"projected"}:
        plain = timer(lambda: clip.encode(tower, pixel_values, layer))
        signalled = timer(lambda: clip.encode(tower, pixel_values, layer, signals=pruner.requires))
        scoring = {"median_ms": max(0.0, signalled["median_ms"] - plain["median_ms"]), "tower_ms": plain["median_ms"],
                   "tower_with_signals_ms": signalled["median_ms"]}
    else:
        scoring = {"median_ms": 0.0}
    vision = clip.encode(tower, pixel_values, layer, signals=pruner.requires)
    if "projected" in pruner.requires:
        vision.projected = inner.multi_modal_projector(vision.features)
        selection = lambda: pruner.select(vision)  # noqa: E731
    else:
        selection = lambda: pruner.reduce(vision)  # noqa: E731
    with OperatorCount() as count:
        selection()
    return scoring, {**timer(selection), "operators": count.total, "non_view_operators": count.computing}


class OperatorCount(TorchDispatchMode):
    """Counts the aten operators dispatched while active. On a GPU every non-view operator launches at
    least one kernel, at a few microseconds of host time each: in a loop of many small steps that,
    not arithmetic, sets the time."""

    def __init__(self):
        super().__init__()
        self.total = self.computing = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.total += 1
        self.computing += not func.is_view
        return func(*args, **(kwargs or {}))


def measure_case(model, preset: Shape, method: str, tokens: int, args, device, dtype, timer: Timer, progress) -> dict:
    config = preset.config
    pruner = make_pruner(method, tokens, config)
    remove_pruning(model)
    if pruner is not None:
        attach_pruner(model, pruner)
    inputs = prompt_batch(preset, 1, device, dtype, args.prompt)
    case = {"method": method, "tokens_per_image": tokens, "visual_tokens": tokens * preset.images,
            "options": pruner.options if pruner is not None else {}}
    cuda = device.type == "cuda"

    def step(name):
        progress.set_postfix_str(f"{method} T={tokens}: {name}")

    with torch.inference_mode():
        step("time to first token")
        case["ttft"] = timer(lambda: first_token(model, inputs))
        step("image features")
        case["image_features"] = timer(lambda: model.model.get_image_features(pixel_values=inputs["pixel_values"]))
        step("scoring and selection")
        case["scoring"], case["selection"] = selection_times(model, pruner, inputs["pixel_values"], timer)
        case.update(cache_bytes(model, inputs, args.prompt))
        step("generate")
        case["generate_1"] = timer(lambda: generate(model, inputs, 1))
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        case["end_to_end"] = timer(lambda: generate(model, inputs, args.answer_tokens))
        case["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
        case["generate_decode"] = timer(lambda: generate(model, inputs, 1 + args.decode_tokens))
        case["decode_ms_per_token"] = (
            case["generate_decode"]["median_ms"] - case["generate_1"]["median_ms"]
        ) / args.decode_tokens
        case["throughput"] = {}
        for batch in args.batch:
            step(f"prefill throughput, batch {batch}")
            batched = prompt_batch(preset, batch, device, dtype, args.prompt)
            timing = timer(lambda: model(**batched, use_cache=False, logits_to_keep=1))
            case["throughput"][str(batch)] = {**timing, "prompts_per_s": batch * 1e3 / timing["median_ms"]}
    remove_pruning(model)
    cost = prefill_flops(config, pruner, images=preset.images, prompt=args.prompt)
    case["flops"] = {"prefill": cost.total, "parts": {k: v for k, v in cost.as_dict().items() if isinstance(v, int)}}
    case["expected_kv_cache_bytes"] = cost.kv_cache_bytes(torch.finfo(dtype).bits // 8)
    return case


def cases(preset: Shape, methods, budgets) -> list[tuple[str, int]]:
    full = preset.patches_per_image
    planned = [("none", full)] if "none" in methods else []
    return planned + [(m, t) for m in methods if m != "none" for t in budgets if t < full]


def run(args) -> dict:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = shape(args.shape)
    attention = args.attn
    if attention == "auto":
        attention = "flash_attention_2" if device.type == "cuda" and _has_flash_attention() else "sdpa"
    saved = json.loads(args.output.read_text()) if args.resume and args.output.exists() else None
    settings = {
        "shape": preset.name, "description": preset.description, "images_per_prompt": preset.images,
        "patches_per_image": preset.patches_per_image, "dtype": args.dtype, "attn_implementation": attention,
        "prompt": {"before": args.prompt.before, "after": args.prompt.after}, "answer_tokens": args.answer_tokens,
        "decode_tokens": args.decode_tokens, "batch": args.batch, "repeats": args.repeats, "warmup": args.warmup,
    }
    if saved is not None and saved["settings"] != settings:
        raise SystemExit(f"--resume: {args.output} was measured with other settings: {saved['settings']}")
    hardware = describe(device)
    if saved is not None and [saved["hardware"][k] for k in ("device", "cpu", "cpu_threads")] != [hardware[k] for k in ("device", "cpu", "cpu_threads")]:
        raise SystemExit(f"--resume: {args.output} was measured on other hardware: {saved['hardware']}")
    result = saved or {
        "benchmark": "llava efficiency: time to first token, decode, end to end, memory, batched prefill",
        "settings": settings,
        "config": preset.config.to_dict(),
        "hardware": hardware,
        "load_average_1_5_15_min": {"before": os.getloadavg()},
        "cases": [],
    }
    done = {(c["method"], c["tokens_per_image"]) for c in result["cases"]}
    todo = [c for c in cases(preset, args.methods, args.tokens) if c not in done]
    model = build_model(preset.config, device, dtype, attention)
    timer = Timer(device, args.repeats, args.warmup)
    with tqdm(todo, desc=f"{preset.name} on {device.type}", unit="case") as progress:
        for method, tokens in progress:
            case = measure_case(model, preset, method, tokens, args, device, dtype, timer, progress)
            result["cases"].append({**case, "load_average_after": os.getloadavg()})
            result["load_average_1_5_15_min"]["after"] = os.getloadavg()
            _write(args.output, result)
    result["targets"] = report.targets(result)
    _write(args.output, result)
    return result


def _has_flash_attention() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    temporary.replace(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="cpu-small", choices=SHAPES)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="default: float16 on a GPU, float32 on a CPU (bf16 is slow on CPUs without AMX)")
    parser.add_argument("--attn", default="auto", choices=["auto", "sdpa", "flash_attention_2"],
                        help="attention kernels; auto = FlashAttention 2 on a GPU when flash-attn is installed, else SDPA")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--tokens", type=int, nargs="+", help="visual tokens per image (crop); default 128 64 32")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes for prefill throughput; default 1 8 32")
    parser.add_argument("--repeats", type=int, help="timed runs per measurement (median); default 20")
    parser.add_argument("--warmup", type=int, help="untimed runs first; default 3")
    parser.add_argument("--decode-tokens", type=int, help="decoded tokens for ms/token; default 16")
    parser.add_argument("--answer-tokens", type=int, default=2, help="tokens of a POPE answer ('Yes' + end of sequence)")
    parser.add_argument("--text-before", type=int, default=POPE_PROMPT.before)
    parser.add_argument("--text-after", type=int, default=POPE_PROMPT.after)
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own choice); recorded")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shape; defaults --tokens 16 8 --batch 1 2 --repeats 1 --warmup 0 --decode-tokens 2")
    parser.add_argument("--output", type=Path, help="JSON results (with .md and .png beside it); refuses to overwrite")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted --output with the same settings")
    parser.add_argument("--report", type=Path, metavar="JSON", help="only render the table and plot of a results file")
    args = parser.parse_args(argv)
    if args.report:
        if not args.report.exists():
            parser.error(f"--report: {args.report} does not exist")
        report.render(json.loads(args.report.read_text()), args.report)
        return
    if args.output is None:
        parser.error("--output is required (where the JSON results go)")
    if args.output.exists() and not args.resume:
        parser.error(f"--output: {args.output} exists; choose another path or pass --resume")
    defaults = dict(tokens=[16, 8], batch=[1, 2], repeats=1, warmup=0, decode_tokens=2) if args.smoke else dict(
        tokens=[128, 64, 32], batch=[1, 8, 32], repeats=20, warmup=3, decode_tokens=16
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.smoke:
        args.shape = "tiny"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA device")
    if args.dtype is None:
        args.dtype = "float16" if args.device.startswith("cuda") else "float32"
    for name in ("repeats", "decode_tokens", "answer_tokens", "warmup", "tokens", "batch", "threads"):
        values = getattr(args, name)
        minimum = 0 if name == "warmup" else 1
        if values is not None and any(v < minimum for v in (values if isinstance(values, list) else [values])):
            parser.error(f"--{name.replace('_', '-')} must be >= {minimum}, got {values}")
    allowed = ["none", "oracle", *list_methods()]
    unknown = sorted(set(args.methods) - set(allowed))
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    args.prompt = PromptLayout(args.text_before, args.text_after)
    result = run(args)
    print(report.markdown(result))
    report.render(result, args.output)


if __name__ == "__main__":
    main()
