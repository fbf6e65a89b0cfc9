#!/usr/bin/env bash
# DocVQA val: ANLS (docvqa_val, anls; papers report the test split, scored by its server).
# Model: LLaVA-OneVision, TOKENS per image (split between base crop and anyres_max_9 tile map) (default llava-hf/llava-onevision-qwen2-7b-ov-hf); prompts as lmms-eval's own model for it.
# Usage: docvqa.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" onevision docvqa "$@"
