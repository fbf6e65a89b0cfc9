#!/usr/bin/env bash
# Create .venv and install the project for a CPU machine (torch pinned to its CPU build).
# Safe to run again: an existing .venv is reused and only what is missing gets installed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
# Noise filtered from pip's stderr (its exit status is kept): local index folders it skips, and the
# resolver's list of lmms-eval's declared requirements that are left out on purpose.
noise='is ignored: it is neither|^lmms-eval [0-9.]+ requires |dependency resolver does not currently take into account'
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -Ev "$noise" >&2); }
pip_install -c constraints-cpu.txt -r requirements.txt
pip_install --no-deps lmms-eval==0.7.3   # its declared deps would pull CUDA torch and torchvision
pip_install --no-deps -e .
.venv/bin/python -c "import torch; assert torch.__version__.endswith('+cpu'), 'expected the CPU build of torch, got ' + torch.__version__"
