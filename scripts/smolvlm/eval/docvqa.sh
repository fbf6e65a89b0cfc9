#!/usr/bin/env bash
# DocVQA val: ANLS (docvqa_val, anls; papers report the test split, scored by its server).
# Model: SmolVLM, TOKENS per sub-image (each tile and the global view of an image is pruned on its own) (default HuggingFaceTB/SmolVLM-Instruct); prompts as lmms-eval's own model for it.
# Usage: docvqa.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" smolvlm docvqa "$@"
