#!/usr/bin/env bash
# Shared by scripts/*/eval/*.sh: run `python -m eval.launch FAMILY BENCHMARK ...` from the repository
# root with the project's virtualenv when there is one (set PYTHON to choose another interpreter).
# Options may follow a `--` too (`mme.sh 64 0.5 -- --dry-run`); --dry-run only prints the command(s).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
cd "$repo"
exec "$PYTHON" -m eval.launch "$@"
