#!/usr/bin/env bash
# The GPU measurements in one run of at most 8 minutes (efficiency.gpu_suite): at the LLaVA-1.5-7B and
# LLaVA-NeXT-7B shapes (random weights, fp16, FlashAttention 2 when flash-attn is installed, else SDPA),
# VisPruner eager and with compile=True (CUDA graphs) against the same-token oracle (TTFT and batched
# prefill), selection vs N, then the latency table with the time left. Writes OUT_DIR/suite.json and
# one JSON (and log) per step.
# Usage: gpu.sh [OUT_DIR] [efficiency.gpu_suite options, e.g. --budget 600]   (default results/efficiency/gpu)
# Needs a CUDA build of torch and transformers 5.23 with this package installed (pip install --no-deps -e .).
# Rehearse the whole run on any machine in seconds: python -m efficiency.gpu_suite /tmp/r --device cpu --rehearse
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python=.venv/bin/python; [ -x "$python" ] || python=$(command -v python3 || command -v python)
out=results/efficiency/gpu
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then out=$1; shift; fi
exec "$python" -m efficiency.gpu_suite "$out" --device cuda "$@"
