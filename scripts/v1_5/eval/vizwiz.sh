#!/usr/bin/env bash
# VizWiz-VQA test: writes a submission file for EvalAI.
# Model: LLaVA-1.5 (default liuhaotian/llava-v1.5-7b).
# Usage: vizwiz.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" v1_5 vizwiz "$@"
