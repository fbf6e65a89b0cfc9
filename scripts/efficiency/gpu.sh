#!/usr/bin/env bash
# GPU measurements: LLaVA-1.5-7B and LLaVA-NeXT-7B (paper setting: 5 crops x 576 tokens) shapes with
# random weights, fp16, FlashAttention 2 when flash-attn is installed (else SDPA), CUDA events,
# warm-up, medians. Each shape writes OUT_DIR/<shape>-<gpu>.json (+ .md, .png).
# Runs are resumable: the same command continues where an interrupted one stopped (--resume), so it
# can be repeated under a per-command time limit until every case is measured.
# Usage: gpu.sh [OUT_DIR] [extra efficiency.latency options]     (default results/efficiency)
# Needs a CUDA build of torch and transformers 5.23 with this package installed (pip install --no-deps -e .).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python=.venv/bin/python; [ -x "$python" ] || python=python
out=results/efficiency
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then out=$1; shift; fi
gpu=$("$python" -c "import torch; print(torch.cuda.get_device_name(0).replace('NVIDIA ', '').replace(' ', '-').lower())")
for shape in llava-1.5-7b llava-next-7b; do
  # LLaVA-NeXT prefills 2880 visual tokens per prompt: fewer repeats keep the run within minutes.
  if [ "$shape" = llava-next-7b ]; then runs=(--repeats 10 --warmup 2); else runs=(--repeats 20 --warmup 3); fi
  "$python" -m efficiency.latency --shape "$shape" --device cuda --dtype float16 --attn auto \
    --tokens 128 64 32 --batch 1 8 32 "${runs[@]}" --output "$out/$shape-$gpu.json" --resume "$@"
done
