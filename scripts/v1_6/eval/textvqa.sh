#!/usr/bin/env bash
# TextVQA val with OCR reference tokens in the prompt (LLaVA protocol), VQA accuracy.
# Model: LLaVA-NeXT in the paper's mode: 672x672 grid, TOKENS per crop (default liuhaotian/llava-v1.6-vicuna-7b).
# Usage: textvqa.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" v1_6 textvqa "$@"
