#!/usr/bin/env bash
# MMMU val: accuracy (mmmu_val, mmmu_acc).
# Model: Gemma 3, TOKENS per encoded image of 256 (pan-and-scan off, the checkpoint processor's default that lmms-eval gemma3 keeps: one 896-px view per image; with it on, each crop keeps TOKENS too) (default google/gemma-3-4b-it); prompts as lmms-eval's own model for it.
# Usage: mmmu.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" gemma3 mmmu "$@"
