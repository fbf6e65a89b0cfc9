#!/usr/bin/env bash
# AI2D test: accuracy (ai2d, exact_match).
# Model: SmolVLM, TOKENS per tile (each of an image's up to 4x4 384-px tiles and its global image keeps TOKENS of 81; a video frame is one tile) (default HuggingFaceTB/SmolVLM-Instruct); prompts as lmms-eval's own model for it.
# Usage: ai2d.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" smolvlm ai2d "$@"
