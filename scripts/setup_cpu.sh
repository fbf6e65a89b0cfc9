#!/usr/bin/env bash
# Create .venv and install the project for a CPU machine from the lock, requirements/cpu.txt: every
# package at its exact version, checked against its hash, torch as its CPU build. lmms-eval comes in
# without the requirements listed in requirements/lmms-eval-left-out.txt.
# Safe to run again: an existing .venv is reused and brought to the lock's versions.
set -euo pipefail
[ $# -eq 0 ] || { echo "setup_cpu.sh takes no arguments, got: $*" >&2; exit 2; }
cd "$(dirname "$0")/.."
lock=requirements/cpu.txt
python_version=3.11  # the lock's torch CPU wheel is built for it (scripts/lock.sh)
is_locked_python() { [ "$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$python_version" ]; }
python=.venv/bin/python
if [ ! -x "$python" ]; then
    python=$(command -v "python$python_version" || command -v python3 || echo python3)
fi
if ! is_locked_python "$python"; then
    echo "error: $lock is locked for Python $python_version, but $python is $("$python" -V 2>&1)." >&2
    echo "       Put python$python_version on PATH (and remove .venv if it holds another version);" >&2
    echo "       on a GPU machine see docs/install.md." >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
# Noise filtered from pip's stderr (its exit status is kept): local index folders it skips.
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v 'is ignored: it is neither' >&2); }

# torch's CPU build is not on PyPI: take it from PyTorch's CPU index unless pip already sees it
# (installed, or in a wheel folder pip is configured with).
torch_pin=$(sed -n 's/^\(torch==[^ ]*\).*/\1/p' "$lock")
torch_index=()
if ! .venv/bin/python -m pip install -q --dry-run --no-deps --no-index "$torch_pin" >/dev/null 2>&1; then
    torch_index=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi
# --no-deps: the lock is complete, and lmms-eval's declared requirements must not come in.
pip_install --require-hashes --no-deps "${torch_index[@]}" -r "$lock"
pip_install --no-deps --no-build-isolation -e .   # built with the lock's setuptools
.venv/bin/python -c "import torch; assert torch.__version__.endswith('+cpu'), 'expected the CPU build of torch, got ' + torch.__version__"
