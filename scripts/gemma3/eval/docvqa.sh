#!/usr/bin/env bash
# DocVQA val: ANLS (docvqa_val, anls; papers report the test split, scored by its server).
# Model: Gemma 3, TOKENS per encoded image of 256 (pan-and-scan off, the checkpoint processor's default that lmms-eval gemma3 keeps: one 896-px view per image; with it on, each crop keeps TOKENS too) (default google/gemma-3-4b-it); prompts as lmms-eval's own model for it.
# Usage: docvqa.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" gemma3 docvqa "$@"
