"""Load benchmark (a benchmark, not a test): pruned vs unpruned LLaVA-1.5 under vLLM, offline and served.

    .venv-vllm/bin/python -m vispruner_vllm.load_benchmark --output results/serving

For each budget (0 = the stock, unpruned vLLM architecture): vLLM's offline engine (`LLM.generate` on
all requests at once: requests/s) and an OpenAI-compatible server (`vllm serve`, on 127.0.0.1) under
N concurrent streaming clients (requests/s, time-to-first-token percentiles, peak KV-cache blocks in use
read from the server's /metrics). A random-weight LLaVA-1.5-shaped model is built locally (CLIP 336/14,
576 patches per image); every request carries one image and asks for a fixed number of new tokens
(end-of-sequence ignored), so all configurations do the same work but for the image tokens.
Writes results.json and results.md (with the hardware, the date and this command) to --output.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import load_server

MODULE = "vispruner_vllm.load_benchmark"
PRUNED = "VisPrunerLlavaForConditionalGeneration"
IMAGE_SIZE, PATCH = 336, 14  # LLaVA-1.5's CLIP-L/336: 24 x 24 = 576 patches per image
PROMPT = "USER: <image>\nWhat is shown in the image? ASSISTANT:"
# vLLM's runtime settings for a small shared CPU machine (see docs/serving.md).
RUNTIME = {"OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_CPU_KVCACHE_SPACE": "1"}
IN_PROCESS = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # the offline engine in its run's process: seconds to start


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="folder for results.json and results.md")
    parser.add_argument("--budgets", default="0,128,64,32", help="tokens kept per image; 0 = unpruned (stock vLLM)")
    parser.add_argument("--requests", type=positive, default=16, help="requests per run (bounded)")
    parser.add_argument("--concurrency", type=positive, default=4, help="concurrent clients of the server")
    parser.add_argument("--max-tokens", type=positive, default=16, help="new tokens per request")
    parser.add_argument("--timeout", type=positive, default=600, help="seconds a run may take before it is abandoned")
    parser.add_argument("--vision", default="128,4", help="vision tower hidden size,layers (random weights)")
    parser.add_argument("--text", default="256,4", help="language model hidden size,layers (random weights)")
    parser.add_argument("--offline-one", type=int, help=argparse.SUPPRESS)  # internal: one offline run
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.budgets = [non_negative(value) for value in args.budgets.split(",")]
    args.vision = [positive(value) for value in args.vision.split(",")]
    args.text = [positive(value) for value in args.text.split(",")]
    return args


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"budgets must be integers >= 0, got {text}")
    return value


def overrides(budget: int) -> dict:
    if budget == 0:
        return {}
    return {"architectures": [PRUNED], "vispruner": {"visual_token_num": budget, "important_ratio": 0.5}}


def image(seed: int):
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (240, 240, 240))
    draw = ImageDraw.Draw(picture)
    for shape in range(6):
        x, y = (seed * 37 + shape * 53) % 280, (seed * 61 + shape * 29) % 280
        draw.ellipse((x, y, x + 50, y + 50), fill=((seed * 40) % 256, (shape * 70) % 256, 128))
    return picture


def data_url(picture) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def build_model(folder: Path, vision: list[int], text: list[int]) -> Path:
    from llava.testing import build_tiny_llava

    from .checkpoints import save_hub_layout

    model, processor = build_tiny_llava(
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        vision_hidden=vision[0],
        vision_layers=vision[1],
        text_hidden=text[0],
        text_layers=text[1],
    )
    return save_hub_layout(model, processor, folder)


def offline_one(args) -> dict:
    """One offline run in this process (the parent starts one process per budget: a fresh engine each)."""
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=str(args.model), hf_overrides=overrides(args.offline_one), dtype="float32", max_model_len=1024, seed=0
    )
    requests = [{"prompt": PROMPT, "multi_modal_data": {"image": image(i)}} for i in range(args.requests)]
    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, ignore_eos=True)
    llm.generate(requests[:1], params, use_tqdm=False)  # warm-up: first-call allocations out of the timing
    start = time.perf_counter()
    outputs = llm.generate(requests, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    block = llm.llm_engine.vllm_config.cache_config.block_size
    tokens = [len(o.prompt_token_ids) + len(o.outputs[0].token_ids) for o in outputs]
    return {
        "requests_per_s": len(outputs) / seconds,
        "seconds": seconds,
        "prompt_tokens": len(outputs[0].prompt_token_ids),
        "kv_blocks_per_request": math.ceil(max(tokens) / block),
        "block_size": block,
    }


def run_offline(args, budget: int) -> dict:
    command = [sys.executable, "-m", MODULE, "--output", str(args.output), "--model", str(args.model)]
    command += ["--offline-one", str(budget), "--requests", str(args.requests), "--max-tokens", str(args.max_tokens)]
    done = subprocess.run(
        command,
        env={**os.environ, **RUNTIME, **IN_PROCESS},
        capture_output=True,
        text=True,
        timeout=args.timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"offline run at budget {budget} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def hardware() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    import torch
    import vllm

    return {"cpu": cpu, "cores": os.cpu_count(), "vllm": vllm.__version__, "torch": torch.__version__}


def table(results: dict) -> str:
    lines = [
        "| visual tokens / image | prompt tokens | offline req/s | server req/s | TTFT p50 (s) | TTFT p90 (s) | TTFT p99 (s) | KV blocks / request | peak KV blocks in use (server) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["runs"]:
        offline, server = row["offline"], row["server"]
        lines.append(
            f"| {row['budget'] or '576 (unpruned)'} | {offline['prompt_tokens']} | {offline['requests_per_s']:.2f} | "
            f"{server['requests_per_s']:.2f} | {server['ttft_p50']:.3f} | {server['ttft_p90']:.3f} | "
            f"{server['ttft_p99']:.3f} | {offline['kv_blocks_per_request']} | {server['peak_kv_blocks']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.offline_one is not None:
        print(json.dumps(offline_one(args)))
        return
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:  # the model and the chat template stay out of the results
        args.scratch = Path(scratch)
        args.model = build_model(args.scratch / "model", args.vision, args.text)
        runs = run_all(args)
    write_results(args, argv, runs)


def run_all(args) -> list[dict]:
    runs = []
    for budget in args.budgets:
        offline = run_offline(args, budget)
        print(f"budget {budget}: offline {offline}", flush=True)
        server = asyncio.run(
            load_server.measure(args, overrides(budget), [data_url(image(i)) for i in range(args.requests)], RUNTIME)
        )
        print(f"budget {budget}: server {server}", flush=True)
        runs.append({"budget": budget, "offline": offline, "server": server})
    return runs


def write_results(args, argv, runs: list[dict]) -> None:
    settings = {k: v for k, v in vars(args).items() if k not in ("output", "model", "offline_one", "scratch")}
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python -m vispruner_vllm.load_benchmark " + " ".join(argv if argv is not None else sys.argv[1:]),
        "hardware": hardware(),
        "settings": settings,
        "runs": runs,
    }
    (args.output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    header = (
        f"Measured {results['date']} on {results['hardware']['cpu']} ({results['hardware']['cores']} cores, shared), "
        f"vLLM {results['hardware']['vllm']}, torch {results['hardware']['torch']}.\n"
        f"Command: `{results['command']}`\n\n"
    )
    (args.output / "results.md").write_text(header + table(results) + "\n")
    print(header + table(results))


if __name__ == "__main__":
    main()
