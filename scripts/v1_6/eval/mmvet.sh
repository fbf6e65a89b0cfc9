#!/usr/bin/env bash
# MM-Vet: submission file for the official MM-Vet evaluator (GPT-4 judge).
# Model: LLaVA-NeXT in the paper's mode: 672x672 grid, TOKENS per crop (default liuhaotian/llava-v1.6-vicuna-7b).
# Usage: mmvet.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" v1_6 mmvet "$@"
