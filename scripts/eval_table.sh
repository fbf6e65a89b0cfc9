#!/usr/bin/env bash
# Run a whole paper table (every benchmark x the unpruned model + every method x budget) with a
# progress bar, then print it. Finished cells are kept and skipped; interrupted ones resume.
# Usage: eval_table.sh v1_5|v1_6|video [--methods M ...] [--budgets T ...] [--ratio R] [--dry-run] [-- --gpus 8 --model PATH ...]
# --dry-run (before or after `--`) only prints every command; a cell fails (exit 1) unless lmms-eval wrote its results.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
cd "$repo"
exec "$PYTHON" -m eval.run_table "$@"
