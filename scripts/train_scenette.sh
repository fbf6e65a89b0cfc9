#!/usr/bin/env bash
# Train Scenette-LLaVA from scratch and write it to scenette/scenette-llava/, the shipped model (safetensors + processor).
#   stage 1: the vision tower (python -m scenette.train_vision)
#   stage 2: projector + language model, vision frozen (python -m scenette.train_llava)
# Resumable: run it again after an interruption and each stage continues from its last saved step
# (state, log and the stage-1 tower live in runs/scenette/; delete that folder to start over).
#
#   bash scripts/train_scenette.sh                 # seed 0, the shipped recipe and bits (stage 1 on 1 thread, stage 2 on 2)
#   bash scripts/train_scenette.sh --seed 1 --threads 2 --output /tmp/my-scenette
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=0 VISION_THREADS=1 LLAVA_THREADS=2 OUTPUT=scenette/scenette-llava RUN_DIR=runs/scenette
usage="allowed: --seed N, --threads N, --output DIR, --run-dir DIR"
fail() { echo "train_scenette.sh: $*" >&2; exit 2; }
value() {  # the value after an option, which must be there
  [ $# -ge 2 ] && [ "${2#--}" = "$2" ] || fail "$1 needs a value ($usage)"
}
count() {  # N >= 0
  [[ "$2" =~ ^[0-9]+$ ]] || fail "$1 must be an integer >= 0, got '$2'"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) value "$@"; count --seed "$2"; SEED="$2"; shift 2 ;;
    # torch threads for both stages (default: 1 for stage 1, 2 for stage 2, as the shipped weights
    # were made; float sums depend on the thread count, so other counts give other bits; 0 = torch's choice)
    --threads) value "$@"; count --threads "$2"; VISION_THREADS="$2"; LLAVA_THREADS="$2"; shift 2 ;;
    --output) value "$@"; OUTPUT="$2"; shift 2 ;;
    --run-dir) value "$@"; RUN_DIR="$2"; shift 2 ;;
    *) fail "unknown argument: $1 ($usage)" ;;
  esac
done
PY=${PYTHON:-.venv/bin/python}
# Both stages' folders are checked before stage 1 starts (stage 2 would otherwise fail an hour later).
"$PY" - "$RUN_DIR" "$OUTPUT" <<'CHECK' || exit 2
import sys
from pathlib import Path

from efficiency.command import output_problem

run_dir, output = map(Path, sys.argv[1:])
for option, folder in (("--run-dir", run_dir), ("--output", output)):
    problem = output_problem(folder, folder=True, exist_ok=True)
    if problem:
        sys.exit(f"train_scenette.sh: {option}: {problem}")
if output.is_dir() and any(output.iterdir()) and not (output / "config.json").is_file():
    sys.exit(f"train_scenette.sh: --output: {output} exists and is not a model folder (no config.json)")
CHECK
COMMON=(--seed "$SEED" --run-dir "$RUN_DIR")
start=$(date +%s)
"$PY" -m scenette.train_vision "${COMMON[@]}" --threads "$VISION_THREADS" --steps 2400 --batch-size 8 --lr 2e-3 --signs 4 --warmup 100
"$PY" -m scenette.train_llava "${COMMON[@]}" --threads "$LLAVA_THREADS" --steps 2800 --batch-size 32 --turns 2 --lr 2e-3 --warmup 100 \
  --system-share 0.1 --compact-share 0.5 --content-steps 2400 --ramp-steps 300 --pool 8000 --output "$OUTPUT"
cp "$RUN_DIR/train.log" "$OUTPUT/training_log.txt"
echo "trained in $(( $(date +%s) - start )) s (this invocation); log: $OUTPUT/training_log.txt"
