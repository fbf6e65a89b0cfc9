#!/usr/bin/env bash
# The vLLM plugin's tests, in the vLLM environment (bash scripts/setup_vllm_cpu.sh makes it). Tiny random
# models built here; a few minutes on two cores. Extra arguments go to pytest (e.g. -k llava).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv-vllm/bin/python ] || { echo "error: .venv-vllm not found; run 'bash scripts/setup_vllm_cpu.sh' first" >&2; exit 1; }
# vLLM's and torch's warnings about their own deprecations say nothing about the plugin.
exec .venv-vllm/bin/python -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning -W ignore::FutureWarning \
    serving/vllm/tests "$@"
