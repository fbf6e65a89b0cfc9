#!/usr/bin/env bash
# The README's main command: Scenette-LLaVA unpruned and with every pruning method at 128/64/32/16
# visual tokens, evaluated through lmms-eval on Scenette. Each run writes a new folder,
# results/scenette/runs/<UTC time>/ (table.md, table.csv, relative_accuracy.png, one JSON per cell),
# prints the paper-style table and compares it cell by cell with the committed results/scenette/.
# Usage: scenette.sh [--dry-run] [--threads N] [--methods M ...] [--budgets T ...] [--per-type N]
#                    [--output DIR (resume that folder)] ...   (python -m eval.scenette --help lists every option)
# Every argument goes to eval.scenette unchanged, so --dry-run writes nothing wherever it stands.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
cd "$repo"  # results/ and the reference are relative to the checkout
exec "$PYTHON" -m eval.scenette "$@"
