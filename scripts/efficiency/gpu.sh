#!/usr/bin/env bash
# GPU measurements: LLaVA-1.5-7B and LLaVA-NeXT-7B (paper setting: 5 crops x 576 tokens) shapes with
# random weights, fp16, FlashAttention 2 when flash-attn is installed (else SDPA); timed by
# efficiency.timing (torch.utils.benchmark, which synchronises the GPU): warm-up, then medians and
# quartiles of at least --repeats runs. Each shape writes OUT_DIR/<shape>-<gpu>.json (+ .md, .png).
# Runs are resumable: the same command continues where an interrupted one stopped (--resume), so it
# can be repeated under a per-command time limit until every case is measured.
# Usage: gpu.sh [OUT_DIR] [extra efficiency.latency options]     (default results/efficiency)
# Needs a CUDA build of torch and transformers 5.23 with this package installed (pip install --no-deps -e .).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python=.venv/bin/python; [ -x "$python" ] || python=python
out=results/efficiency
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then out=$1; shift; fi
gpu=$("$python" -m efficiency.hardware --gpu-slug)  # e.g. h100-80gb-hbm3; fails clearly without a GPU
for shape in llava-1.5-7b llava-next-7b; do
  # A timed run of a fast call is a block of calls that torch.utils.benchmark grows until the GPU
  # synchronisation is under 0.01 % of it, so 10 runs suffice; LLaVA-NeXT prefills 2880 visual tokens
  # per prompt (seconds at batch 32), so 5 runs keep its cases short.
  if [ "$shape" = llava-next-7b ]; then runs=(--repeats 5 --warmup 2); else runs=(--repeats 10 --warmup 3); fi
  "$python" -m efficiency.latency --shape "$shape" --device cuda --dtype float16 --attn auto \
    --tokens 128 64 32 --batch 1 8 32 "${runs[@]}" --output "$out/$shape-$gpu.json" --resume "$@"
done
