#!/usr/bin/env bash
# Run one of the paper's accuracy tables exactly (its methods, ratios and budgets), then print it with the
# paper's numbers under ours. No recipe (or --list): the recipes. Finished cells are kept and skipped.
# Usage: paper_table.sh [table1|llava-next|video] [--benchmarks B ...] [--labels N ...] [--dry-run] [--keep-going]
#                      [-- --gpus 8 --model PATH ...]
# --benchmarks / --labels: only some of the table's columns / the paper's token labels (row groups).
# --dry-run (before or after `--`) only prints every command; cells the model cannot run print "n/a: <reason>".
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
cd "$repo"
exec "$PYTHON" -m eval.paper_tables "$@"
