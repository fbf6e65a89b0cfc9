#!/usr/bin/env bash
# MMMU val: accuracy (mmmu_val, mmmu_acc).
# Model: SmolVLM, TOKENS per tile (each of an image's up to 4x4 384-px tiles and its global image keeps TOKENS of 81; a video frame is one tile) (default HuggingFaceTB/SmolVLM-Instruct); prompts as lmms-eval's own model for it.
# Usage: mmmu.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" smolvlm mmmu "$@"
