#!/usr/bin/env bash
# The README's main command: Scenette-LLaVA unpruned and with every pruning method at 128/64/32/16
# visual tokens, evaluated through lmms-eval on Scenette; prints the paper-style table and writes
# results/scenette/{table.md,table.csv,relative_accuracy.png}. Finished cells are skipped.
# Usage: scenette.sh [--methods M ...] [--budgets T ...] [--per-type N] [--threads N] [--rerun] ...
#        (python -m eval.scenette --help lists every option)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
cd "$repo"
exec "$PYTHON" -m eval.scenette "$@"
