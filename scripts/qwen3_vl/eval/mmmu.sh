#!/usr/bin/env bash
# MMMU val: accuracy (mmmu_val, mmmu_acc).
# Model: Qwen3-VL, TOKENS per image (merged 2x2-patch tokens at dynamic resolution; per video for videos) (default Qwen/Qwen3-VL-8B-Instruct); prompts as lmms-eval's own model for it.
# Usage: mmmu.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" qwen3_vl mmmu "$@"
